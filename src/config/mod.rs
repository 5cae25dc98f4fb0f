//! Configuration: gunicorn's settings, resolved from defaults, the config file (TOML,
//! `file.rs`, or Python, `python_file.rs`), `UNITCORN_CMD_ARGS` and the command line
//! (`cli.rs`), lowest to highest precedence.
//!
//! The bottom layer (ARCHITECTURE.md): nothing of processes, requests or the interpreter is
//! known here. Parsing only validates and records; nothing is bound, imported or chown'd.
//! Bind addresses and the app spec are checked for form (`bind`, `app_spec`), not reached;
//! a Python config file is run by the interpreter the caller hands in (`PythonConfigRunner`).

pub mod app_spec;
pub mod bind;
pub(crate) mod cli;
pub mod convert;
mod error;
pub mod extras;
pub(crate) mod file;
pub mod gunicorn;
mod origin;
mod print;
pub(crate) mod python_file;
pub mod settings;
mod source;
pub mod statsd_address;
pub mod table;
mod value;
pub mod worker_class;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use origin::{Origin, Provenance};
pub use print::to_toml;
pub use python_file::{Entry, PyValue, PythonConfigRunner, Ran, RunnerError};
pub use settings::{SETTINGS, Settings};
pub use worker_class::WorkerClass;

use origin::{ArgsSource, Origins};
use table::{DefaultValue, Kind, Setting};
pub(crate) use value::Value;

impl Command {
    /// The settings of a command that has them (all but help and version).
    pub fn into_settings(self) -> Option<Settings> {
        match self {
            Command::Serve(s) | Command::CheckConfig(s) | Command::PrintConfig(s) => Some(s),
            Command::Reload(_)
            | Command::ConvertConfig(_)
            | Command::Help(_)
            | Command::Version(_) => None,
        }
    }
}

/// What the command line asks unitcorn to do.
#[derive(Debug)]
pub enum Command {
    /// Serve the app (the normal case).
    Serve(Settings),
    /// `--check-config`: validate the settings, import the app, exit. When
    /// `print_config` is also set, print the settings first (as gunicorn does).
    CheckConfig(Settings),
    /// `--print-config`: print the resolved settings as TOML (`to_toml`), exit.
    PrintConfig(Settings),
    /// `reload PID`: the unit's `ExecReload=` helper (`control::reload`) for the master PID.
    Reload(i32),
    /// `config convert FILE`: print the Python config file FILE as TOML (`convert`).
    ConvertConfig(PathBuf),
    /// `-h`/`--help`: print this text (it has no trailing newline) on stdout, exit 0.
    Help(String),
    /// `-v`/`--version`: print this text (it has no trailing newline) on stdout, exit 0.
    Version(String),
}

/// The environment variables whose content is read as extra command-line arguments,
/// in order of preference: the first that is set is used, the other ignored.
const ENV_ARGS_VARS: [&str; 2] = ["UNITCORN_CMD_ARGS", "GUNICORN_CMD_ARGS"];

/// Loads the configuration from `args` (the process's arguments as it was started,
/// `args[0]` the program name) and the process's environment; a Python config file is run
/// by `python`.
///
/// Never exits the process: `--help` and `--version` come back as `Command::Help` and
/// `Command::Version` for the caller to print, the modes that read no settings (`reload
/// PID`, `config convert FILE`) as their `Command`.
///
/// A reload (HUP) calls it again with the same arguments, kept by the caller: the process
/// title later writes over the argv memory.
pub fn load(args: &[OsString], python: &dyn PythonConfigRunner) -> Result<Command, ConfigError> {
    load_from(args.to_vec(), &|name| std::env::var(name).ok(), python)
}

