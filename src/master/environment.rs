//! The master's process environment: its working directory (`chdir`), the variables it
//! sets for the app (`raw_env`), and those it takes from systemd or an old master and
//! must not hand on (`LISTEN_*`, the upgrade's own).
//!
//! Every change to the environment the master makes is here. Each is made where the
//! process has one thread, so that nothing reads the environment while it changes: in the
//! master before the app is imported (`preload_app`, step 8 of `start`), or in a child
//! right after the fork. Not at a reload: a preloaded app may have started threads by
//! then (allowed, only warned about), and a C `getenv` in one of them could read the array
//! a `setenv` is replacing. A reload's `raw_env` goes to the new workers instead, set in
//! each after its fork (`apply_in_child`), and to the master's interpreter's `os.environ`
//! mapping. The worker scrubs its own copy (`worker/scrub_env.rs`).

use std::path::{Path, PathBuf};

use super::Error;
use crate::config::Settings;
use crate::listeners::Activation;

/// Where unitcorn was started: the command line's relative paths (`-c`, `--chdir`) are
/// read from there, at a reload too.
pub fn start_dir() -> Result<PathBuf, Error> {
    std::env::current_dir().map_err(Error::start_dir)
}

/// `chdir`, and `raw_env` (`-e KEY=VALUE`) checked, at the start and at every reload.
///
/// A relative `chdir` is taken from the directory unitcorn was started in (`start_dir`),
/// also at a reload; `settings.chdir` is made absolute, so that the workers (and Python's
/// `sys.path`) see the same directory.
pub fn prepare(settings: &mut Settings, start_dir: &Path) -> Result<(), Error> {
    let chdir = start_dir.join(&settings.chdir);
    std::env::set_current_dir(&chdir)
        .map_err(|e| Error::chdir(&chdir, e).set_by(settings.provenance("chdir")))?;
    settings.chdir = std::env::current_dir().unwrap_or(chdir);
    if let Some(pair) = settings.raw_env.iter().find(|p| !p.contains('=')) {
        return Err(Error::raw_env(pair).set_by(settings.provenance("raw_env")));
    }
    Ok(())
}

/// At the start, before the hooks and the app run: `raw_env` in the master's own environment
/// (and `os.environ`, if a Python config file started the interpreter), so that the
/// hooks, a preloaded app and every worker see it.
pub fn export_at_start(settings: &Settings) {
    for (key, value) in raw_env(settings) {
        set(key, value);
        crate::python::export_env(key, value);
    }
}

/// At a reload: the new `raw_env` for the code the master runs (`os.environ` of its
/// interpreter), never its process environment (the module doc says why).
pub fn export_at_reload(settings: &Settings) {
    for (key, value) in raw_env(settings) {
        crate::python::export_env_to_mapping(key, value);
    }
}

/// In a worker right after the fork, one thread alive: its generation's `raw_env`, in the
/// process environment and in `os.environ`, whatever the master's own says.
pub fn apply_in_child(settings: &Settings) {
    for (key, value) in raw_env(settings) {
        set(key, value);
        crate::python::export_env(key, value);
    }
}

/// `raw_env`'s pairs (`prepare` refused any without `=`).
fn raw_env(settings: &Settings) -> impl Iterator<Item = (&str, &str)> {
    settings
        .raw_env
        .iter()
        .filter_map(|pair| pair.split_once('='))
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
    // SAFETY: the module doc's invariant: called only where the process has one thread
    // (the master before any app code, a child after the fork), so nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var(key, value) };
}

fn remove(names: &[&str]) {
    for name in names {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(name) };
    }
}
