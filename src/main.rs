//! unitcorn: a prefork HTTP server for Python WSGI apps, at home under systemd.

mod boot;
mod config;
mod listeners;
mod logging;
mod master;
mod python;
mod scoreboard;
mod worker;

use std::process::ExitCode;

fn main() -> ExitCode {
    let command = match config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unitcorn: {e}");
            return ExitCode::from(1);
        }
    };
    let settings = match &command {
        config::Command::Serve(s)
        | config::Command::CheckConfig(s)
        | config::Command::PrintConfig(s) => s,
    };
    let _log = match logging::init(&settings.errorlog, &settings.loglevel) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("unitcorn: {e}");
            return ExitCode::from(1);
        }
    };
    match run(command) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(command: config::Command) -> Result<i32, String> {
    match command {
        config::Command::Serve(settings) => {
            let binds = settings
                .bind
                .iter()
                .map(|b| config::bind::BindAddr::parse(b))
                .collect::<Result<Vec<_>, _>>()?;
            let listeners = listeners::open_all(&binds, settings.backlog)?;
            master::run(settings, listeners, worker::run)
        }
        config::Command::CheckConfig(settings) => {
            worker::load_app(&settings)?;
            Ok(0)
        }
        config::Command::PrintConfig(_) => Ok(0),
    }
}