/// Loads the configuration from `args` (`args[0]` is the program name) and the
/// environment `env` gives (`env("PORT")`…). The working directory is read only when
/// nothing sets `chdir`.
pub fn load_from(
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
    python: &dyn PythonConfigRunner,
) -> Result<Command, ConfigError> {
    // The modes, help and version answer before anything that could fail: neither the
    // environment nor a config file is read for them.
    match cli::special(&args) {
        Some(cli::Special::Help(text)) => return Ok(Command::Help(text)),
        Some(cli::Special::Version(text)) => return Ok(Command::Version(text)),
        Some(cli::Special::Reload(pid)) => return Ok(Command::Reload(pid)),
        Some(cli::Special::ConvertConfig(file)) => return Ok(Command::ConvertConfig(file)),
        None => {}
    }

    let command_line = match cli::parse(args) {
        Ok(parsed) if parsed.version => return Ok(Command::Version(cli::version())),
        Ok(parsed) => read_args(parsed, ArgsSource::CommandLine)?,
        Err(cli::ParseError::Help(text)) => return Ok(Command::Help(text)),
        Err(cli::ParseError::Usage(message)) => {
            return Err(ConfigError::usage(ArgsSource::CommandLine, &message));
        }
    };

    let env_args = match ENV_ARGS_VARS
        .iter()
        .find_map(|var| env(var).map(|text| (*var, text)))
    {
        Some((var, text)) => env_args(var, &text)?,
        None => Vec::new(),
    };

    // The config file may be named on the command line or in the env args; the command
    // line wins, as for every setting. Without one, gunicorn's ./gunicorn.conf.py is read
    // when it exists.
    let named = [&command_line, &env_args]
        .into_iter()
        .find_map(|layer| layer.iter().find(|(s, _, _)| s.name == "config"))
        .and_then(|(_, value, _)| match value {
            Value::Str(path) => Some(path.clone()),
            _ => None,
        });
    let default_file = match named {
        Some(_) => None,
        None => Some(DEFAULT_CONFIG_FILE).filter(|f| Path::new(f).is_file()),
    };
    let config_file = match named.as_deref().or(default_file) {
        Some(location) => read_config_file(location, [&command_line, &env_args], env, python)?,
        None => source::Read {
            values: Vec::new(),
            extras: extras::Extras::default(),
        },
    };
    let default_config = default_file.map(|f| {
        let setting = table::find("config").expect("config is a setting");
        (setting, Value::Str(f.to_owned()), Origin::Default)
    });

    // Lowest precedence first: a later source replaces a setting's whole value, and
    // becomes its origin.
    let mut values: HashMap<&'static str, Value> = HashMap::new();
    let mut origins: HashMap<&'static str, Origin> = HashMap::new();
    for (setting, value, origin) in default_config
        .into_iter()
        .chain(config_file.values)
        .chain(env_args)
        .chain(command_line)
    {
        values.insert(setting.name, value);
        origins.insert(setting.name, origin);
    }
    for setting in SETTINGS {
        if !values.contains_key(setting.name) {
            let (value, origin) = default_value(setting, env)?;
            values.insert(setting.name, value);
            origins.insert(setting.name, origin);
        }
    }
    let mut settings = Settings::from_values(|name| {
        values
            .remove(name)
            .expect("every setting has a value: the defaults filled the gaps above")
    });
    settings.extras = config_file.extras;
    settings.origins = Origins::new(origins);

    if settings.check_config {
        require_app(&settings)?;
        Ok(Command::CheckConfig(settings))
    } else if settings.print_config {
        Ok(Command::PrintConfig(settings))
    } else {
        require_app(&settings)?;
        Ok(Command::Serve(settings))
    }
}

/// gunicorn's config file when none is named: `gunicorn.conf.py` in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "gunicorn.conf.py";

