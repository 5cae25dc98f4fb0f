//! Forking a worker. The master has one thread and no runtime, so the child starts from a
//! consistent copy of it.

use nix::unistd::{ForkResult, Pid, fork};

use crate::boot::{WorkerBoot, WorkerMain};

/// Fork a child that runs `main(boot)` and never returns here.
pub fn spawn(boot: WorkerBoot, main: WorkerMain) -> nix::Result<Pid> {
    // SAFETY: the master is single-threaded (no runtime, no helper thread; DESIGN.md), so
    // no lock can be held by another thread at the fork. The child only resets signal
    // dispositions before entering the worker, which starts its own threads afresh.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            super::signals::reset_in_child();
            main(boot)
        }
    }
}
