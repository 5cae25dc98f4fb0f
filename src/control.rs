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

use crate::{FAILURE, SUCCESS};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sd_notify::NotifyState;

/// `Some(pid)` when the arguments are exactly `reload PID` (a module named `reload`
/// would be given as `reload:app` or with options, so this reads nothing else).
pub fn reload_request(args: &[std::ffi::OsString]) -> Option<i32> {
    match args {
        [_, cmd, pid] if cmd == "reload" => pid.to_str()?.parse().ok().filter(|p| *p > 0),
        _ => None,
    }
}

/// Tell systemd a reload starts, then send the master HUP.
pub fn reload(pid: i32) -> u8 {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        if let Err(e) = sd_notify::notify(&states) {
            eprintln!("unitcorn reload: cannot notify systemd (NOTIFY_SOCKET): {e}");
        }
    }
    match kill(Pid::from_raw(pid), Signal::SIGHUP) {
        Ok(()) => SUCCESS,
        Err(e) => {
            eprintln!("unitcorn reload: cannot send HUP to the master, pid {pid}: {e}");
            FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reload_request;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(Into::into).collect()
    }

    #[test]
    fn only_exactly_reload_and_a_pid() {
        assert_eq!(
            reload_request(&args(&["unitcorn", "reload", "42"])),
            Some(42)
        );
        assert_eq!(reload_request(&args(&["unitcorn", "reload"])), None);
        assert_eq!(reload_request(&args(&["unitcorn", "reload", "0"])), None);
        assert_eq!(reload_request(&args(&["unitcorn", "reload", "app"])), None);
        assert_eq!(
            reload_request(&args(&["unitcorn", "-w", "2", "reload"])),
            None
        );
        assert_eq!(
            reload_request(&args(&["unitcorn", "reload:app", "1"])),
            None
        );
    }
}
