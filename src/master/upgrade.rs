//! USR2: binary upgrade. The running ("old") master starts a new master from the binary on
//! disk, with the same command line, handing it the listening sockets as systemd would
//! (`LISTEN_FDS`/`LISTEN_FDNAMES`). Once the new master's workers serve, the old master
//! tells systemd `MAINPID=<new>` and stops gracefully; the new one is then in charge.
//!
//! Two facts of systemd shape this (found under systemd 252):
//! - the new master must be systemd's child when `MAINPID=` is processed, or systemd
//!   SIGKILLs it at the next stop without a grace period: so it is double-forked, and
//!   re-parented to PID 1 before it even runs;
//! - `LISTEN_PID` and `WATCHDOG_PID` must name the new master, or it ignores the sockets
//!   and the watchdog: it sets both to itself first thing ([`adopt`]).
//!
//! The two masters talk over a socketpair: the new one writes `R` once its workers serve;
//! the old one answers `M` once systemd has been told, so the new master stays silent
//! towards systemd (which would refuse it: `NotifyAccess=main`) until it is the main one.

use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork};

use super::Error;
use crate::listeners::{Kind, Listener};

/// The new master's environment: who started it, and the fd of its end of the channel.
const FROM_VAR: &str = "UNITCORN_UPGRADE_FROM";
const CHANNEL_VAR: &str = "UNITCORN_UPGRADE_FD";
/// The unix socket files the old master bound itself: the new master removes them at its
/// exit, as their owner (a socket systemd passed is never removed).
const SOCKET_FILES_VAR: &str = "UNITCORN_UPGRADE_SOCKET_FILES";
/// Where the copies of the fds wait in the parent before the child puts them in place
/// (above anything the master opens, so the `dup2` targets never collide with them).
const FD_PARKING: RawFd = 100;
const SD_LISTEN_FDS_START: RawFd = 3;

const READY: u8 = b'R';
const MAIN: u8 = b'M';

/// An upgrade in progress, as the old master sees it.
pub struct Upgrade {
    pub pid: Pid,
    channel: UnixStream,
    deadline: Option<Instant>,
}

/// What the new master is up to.
pub enum Progress {
    Booting,
    Ready,
    Failed(String),
}

/// Start the new master: `exe` with `args`, in `start_dir`, given `listeners`. Returns
/// once it exists (not once it serves: see [`Upgrade::poll`]).
pub fn start(
    exe: &Path,
    args: &[OsString],
    start_dir: &Path,
    listeners: &[Listener],
    socket_files: &[PathBuf],
    boot_timeout: Option<Duration>,
) -> Result<Upgrade, Error> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::upgrade("cannot create the upgrade channel", e))?;
    let mut parked = Vec::with_capacity(listeners.len() + 1);
    for fd in listeners
        .iter()
        .map(|l| l.fd.as_raw_fd())
        .chain([theirs.as_raw_fd()])
    {
        parked.push(park(fd).map_err(|e| Error::upgrade(format!("cannot duplicate fd {fd}"), e))?);
    }
    let exec = Exec::new(exe, args, start_dir, listeners, socket_files)?;
    // SAFETY (of `fork` here and in the child): between fork and execve, both children
    // only make async-signal-safe calls (sigaction, fork, dup2, chdir, write, execve,
    // _exit) on memory prepared before the fork, so it is sound even if the app started
    // threads in the master (preload).
    let intermediate = match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => child,
        Ok(ForkResult::Child) => intermediate_child(&exec, &parked),
        Err(e) => return Err(Error::fork(e)),
    };
    // It forks the new master and exits at once; its status tells nothing more.
    let _ = waitpid(intermediate, None);
    drop(parked);
    drop(theirs);
    let mut channel = ours;
    let mut pid = [0u8; 4];
    channel
        .read_exact(&mut pid)
        .map_err(|e| Error::upgrade("the new master was not started (fork failed)", e))?;
    let pid = Pid::from_raw(i32::from_ne_bytes(pid));
    channel
        .set_nonblocking(true)
        .map_err(|e| Error::upgrade("upgrade channel", e))?;
    Ok(Upgrade {
        pid,
        channel,
        deadline: boot_timeout.map(|t| Instant::now() + t),
    })
}

