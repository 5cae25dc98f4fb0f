//! Where log lines go: stdout, stderr, or a file opened for append, written one `write(2)` a
//! line and reopened in place for logrotate.
//!
//! Not here: formatting (the error and access logs build whole lines before calling `write`).
//!
//! Fork-safety: a sink has no lock, no thread and no buffer. A child forked after `open` shares
//! the descriptor (and its `O_APPEND` file description) and writes to it like the parent.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Mode of a log file we create; the umask still applies, as for any file a process creates.
const LOG_FILE_MODE: u32 = 0o644;

/// A log destination.
#[derive(Debug)]
pub(crate) struct Sink {
    target: Target,
    /// How many `write(2)` calls this sink made, so tests can check "one call a line".
    #[cfg(test)]
    writes: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
enum Target {
    /// Descriptor 1, looked up at each write rather than duplicated, so a later `dup2` onto it
    /// (daemonizing, output capture) is followed.
    Stdout,
    /// Descriptor 2, for the same reason.
    Stderr,
    /// A file opened with `O_APPEND`, so that lines from every process sharing it land whole at
    /// the end. The descriptor number stays the same for the life of the sink; `reopen` swaps the
    /// file behind it.
    File { path: PathBuf, file: File },
}

impl Sink {
    fn new(target: Target) -> Sink {
        Sink {
            target,
            #[cfg(test)]
            writes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(crate) fn stdout() -> Sink {
        Sink::new(Target::Stdout)
    }

    pub(crate) fn stderr() -> Sink {
        Sink::new(Target::Stderr)
    }

    /// Opens (creating it if needed) the file at `path` for append.
    pub(crate) fn file(path: &Path) -> io::Result<Sink> {
        let file = open_append(path)?;
        Ok(Sink::new(Target::File {
            path: path.to_path_buf(),
            file,
        }))
    }

    /// The file's path, `None` for stdout and stderr.
    #[cfg(test)]
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::File { path, .. } => Some(path),
            Target::Stdout | Target::Stderr => None,
        }
    }

    /// Writes `buf` with one `write(2)` (more only if the kernel takes part of it, e.g. a full
    /// pipe, or a signal interrupts it), so that concurrent writers never split a line.
    /// The descriptor lines go to; it keeps its number across `reopen` (dup3), so code
    /// outside Rust (Python's faulthandler) may hold on to it.
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        match &self.target {
            Target::Stdout => io::stdout().as_raw_fd(),
            Target::Stderr => io::stderr().as_raw_fd(),
            Target::File { file, .. } => file.as_raw_fd(),
        }
    }

    pub(crate) fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match &self.target {
            Target::Stdout => self.write_fd(io::stdout(), buf),
            Target::Stderr => self.write_fd(io::stderr(), buf),
            Target::File { file, .. } => self.write_fd(file, buf),
        }
    }

    fn write_fd(&self, fd: impl AsFd, mut buf: &[u8]) -> io::Result<()> {
        let fd = fd.as_fd();
        while !buf.is_empty() {
            #[cfg(test)]
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match nix::unistd::write(fd, buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reopens the file by its path (after logrotate renamed it) and makes the sink's
    /// descriptor point at the new file; a no-op for stdout and stderr.
    ///
    /// The swap is one `dup3` onto the descriptor number writers already use, so a write racing
    /// it lands whole in the old file or the new one, and the number is never closed and free
    /// for reuse while a writer may still hold it. dup3 closes the old file. On error the sink
    /// keeps writing to the old file.
    pub(crate) fn reopen(&self) -> io::Result<()> {
        let Target::File { path, file } = &self.target else {
            return Ok(());
        };
        let new = open_append(path)?;
        loop {
            // SAFETY: both descriptors are open and owned for the whole call (`new` by this
            // frame, `file` by the sink). dup3 does not change who owns which number: `file`
            // still owns its number, which now refers to the new open file, and `new` is closed
            // when it drops. O_CLOEXEC keeps the flag std's open set, so a re-exec'd master does
            // not inherit it.
            let rc = unsafe { libc::dup3(new.as_raw_fd(), file.as_raw_fd(), libc::O_CLOEXEC) };
            if rc != -1 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn write_calls(&self) -> usize {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::temp_dir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_is_appended_not_truncated_and_created_0644() {
        let dir = temp_dir("sink-append");
        let path = dir.join("x.log");
        std::fs::write(&path, "old\n").unwrap();
        let sink = Sink::file(&path).unwrap();
        sink.write_all(b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");

        let fresh = dir.join("fresh.log");
        let _sink = Sink::file(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        // 0644 less whatever the umask removes; never more than 0644.
        assert_eq!(mode & !0o644, 0, "mode {mode:o}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reopen_after_rename_writes_to_the_new_file() {
        let dir = temp_dir("sink-reopen");
        let path = dir.join("app.log");
        let rotated = dir.join("app.log.1");
        let sink = Sink::file(&path).unwrap();
        let fd = match &sink.target {
            Target::File { file, .. } => file.as_raw_fd(),
            _ => unreachable!(),
        };
        sink.write_all(b"before\n").unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        // Until reopened, lines follow the renamed file (what logrotate expects before USR1).
        sink.write_all(b"between\n").unwrap();
        sink.reopen().unwrap();
        sink.write_all(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "before\nbetween\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        // Same descriptor number, still close-on-exec.
        let Target::File { file, .. } = &sink.target else {
            unreachable!()
        };
        assert_eq!(file.as_raw_fd(), fd);
        let flags = nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reopen_failure_keeps_the_old_file() {
        let dir = temp_dir("sink-reopen-fail");
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("app.log");
        let sink = Sink::file(&path).unwrap();
        let moved = dir.join("moved");
        std::fs::rename(&sub, &moved).unwrap();
        assert!(sink.reopen().is_err());
        sink.write_all(b"still here\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(moved.join("app.log")).unwrap(),
            "still here\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stdio_sinks_have_no_path_and_reopen_is_a_no_op() {
        assert!(Sink::stdout().path().is_none());
        assert!(Sink::stderr().reopen().is_ok());
    }

    #[test]
    fn one_write_call_per_line() {
        let dir = temp_dir("sink-one-write");
        let sink = Sink::file(&dir.join("x.log")).unwrap();
        let line = vec![b'x'; 64 * 1024];
        sink.write_all(&line).unwrap();
        assert_eq!(sink.write_calls(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
