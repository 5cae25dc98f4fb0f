//! The pid file (`pidfile`): written after the listeners are bound, removed at exit, and
//! during a binary upgrade kept apart (`pidfile.2`) until the old master has gone.
//!
//! It never replaces the pid file of a process that is still running: a second start
//! with the same `pidfile` fails instead of clobbering the first one's.

use std::path::{Path, PathBuf};

use super::Error;

/// The pid file, removed again when the master exits (if it is still ours).
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// The start-up step: `pidfile`, or during a binary upgrade (`upgrading`) its
    /// `pidfile.2`, as the old master's stays its own while it runs.
    pub fn at_start(pidfile: Option<&Path>, upgrading: bool) -> Result<Option<PidFile>, Error> {
        match pidfile {
            // It may be unwritable for the user the old master switched to: an upgrade
            // goes on without it rather than fail.
            Some(path) if upgrading => Ok(PidFile::write(&overlap_path(path))
                .inspect_err(|e| tracing::error!("{e:#}; going on without it"))
                .ok()),
            Some(path) => PidFile::write(path).map(Some),
            None => Ok(None),
        }
    }

    /// Write our pid to `path` atomically (a temporary file renamed over it), refusing to
    /// replace the pid file of a process that is still running.
    fn write(path: &Path) -> Result<PidFile, Error> {
        if let Some(pid) = running_pid(path) {
            return Err(Error::pidfile_taken(path, pid));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::pidfile_write(path, e)
            })?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }

    /// Move the pid file to `to` (the binary upgrade's `pidfile.2` becoming `pidfile`).
    pub fn rename(&mut self, to: &Path) -> Result<(), Error> {
        std::fs::rename(&self.path, to).map_err(|e| Error::pidfile_rename(&self.path, to, e))?;
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

/// `pidfile.2`: the new master's pid file while the old master still runs (gunicorn's
/// name), renamed to `pidfile` once the old master has gone.
fn overlap_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".2");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_keeps_its_pid_file() {
        let dir = std::env::temp_dir().join(format!("unitcorn-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.pid");
        // PID 1 is always running.
        std::fs::write(&path, "1\n").unwrap();
        let e = PidFile::write(&path)
            .err()
            .expect("a running pid is refused");
        assert!(
            e.to_string().contains("names process 1, which is running"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_upgrade_pid_file_is_dot_two() {
        assert_eq!(
            overlap_path(Path::new("/run/a.pid")),
            Path::new("/run/a.pid.2")
        );
    }
}
