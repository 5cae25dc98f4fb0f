//! unitcorn: a prefork HTTP server for Python web apps, at home under systemd.
//!
//! One core, two front doors: the packaged binary (`src/main.rs`), which embeds the
//! interpreter it was built with, and the Python package (`extension.rs`), a PyO3 module
//! whose console script runs inside the app's own virtualenv. Both call [`run`].
//! `run` only parses, dispatches on the mode and turns the outcome into an exit status.

mod boot;
mod check_config;
mod cli;
mod config;
mod control;
mod extension;
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
/// gunicorn's own statuses too (`boot::WORKER_BOOT_ERROR`, `boot::APP_LOAD_ERROR`).
pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;

use config::{Command, Settings};

/// The whole program, for either front door: `program` says how this process was started.
pub fn run(program: program::Program) -> u8 {
    program::set(program);
    let done = config::load().map_err(Failure::from).and_then(dispatch);
    exit_status(done)
}

/// Why a mode did not succeed, and so how it is told and what the exit status is.
enum Failure {
    /// The command line is wrong: stderr, exit status 2.
    Usage(String),
    /// Before the server's error log is open: stderr, exit status 1.
    Error(String),
    /// The server's error log is open: there, exit status 1.
    Logged(String),
    /// The server stopped with this status (not 0), having logged why.
    Status(u8),
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Self {
        if e.is_usage() {
            Failure::Usage(e.to_string())
        } else {
            Failure::Error(e.to_string())
        }
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
        Command::CheckConfig(settings) => check_config::check(&settings).map_err(Failure::Error),
        Command::Reload(pid) => control::reload(pid).map_err(Failure::Error),
        Command::ConvertConfig(file) => {
            let toml = config::convert::convert(&file.to_string_lossy())?;
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
    python::preflight(&settings).map_err(|e| Failure::Error(e.to_string()))?;
    let error_log = logging::init(&settings.errorlog, &settings.loglevel)
        .map_err(|e| Failure::Error(format!("{e:#}")))?;
    match master::run(settings, error_log, worker::run) {
        Ok(SUCCESS) => Ok(()),
        Ok(status) => Err(Failure::Status(status)),
        Err(e) => Err(Failure::Logged(e.to_string())),
    }
}

/// The one place that decides the exit status, and tells what went wrong.
fn exit_status(done: Result<(), Failure>) -> u8 {
    match done {
        Ok(()) => SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("unitcorn: {message}");
            USAGE
        }
        Err(Failure::Error(message)) => {
            eprintln!("unitcorn: {message}");
            FAILURE
        }
        Err(Failure::Logged(message)) => {
            tracing::error!("{message}");
            FAILURE
        }
        Err(Failure::Status(status)) => status,
    }
}
