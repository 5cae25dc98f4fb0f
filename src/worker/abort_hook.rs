//! gunicorn's `worker_abort` hook, on SIGABRT (sent by the master to a worker whose
//! request ran past `timeout`).
//!
//! The signal handler only writes a byte to a pipe; a thread of its own waits on the pipe,
//! takes the GIL (the interpreter hands it over at its switch interval even while the app
//! runs Python), calls the hook and ends the process with status 1, as gunicorn's worker
//! does. faulthandler, armed after this, writes the tracebacks first and then passes the
//! signal on here instead of dying of it. An app stuck in C with the GIL held never lets
//! the hook run: the master's SIGKILL a second later ends it.

use std::io::Read as _;
use std::os::fd::IntoRawFd;

/// Arm the hook if the config set one; call before faulthandler is enabled.
pub fn arm() -> Result<(), String> {
    if !crate::python::hooks::has_worker_abort() {
        return Ok(());
    }
    let (read, write) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // Kept open for the life of the process: the signal action writes to it.
    let write = write.into_raw_fd();
    // SAFETY: the action only calls write(2), which is async-signal-safe, on a descriptor
    // that stays open until the process ends.
    unsafe {
        signal_hook_registry::register(libc::SIGABRT, move || {
            libc::write(write, b"!".as_ptr().cast(), 1);
        })
    }
    .map_err(|e| format!("cannot watch SIGABRT: {e}"))?;
    std::thread::Builder::new()
        .name("worker-abort".into())
        .spawn(move || {
            let mut pipe = std::fs::File::from(read);
            let mut byte = [0u8; 1];
            if matches!(pipe.read(&mut byte), Ok(1)) {
                crate::python::hooks::worker_abort();
                // SAFETY: _exit(2) ends the process at once, without running destructors
                // or atexit handlers that the app's threads may be in the middle of; the
                // master reaps the status.
                unsafe { libc::_exit(1) };
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the worker_abort thread: {e}"))
}
