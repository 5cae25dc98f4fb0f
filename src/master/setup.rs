//! What the master does once, before the first fork: working directory, the app's
//! environment (`raw_env`), the pid file.

use std::path::{Path, PathBuf};

use crate::config::Settings;

/// `chdir` and `raw_env` (`-e KEY=VALUE`), so every worker inherits them.
///
/// A relative `chdir` is taken from the directory unitcorn was started in (`start_dir`),
/// also at a reload; `settings.chdir` is made absolute, so that the workers (and Python's
/// `sys.path`) see the same directory.
pub fn prepare_process(settings: &mut Settings, start_dir: &Path) -> Result<(), String> {
    let chdir = start_dir.join(&settings.chdir);
    std::env::set_current_dir(&chdir)
        .map_err(|e| format!("cannot chdir to {} (chdir): {e}", chdir.display()))?;
    settings.chdir = std::env::current_dir().unwrap_or(chdir);
    for pair in &settings.raw_env {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("raw_env: {pair:?} is not KEY=VALUE"));
        };
        // SAFETY: the master is single-threaded (no runtime, no helper thread), and the
        // workers are separate processes with their own copy of the environment, so
        // nothing reads it concurrently (at start, and again at a reload).
        unsafe { std::env::set_var(key, value) };
        crate::python::export_env(key, value);
    }
    Ok(())
}

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

/// The pid file, removed again when the master exits.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Write our pid to `path` atomically (a temporary file renamed over it), refusing to
    /// replace the pid file of a process that is still running.
    pub fn write(path: &Path) -> Result<PidFile, String> {
        if let Some(pid) = running_pid(path) {
            return Err(format!(
                "the pid file {} (pidfile) names process {pid}, which is running: is \
                 unitcorn already running? Stop it, or remove the file if it is not unitcorn",
                path.display()
            ));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!(
                    "cannot write the pid file {} (pidfile): {e}",
                    path.display()
                )
            })?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

/// The pid in an existing pid file, if that process is alive (and is not us).
fn running_pid(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    if pid <= 0 || pid as u32 == std::process::id() {
        return None;
    }
    // Signal 0 only checks that the process exists (EPERM: it exists, not ours).
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Some(pid),
        Err(_) => None,
    }
}

/// `-D/--daemon`: detach from the terminal (fork, setsid, stdio to /dev/null), before
/// anything else is set up, as gunicorn does.
pub fn daemonize() -> Result<(), String> {
    // The parent exits inside daemon(3): whoever returns is the child. A Python config
    // file started the interpreter already, which must hear of the fork.
    crate::python::around_fork(|| nix::unistd::daemon(true, false), |_| true)
        .map_err(|e| format!("cannot daemonize (daemon): {e}"))
}

impl PidFile {
    /// Move the pid file to `to` (the binary upgrade's `pidfile.2` becoming `pidfile`).
    pub fn rename(&mut self, to: &Path) -> Result<(), String> {
        std::fs::rename(&self.path, to).map_err(|e| {
            format!(
                "cannot rename the pid file {} to {}: {e}",
                self.path.display(),
                to.display()
            )
        })?;
        self.path = to.to_path_buf();
        Ok(())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: another instance may have taken the file over meanwhile.
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
