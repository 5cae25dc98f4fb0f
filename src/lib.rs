//! unitcorn: a prefork HTTP server for Python web apps, at home under systemd.
//!
//! One core, two front doors: the packaged binary (`src/main.rs`), which embeds the
//! interpreter it was built with, and the Python package (`extension.rs`), a PyO3 module
//! whose console script runs inside the app's own virtualenv. Both call [`run`].
//! `run` only parses, dispatches on the mode and turns the outcome into an exit status.

mod boot;
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

/// Exit statuses: success, failure; a usage error is 2.
pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;

use config::{Command, Settings};

/// The whole program, for either front door: `program` says how this process was started.
pub fn run(program: program::Program) -> u8 {
    program::set(program);
    if let Some(pid) = control::reload_request(config::original_args()) {
        return control::reload(pid);
    }
    if let Some(file) = config::convert::request(config::original_args()) {
        return match config::convert::convert(&file.to_string_lossy()) {
            Ok(toml) => {
                print!("{toml}");
                SUCCESS
            }
            Err(e) => {
                eprintln!("unitcorn: {e}");
                FAILURE
            }
        };
    }
    let command = match config::load() {
        Ok(command) => command,
        Err(e) => {
            eprintln!("unitcorn: {e}");
            return if e.is_usage() { 2 } else { 1 };
        }
    };
    let settings = match command {
        Command::Help(text) | Command::Version(text) => {
            println!("{text}");
            return SUCCESS;
        }
        Command::PrintConfig(settings) => {
            print!("{}", config::to_toml(&settings));
            return SUCCESS;
        }
        Command::CheckConfig(settings) => return check(&settings),
        Command::Serve(settings) => settings,
    };
    if let Err(e) = python::preflight(&settings) {
        eprintln!("unitcorn: {e}");
        return FAILURE;
    }
    let error_log = match logging::init(&settings.errorlog, &settings.loglevel) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("unitcorn: {e}");
            return FAILURE;
        }
    };
    match master::run(settings, error_log, worker::run) {
        Ok(status) => status,
        Err(e) => {
            tracing::error!("{e}");
            FAILURE
        }
    }
}

/// `--check-config`: the settings parsed already; import the app, serve nothing.
fn check(settings: &Settings) -> u8 {
    if settings.print_config {
        print!("{}", config::to_toml(settings));
    }
    let mut settings = settings.clone();
    if let Err(e) = std::env::set_current_dir(&settings.chdir) {
        eprintln!(
            "unitcorn: cannot chdir to {}: {e}",
            settings.chdir.display()
        );
        return FAILURE;
    }
    // Python resolves the app's directory after this chdir: give it the absolute path.
    if let Ok(absolute) = std::env::current_dir() {
        settings.chdir = absolute;
    }
    match python::load_app(&settings) {
        Ok(_) => SUCCESS,
        Err(e) => {
            eprintln!("unitcorn: the app did not load\n{e}");
            FAILURE
        }
    }
}
