//! Forking a worker. The master has one thread and no runtime, so the child starts from a
//! consistent copy of it.

use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};

use crate::boot::{WorkerBoot, WorkerMain};

/// Fork a child that runs `main(boot)` and never returns here.
pub fn spawn(boot: WorkerBoot, main: WorkerMain) -> nix::Result<Pid> {
    // SAFETY (of the `fork` call below): the master is single-threaded (no runtime, no
    // helper thread; DESIGN.md), so no lock can be held by another thread at the fork; an
    // interpreter in the master is forked under CPython's protocol (`around_fork`). The
    // child only resets signal dispositions and sets its generation's `raw_env` (one
    // thread: the environment may change there) before entering the worker, which starts
    // its own threads afresh.
    let master = getpid();
    let forked =
        crate::python::around_fork(|| unsafe { fork() }, |r| matches!(r, Ok(ForkResult::Child)));
    match forked? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            super::signals::reset_in_child();
            super::environment::apply_in_child(&boot.settings);
            orphan_on_master_death(master);
            super::upgrade::close_in_child();
            main(boot)
        }
    }
}

/// A worker must not outlive its master (a `kill -9`, an OOM kill): it would keep the
/// listening socket and serve old code for ever, and a new start could not bind. The
/// kernel sends it QUIT when the master dies (its graceful stop: stop accepting, which
/// frees the port, finish what is in flight, bounded by `graceful_timeout` once the master
/// is gone: worker/signals.rs). A master that died before this call is caught by the
/// parent check, since the signal is asked for only now.
fn orphan_on_master_death(master: Pid) {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT) {
        tracing::warn!("cannot ask for a signal at the master's death (prctl: {e})");
    }
    if getppid() != master {
        // SAFETY: _exit ends this just-forked child at once; nothing of it runs yet that
        // would need an orderly exit (no thread, no open request, no buffered log).
        unsafe { libc::_exit(0) };
    }
}
