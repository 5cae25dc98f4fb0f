//! Configuration: gunicorn's settings, resolved from defaults, the config file,
//! `UNITCORN_CMD_ARGS` and the command line (lowest to highest precedence).
//!
//! Parsing only validates and records; nothing is bound or imported here.

pub mod settings;

pub use settings::Settings;

/// What the command line asks unitcorn to do.
#[derive(Debug)]
pub enum Command {
    /// Serve the app (the normal case).
    Serve(Settings),
    /// `--check-config`: validate the settings, import the app, exit.
    CheckConfig(Settings),
    /// `--print-config`: print the resolved settings as TOML, exit.
    PrintConfig(Settings),
}
