//! unitcorn's entry point. On the `config` branch this is only the wiring that lets the
//! configuration layer build and run; the real dispatch belongs to the lead's main.rs.

mod cli;
mod config;

use std::process::ExitCode;

fn main() -> ExitCode {
    match config::load() {
        Ok(config::Command::Help(text) | config::Command::Version(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(config::Command::PrintConfig(settings)) => {
            print!("{}", config::to_toml(&settings));
            ExitCode::SUCCESS
        }
        Ok(config::Command::CheckConfig(settings) | config::Command::Serve(settings)) => {
            eprintln!(
                "unitcorn: serving {:?} is not implemented on this branch",
                settings.wsgi_app
            );
            ExitCode::FAILURE
        }
        Err(e) if e.is_usage() => {
            eprintln!("unitcorn: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("unitcorn: {e}");
            ExitCode::FAILURE
        }
    }
}
