//! unitcorn: a prefork HTTP server for Python WSGI apps, at home under systemd.
//!
//! `main` only parses, dispatches on the mode and turns the outcome into an exit status.

mod boot;
mod cli;
mod config;
mod control;
mod listeners;
mod logging;
#[cfg(test)]
mod man;
mod master;
mod proctitle;
#[cfg(test)]
mod properties;
mod python;
mod reload_report;
mod scoreboard;
mod statsd;
mod worker;

use std::process::ExitCode;

use config::{Command, Settings};

fn main() -> ExitCode {
    if let Some(pid) = control::reload_request(config::original_args()) {
        return control::reload(pid);
    }
    if let Some(file) = config::convert::request(config::original_args()) {
        return match config::convert::convert(&file.to_string_lossy()) {
            Ok(toml) => {
                print!("{toml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("unitcorn: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let command = match config::load() {
        Ok(command) => command,
        Err(e) => {
            eprintln!("unitcorn: {e}");
            return ExitCode::from(if e.is_usage() { 2 } else { 1 });
        }
    };
    let settings = match command {
        Command::Help(text) | Command::Version(text) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Command::PrintConfig(settings) => {
            print!("{}", config::to_toml(&settings));
            return ExitCode::SUCCESS;
        }
        Command::CheckConfig(settings) => return check(&settings),
        Command::Serve(settings) => settings,
    };
    let error_log = match logging::init(&settings.errorlog, &settings.loglevel) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("unitcorn: {e}");
            return ExitCode::FAILURE;
        }
    };
    match master::run(settings, error_log, worker::run) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: the settings parsed already; import the app, serve nothing.
fn check(settings: &Settings) -> ExitCode {
    if settings.print_config {
        print!("{}", config::to_toml(settings));
    }
    let mut settings = settings.clone();
    if let Err(e) = std::env::set_current_dir(&settings.chdir) {
        eprintln!(
            "unitcorn: cannot chdir to {}: {e}",
            settings.chdir.display()
        );
        return ExitCode::FAILURE;
    }
    // Python resolves the app's directory after this chdir: give it the absolute path.
    if let Ok(absolute) = std::env::current_dir() {
        settings.chdir = absolute;
    }
    match python::load_app(&settings) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unitcorn: the app did not load\n{e}");
            ExitCode::FAILURE
        }
    }
}
