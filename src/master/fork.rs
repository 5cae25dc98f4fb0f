//! Forking a worker. The master has one thread and no runtime, so the child starts from a
//! consistent copy of it.

use nix::unistd::{ForkResult, Pid, fork};

use crate::boot::{WorkerBoot, WorkerMain};

/// Fork a child that runs `main(boot)` and never returns here.
pub fn spawn(boot: WorkerBoot, main: WorkerMain) -> nix::Result<Pid> {
    // SAFETY (of the `fork` call below): the master is single-threaded (no runtime, no
    // helper thread; DESIGN.md), so no lock can be held by another thread at the fork; an
    // interpreter in the master is forked under CPython's protocol (`around_fork`). The
    // child only resets signal dispositions before entering the worker, which starts its
    // own threads afresh.
    let forked =
        crate::python::around_fork(|| unsafe { fork() }, |r| matches!(r, Ok(ForkResult::Child)));
    match forked? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            super::signals::reset_in_child();
            super::upgrade::close_in_child();
            main(boot)
        }
    }
}
