//! unitcorn: a prefork HTTP server for Python web apps, at home under systemd.
//!
//! One core, two front doors: the packaged binary (`src/main.rs`), which embeds the
//! interpreter it was built with, and the Python package (`extension.rs`), a PyO3 module
//! whose console script runs inside the app's own virtualenv. Both call [`run`].
//! `run` only parses, dispatches on the mode and turns the outcome into an exit status.

mod boot;
mod check_config;
mod config;
mod control;
mod extension;
/// For the fuzz targets in fuzz/ only (`--features fuzzing`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_api;
mod listeners;
mod logging;
#[cfg(test)]
mod man;
mod master;
mod proctitle;
pub mod program;
#[cfg(test)]
mod properties;
mod python;
mod reload_report;
mod scoreboard;
mod statsd;
mod worker;

/// Exit statuses: success, failure, a command-line usage error. The server may end with
/// gunicorn's own statuses too (`boot::WORKER_BOOT_ERROR`, `boot::APP_LOAD_ERROR`); which
/// failure gives which status is decided in one place, [`exit_status`].
pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;

use config::{Command, Settings};

/// The whole program, for either front door: `program` says how this process was started.
pub fn run(program: program::Program) -> u8 {
    program::set(program);
    match config::load(&program::get().args, &python::config::Runner)
        .map_err(Failure::Config)
        .and_then(dispatch)
    {
        Ok(()) => SUCCESS,
        Err(failure) => {
            tell(&failure);
            exit_status(&failure)
        }
    }
}

/// Why a mode did not succeed, by layer: how it is told (`tell`) and its exit status
/// (`exit_status`) follow from it.
enum Failure {
    /// The configuration or the command line cannot be used: told on stderr.
    Config(config::ConfigError),
    /// A mode failed before the server's error log was open: told on stderr.
    Early(Box<dyn std::error::Error + Send + Sync>),
    /// The master could not start, or stopped on a failure: told in its error log.
    Master(master::Error),
}

impl Failure {
    /// A failure before the error log is open; `e` is the lower layer's error (or its text).
    fn early(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Failure::Early(e.into())
    }
}

fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Help(text) | Command::Version(text) => {
            println!("{text}");
            Ok(())
        }
        Command::PrintConfig(settings) => {
            print!("{}", config::to_toml(&settings));
            Ok(())
        }
        Command::CheckConfig(settings) => check_config::check(&settings).map_err(Failure::early),
        Command::Reload(pid) => control::reload(pid).map_err(Failure::early),
        Command::ConvertConfig(file) => {
            let toml = config::convert::convert(&file.to_string_lossy(), &python::config::Runner)
                .map_err(Failure::Config)?;
            print!("{toml}");
            Ok(())
        }
        Command::Serve(settings) => serve(settings),
    }
}

/// Serving is the one mode kept here: this is where the master meets the worker code it
/// forks (`master` does not depend on `worker`).
fn serve(settings: Settings) -> Result<(), Failure> {
    // Before the log is set up: a wrong interpreter or virtualenv is told on the terminal.
    python::preflight(&settings).map_err(|e| Failure::early(e.to_string()))?;
    // gunicorn.log.* StatsD counters (off until statsd_host is set).
    let counts: logging::Observer = Box::new(statsd::LogCounts);
    let error_log = logging::init(&settings.errorlog, &settings.loglevel, Some(counts))
        .map_err(|e| log_failure(&settings, e))?;
    master::run(settings, error_log, worker::run).map_err(Failure::Master)
}

/// The error log could not be set up: said with the setting that caused it (`errorlog`,
/// `loglevel`) and where that was set.
fn log_failure(settings: &Settings, e: logging::Error) -> Failure {
    match e.setting() {
        Some(setting) => Failure::early(settings.provenance(setting).wrap(e)),
        None => Failure::early(e),
    }
}

/// The one place that decides the exit status:
///
/// | status | when |
/// |---|---|
/// | 0 `SUCCESS` | the mode did its work; the server stopped because it was told to (QUIT, INT, TERM) or handed over to a new master (USR2) |
/// | 2 `USAGE` | the command line is wrong (an unknown flag, a bad value on it) |
/// | 3 `WORKER_BOOT_ERROR` | the first generation's workers could not boot (gunicorn's status) |
/// | 4 `APP_LOAD_ERROR` | the first generation's workers could not import the app (gunicorn's status) |
/// | 1 `FAILURE` | anything else: a bad config file, a bind or pid file or user that fails the start, a start hook that raised, `--check-config` that cannot import the app, `unitcorn reload` that cannot signal |
///
/// A reload whose new generation cannot boot does not stop the master (the old one
/// serves on), so it has no status.
fn exit_status(failure: &Failure) -> u8 {
    match failure {
        Failure::Config(e) if e.is_usage() => USAGE,
        Failure::Master(e) if e.is_worker_boot() => boot::WORKER_BOOT_ERROR as u8,
        Failure::Master(e) if e.is_app_load() => boot::APP_LOAD_ERROR as u8,
        Failure::Config(_) | Failure::Early(_) | Failure::Master(_) => FAILURE,
    }
}

/// Tell what went wrong, the whole chain of causes: on stderr, or in the error log once
/// it is open.
fn tell(failure: &Failure) {
    match failure {
        Failure::Config(e) => eprintln!("unitcorn: {}", chain(e)),
        Failure::Early(e) => eprintln!("unitcorn: {}", chain(e.as_ref())),
        Failure::Master(e) => tracing::error!("{e:#}"),
    }
}

/// An error and its causes, `master::Cause` joining each to the one before.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(&master::Cause(cause).to_string());
        next = cause.source();
    }
    text
}
