//! CPython's fork protocol, for a master that has an interpreter (`preload_app`).
//!
//! The interpreter must be told about a fork: its locks are taken before and reset in the
//! child (`PyOS_BeforeFork` / `PyOS_AfterFork_Child`), else a lock held by nobody in the
//! child deadlocks the first import there.
//!
//! What the interpreter in the master must not do: start threads (an app that does so at
//! import is warned about: those threads would live in the master only, and a fork with a
//! second thread alive can copy a lock it holds), or keep the GIL between loop turns (the
//! master takes it only around an import and a fork). The master's own loop never runs
//! Python code.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::Python;
use pyo3::ffi;

/// Set once this process started an interpreter.
static STARTED: AtomicBool = AtomicBool::new(false);

pub(super) fn mark_started() {
    STARTED.store(true, Ordering::Release);
}

pub(super) fn started() -> bool {
    STARTED.load(Ordering::Acquire)
}

/// Run `fork` (which returns whether we are the child) under CPython's fork protocol
/// when this process has an interpreter; as it is otherwise.
pub fn around_fork<T>(fork: impl FnOnce() -> T, is_child: impl FnOnce(&T) -> bool) -> T {
    if !started() {
        return fork();
    }
    Python::attach(|_py| {
        // SAFETY: called with the GIL held (inside `attach`), as the C API requires;
        // every `BeforeFork` is matched by exactly one `AfterFork_*` on each side.
        unsafe { ffi::PyOS_BeforeFork() };
        let outcome = fork();
        if is_child(&outcome) {
            // SAFETY: in the child, right after fork(2), with the GIL held: this resets
            // the interpreter's locks and threads to the one thread that exists.
            unsafe { ffi::PyOS_AfterFork_Child() };
        } else {
            // SAFETY: in the parent (or after a failed fork), with the GIL held.
            unsafe { ffi::PyOS_AfterFork_Parent() };
        }
        outcome
    })
}