impl Upgrade {
    /// Whether the new master serves yet; non-blocking.
    pub fn poll(&mut self) -> Progress {
        let mut byte = [0u8; 1];
        match self.channel.read(&mut byte) {
            Ok(1) if byte[0] == READY => return Progress::Ready,
            Ok(_) => {
                return Progress::Failed(format!(
                    "the new master (pid {}) exited before its workers were ready",
                    self.pid
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Progress::Failed(format!("upgrade channel: {e}")),
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            // It has had boot_timeout; a new master that cannot boot in that time is
            // stopped, and the old one carries on.
            let _ = kill(self.pid, Signal::SIGTERM);
            return Progress::Failed(format!(
                "the new master (pid {}) was not ready within boot_timeout; stopped it",
                self.pid
            ));
        }
        Progress::Booting
    }

    /// Tell the new master it is the main process now (systemd has been told).
    pub fn hand_over(mut self) {
        let _ = self.channel.write_all(&[MAIN]);
    }
}

/// Copy `fd` to a number at or above FD_PARKING, close-on-exec (the child clears that
/// when it moves the copy into place).
fn park(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only duplicates an fd we own; the result is a fresh fd
    // nothing else refers to, owned by the OwnedFd from here on.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, FD_PARKING) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `copy` is a new, open fd that only this OwnedFd owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Everything `execve` needs, built before the fork (the child may not allocate).
struct Exec {
    exe: CString,
    dir: CString,
    /// NULL-terminated arrays of pointers into `strings` (whose heap buffers never move).
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    _strings: Vec<CString>,
}

impl Exec {
    fn new(
        exe: &Path,
        args: &[OsString],
        start_dir: &Path,
        listeners: &[Listener],
        socket_files: &[PathBuf],
    ) -> Result<Exec, Error> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|e| Error::upgrade("a NUL byte in the command line", e))
        };
        let envp = new_master_environ(listeners, socket_files)?;
        let args = args
            .iter()
            .map(|a| c(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let pointers = |strings: &[CString]| {
            let mut p: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        Ok(Exec {
            exe: c(exe.as_os_str().as_bytes())?,
            dir: c(start_dir.as_os_str().as_bytes())?,
            argv: pointers(&args),
            envp: pointers(&envp),
            _strings: args.into_iter().chain(envp).collect(),
        })
    }
}

/// The new master's environment: ours without the variables that describe this
/// process's sockets and hand-over, then the ones that describe the new master's.
fn new_master_environ(
    listeners: &[Listener],
    socket_files: &[PathBuf],
) -> Result<Vec<CString>, Error> {
    let c = |bytes: &[u8]| {
        CString::new(bytes).map_err(|e| Error::upgrade("a NUL byte in the environment", e))
    };
    let names: Vec<&str> = listeners
        .iter()
        .map(|l| l.name.as_deref().unwrap_or("unknown"))
        .collect();
    let owned: Vec<String> = listeners
        .iter()
        .filter_map(|l| match &l.kind {
            Kind::Unix(path) if socket_files.contains(path) => Some(path.display().to_string()),
            _ => None,
        })
        .collect();
    let ours = [
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "LISTEN_PID",
        "WATCHDOG_PID",
        FROM_VAR,
        CHANNEL_VAR,
        SOCKET_FILES_VAR,
    ];
    let mut envp = std::env::vars_os()
        .filter(|(k, _)| !ours.iter().any(|o| k.as_bytes() == o.as_bytes()))
        .map(|(k, v)| {
            let mut pair = k.into_encoded_bytes();
            pair.push(b'=');
            pair.extend(v.into_encoded_bytes());
            c(&pair)
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (key, value) in [
        ("LISTEN_FDS", listeners.len().to_string()),
        ("LISTEN_FDNAMES", names.join(":")),
        (FROM_VAR, std::process::id().to_string()),
        (
            CHANNEL_VAR,
            (SD_LISTEN_FDS_START + listeners.len() as RawFd).to_string(),
        ),
        (SOCKET_FILES_VAR, owned.join("\n")),
    ] {
        envp.push(c(format!("{key}={value}").as_bytes())?);
    }
    Ok(envp)
}

/// The intermediate child: fork the new master, tell the old one its pid, exit. The new
/// master is then an orphan, adopted by PID 1 (systemd) or the nearest subreaper.
fn intermediate_child(exec: &Exec, parked: &[OwnedFd]) -> ! {
    super::signals::reset_in_child();
    // SAFETY: see `start`: async-signal-safe calls only, on memory prepared before.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => new_master_child(exec, parked),
        Ok(ForkResult::Parent { child }) => {
            let pid = child.as_raw().to_ne_bytes();
            let channel = parked.last().map_or(-1, AsRawFd::as_raw_fd);
            // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is local.
            unsafe {
                libc::write(channel, pid.as_ptr().cast(), pid.len());
                libc::_exit(0)
            }
        }
        // SAFETY: _exit(2) is async-signal-safe. The old master reads no pid and reports it.
        Err(_) => unsafe { libc::_exit(1) },
    }
}

/// The new master, before exec: the listeners at 3, 4, … and the channel after them,
/// the start directory, then the binary on disk.
fn new_master_child(exec: &Exec, parked: &[OwnedFd]) -> ! {
    // SAFETY: dup2, chdir, execve and _exit are async-signal-safe; every pointer comes
    // from a CString or a Vec built before the fork and alive until execve replaces us.
    unsafe {
        for (i, fd) in parked.iter().enumerate() {
            // dup2 gives a copy without close-on-exec: exactly these survive the exec.
            if libc::dup2(fd.as_raw_fd(), SD_LISTEN_FDS_START + i as RawFd) < 0 {
                libc::_exit(126);
            }
        }
        if libc::chdir(exec.dir.as_ptr()) < 0 {
            libc::_exit(126);
        }
        libc::execve(exec.exe.as_ptr(), exec.argv.as_ptr(), exec.envp.as_ptr());
        libc::_exit(127)
    }
}

/// The new master's side: what the old master handed over.
pub struct Adopted {
    /// The old master, until it has gone.
    pub from: Pid,
    channel: Option<UnixStream>,
    /// R was written: the master loop calls `ready` on every turn once it serves.
    told_ready: bool,
    /// The old master's own unix socket files, now ours to remove at exit.
    pub socket_files: Vec<PathBuf>,
}

/// The channel's fd in this (new) master, closed in every worker at fork: a worker must
/// not keep the old master waiting on a channel whose master died.
static CHANNEL_FD: AtomicI32 = AtomicI32::new(-1);

/// Called first thing in a master: if an old master started us (USR2), take what it
/// handed over and make systemd's variables name us (`LISTEN_PID`, `WATCHDOG_PID`).
pub fn adopt() -> Option<Adopted> {
    let from: i32 = std::env::var(FROM_VAR).ok()?.parse().ok()?;
    let channel = std::env::var(CHANNEL_VAR)
        .ok()
        .and_then(|fd| fd.parse::<RawFd>().ok())
        .filter(|fd| *fd > 2)
        .and_then(|fd| {
            // SAFETY: F_SETFD only changes a flag; it fails with EBADF on a closed fd,
            // which we then leave alone.
            (unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0).then_some(fd)
        })
        .map(|fd| {
            CHANNEL_FD.store(fd, Ordering::Relaxed);
            // SAFETY: the old master put its end of the channel at this fd for us to own;
            // it is open (checked above) and nothing else here refers to it.
            unsafe { UnixStream::from_raw_fd(fd) }
        });
    let socket_files = std::env::var(SOCKET_FILES_VAR)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    super::environment::claim_from_old_master(&[FROM_VAR, CHANNEL_VAR, SOCKET_FILES_VAR]);
    if let Some(channel) = &channel {
        let _ = channel.set_nonblocking(true);
    }
    Some(Adopted {
        from: Pid::from_raw(from),
        channel,
        told_ready: false,
        socket_files,
    })
}

impl Adopted {
    /// The old master has passed the main-process role (or is gone): the channel is done.
    pub fn is_main(&self) -> bool {
        self.channel.is_none()
    }

    /// Our workers serve: tell the old master (once).
    pub fn ready(&mut self) {
        if let Some(channel) = &mut self.channel
            && !self.told_ready
        {
            self.told_ready = true;
            let _ = channel.write_all(&[READY]);
        }
    }

    /// Whether we have just become the main process (the old master said so, or is gone
    /// without saying it). True once.
    pub fn became_main(&mut self) -> bool {
        let Some(channel) = &mut self.channel else {
            return false;
        };
        let mut byte = [0u8; 1];
        match channel.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            // `M`, or the old master exited (EOF) or failed: either way we are on our own.
            _ => {}
        }
        self.channel = None;
        CHANNEL_FD.store(-1, Ordering::Relaxed);
        true
    }

    /// Whether the old master has exited (a zombie counts: it no longer serves).
    pub fn old_master_gone(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.from)) {
            Ok(stat) => stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }
}

/// In a freshly forked worker: drop the channel (see CHANNEL_FD).
pub fn close_in_child() {
    let fd = CHANNEL_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: the fd is the channel this process's copy of `Adopted` owns; the worker
        // never uses that copy, so closing the number here leaves no user behind.
        unsafe { libc::close(fd) };
    }
}
