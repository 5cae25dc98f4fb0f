//! The master's process environment: its working directory (`chdir`), the variables it
//! sets for the app (`raw_env`), and those it takes from systemd or an old master and
//! must not hand on (`LISTEN_*`, the upgrade's own).
//!
//! Every change to the environment the master makes is here. Each is sound for one
//! reason, stated once: the master is single-threaded (no runtime, no helper thread:
//! DESIGN.md) and its workers are separate processes with their own copy, so nothing
//! reads the environment while it changes. The worker scrubs its own copy
//! (`worker/scrub_env.rs`).

use std::path::{Path, PathBuf};

use super::Error;
use crate::config::Settings;
use crate::listeners::Activation;

/// Where unitcorn was started: the command line's relative paths (`-c`, `--chdir`) are
/// read from there, at a reload too.
pub fn start_dir() -> Result<PathBuf, Error> {
    std::env::current_dir().map_err(Error::start_dir)
}

/// `chdir` and `raw_env` (`-e KEY=VALUE`), so every worker inherits them.
///
/// A relative `chdir` is taken from the directory unitcorn was started in (`start_dir`),
/// also at a reload; `settings.chdir` is made absolute, so that the workers (and Python's
/// `sys.path`) see the same directory.
pub fn prepare(settings: &mut Settings, start_dir: &Path) -> Result<(), Error> {
    let chdir = start_dir.join(&settings.chdir);
    std::env::set_current_dir(&chdir)
        .map_err(|e| Error::chdir(&chdir, e).set_by(settings.provenance("chdir")))?;
    settings.chdir = std::env::current_dir().unwrap_or(chdir);
    for pair in &settings.raw_env {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::raw_env(pair).set_by(settings.provenance("raw_env")));
        };
        set(key, value);
        crate::python::export_env(key, value);
    }
    Ok(())
}

/// Socket activation's variables, read and removed, so that nothing started later (a
/// worker, the app's subprocesses) takes the sockets for its own.
pub fn take_socket_activation() -> Activation {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    remove(&["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]);
    Activation {
        for_us,
        count,
        names,
    }
}

/// A new master of a binary upgrade: systemd's per-process variables name this process
/// (`LISTEN_PID`, and `WATCHDOG_PID` under a watchdog), not the old master; `handed`,
/// the variables the old master passed its hand-over in, are removed.
pub fn claim_from_old_master(handed: &[&str]) {
    let me = std::process::id().to_string();
    set("LISTEN_PID", &me);
    if std::env::var_os("WATCHDOG_USEC").is_some() {
        set("WATCHDOG_PID", &me);
    }
    remove(handed);
}

fn set(key: &str, value: &str) {
    // SAFETY: the module doc's invariant: the master is single-threaded, so nothing
    // reads the environment concurrently.
    unsafe { std::env::set_var(key, value) };
}

fn remove(names: &[&str]) {
    for name in names {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(name) };
    }
}
