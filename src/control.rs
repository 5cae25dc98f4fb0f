//! `unitcorn reload PID`: the unit's `ExecReload=` helper, which makes `systemctl reload`
//! wait for the reload on systemd 252 too.
//!
//! With `ExecReload=/bin/kill -HUP $MAINPID`, systemd 252 (no `Type=notify-reload`)
//! waits for the new generation only if the master's `RELOADING=1` reaches it before it
//! has reaped `kill`: a race, lost about one time in five, and `systemctl reload` then
//! returns while the old code still serves. This helper sends `RELOADING=1` itself, as
//! the control process (`NotifyAccess=exec`), before it signals the master: systemd reads
//! notifications ahead of child exits, so the reload job then ends only at the master's
//! `READY=1`, once the new generation serves (or the reload failed and the old one does).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sd_notify::NotifyState;

/// Tell systemd a reload starts, then send the master HUP; the error says why it was
/// not sent.
pub fn reload(pid: i32) -> Result<(), Error> {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        if let Err(e) = sd_notify::notify(&states) {
            // Not a failure: the HUP still reloads, only `systemctl reload` may return early.
            eprintln!("unitcorn: reload: cannot notify systemd (NOTIFY_SOCKET): {e}");
        }
    }
    kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|errno| Error { pid, errno })
}

/// The HUP could not be sent to the master (no such process, not ours); the OS error
/// is the source.
#[derive(Debug)]
pub struct Error {
    pid: i32,
    errno: nix::Error,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reload: cannot send HUP to the master, pid {} (is it running?)",
            self.pid
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.errno)
    }
}