/// Reads the config file `location`: TOML, or a Python file (or `python:MODULE`) run by
/// `python` with the virtualenv the command line (or $VIRTUAL_ENV) names,
/// so that it can import what the app imports.
fn read_config_file(
    location: &str,
    layers: [&Vec<(&'static Setting, Value, Origin)>; 2],
    env: &dyn Fn(&str) -> Option<String>,
    python: &dyn PythonConfigRunner,
) -> Result<source::Read, ConfigError> {
    if !python_file::is_python(location) {
        return file::read(Path::new(location));
    }
    let given = |name: &str| {
        layers.iter().find_map(|layer| {
            layer.iter().find_map(|(s, v, _)| match v {
                Value::Str(text) if s.name == name => Some(text.clone()),
                _ => None,
            })
        })
    };
    let setting = given("virtualenv");
    let from_env = env("VIRTUAL_ENV");
    let cwd = std::env::current_dir().map_err(ConfigError::cwd)?;
    let cwd = given("chdir").map_or(cwd.clone(), |dir| cwd.join(dir));
    python_file::read(
        python,
        location,
        &cwd,
        setting.as_deref().map(Path::new),
        from_env.as_deref().map(Path::new),
    )
}

/// Reads `UNITCORN_CMD_ARGS` (or `GUNICORN_CMD_ARGS`) as gunicorn does: shell-split,
/// then parsed like the command line.
fn env_args(
    var: &'static str,
    text: &str,
) -> Result<Vec<(&'static Setting, Value, Origin)>, ConfigError> {
    let source = ArgsSource::EnvArgs(var);
    let words = cli::shell_split(text).map_err(|why| ConfigError::usage(source, &why))?;
    let args =
        std::iter::once(OsString::from("unitcorn")).chain(words.into_iter().map(OsString::from));
    match cli::parse(args) {
        Ok(parsed) if parsed.version => Err(ConfigError::usage(
            source,
            "--version is not a setting; give it on the command line",
        )),
        Ok(parsed) => read_args(parsed, source),
        Err(cli::ParseError::Help(_)) => Err(ConfigError::usage(
            source,
            "--help is not a setting; give it on the command line",
        )),
        Err(cli::ParseError::Usage(message)) => Err(ConfigError::usage(source, &message)),
    }
}

/// Checks the strings of one argument list against their settings.
fn read_args(
    parsed: cli::Parsed,
    source: ArgsSource,
) -> Result<Vec<(&'static Setting, Value, Origin)>, ConfigError> {
    parsed
        .values
        .into_iter()
        .map(|(setting, strings)| {
            let value = match setting.kind {
                Kind::Flag => Ok(Value::Bool(true)),
                kind => kind.read_strs(&strings),
            };
            let flag = setting.cli.display_name().unwrap_or_default();
            let origin = Origin::Args { source, flag };
            match value {
                Ok(v) => Ok((setting, v, origin)),
                Err(problem) => Err(ConfigError::value(origin, setting.name, problem)),
            }
        })
        .collect()
}

/// The value of a setting no source set, and where it came from: the table, or the
/// environment variable its default reads (`PORT`, `WEB_CONCURRENCY`).
fn default_value(
    setting: &'static Setting,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Value, Origin), ConfigError> {
    match setting.default {
        DefaultValue::Const(c) => Ok((c.to_value(), Origin::Default)),
        DefaultValue::Env {
            var,
            format,
            fallback,
        } => match env(var) {
            Some(raw) => {
                let origin = Origin::EnvDefault { var };
                match setting.kind.read_str(&format.replace("{}", &raw)) {
                    Ok(value) => Ok((value, origin)),
                    Err(p) => Err(ConfigError::value(origin, setting.name, p)),
                }
            }
            None => Ok((fallback.to_value(), Origin::Default)),
        },
        DefaultValue::Cwd => std::env::current_dir()
            .map(|dir| {
                (
                    Value::Str(dir.to_string_lossy().into_owned()),
                    Origin::Default,
                )
            })
            .map_err(ConfigError::cwd),
    }
}

fn require_app(settings: &Settings) -> Result<(), ConfigError> {
    match settings.wsgi_app {
        Some(_) => Ok(()),
        None => Err(ConfigError::no_app()),
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
impl Settings {
    /// The defaults, for other modules' tests (`app:app`, no file, no environment).
    pub fn for_tests() -> Settings {
        let args = vec!["unitcorn".into(), "app:app".into()];
        match load_from(args, &|_| None, &tests::NoPython) {
            Ok(Command::Serve(settings)) => settings,
            other => panic!("the defaults do not load: {other:?}"),
        }
    }
}
