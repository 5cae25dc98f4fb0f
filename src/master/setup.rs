//! What the master sets up once and undoes at exit: detaching from the terminal
//! (`daemon`), and the unix socket files it bound, removed when it exits.

use std::path::PathBuf;

use super::Error;

/// The unix sockets the master bound itself, removed when it exits (as gunicorn does).
/// Inherited sockets (`fd://`) are never removed: they belong to whoever passed them.
pub struct SocketFiles(pub Vec<PathBuf>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => tracing::warn!(
                    "cannot remove the unix socket {}: {e} (after switching user, its \
                     directory must be writable by the user)",
                    path.display()
                ),
                _ => {}
            }
        }
    }
}

/// `-D/--daemon`: detach from the terminal (fork, setsid, stdio to /dev/null), before
/// anything else is set up, as gunicorn does.
pub fn daemonize() -> Result<(), Error> {
    // The parent exits inside daemon(3): whoever returns is the child. A Python config
    // file started the interpreter already, which must hear of the fork.
    crate::python::around_fork(|| nix::unistd::daemon(true, false), |_| true)
        .map_err(Error::daemonize)
}
