//! `ConfigError`: why the configuration cannot be used, worded for the operator.
//!
//! Every message names where the problem is (file:line:column, the flag and whether it
//! came from the command line or `UNITCORN_CMD_ARGS`, or the environment variable) and,
//! where there is one, the next step. This file only words errors; it detects none.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::origin::{ArgsSource, FilePos, Origin};
use super::value::Problem;

/// The configuration could not be loaded. `Display` gives the whole message, on one
/// line except for command-line syntax errors, which carry clap's usage hint.
#[derive(Debug)]
pub struct ConfigError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    /// A value that does not fit its setting.
    Value {
        origin: Origin,
        setting: &'static str,
        problem: Problem,
    },
    /// A config-file key that is no setting.
    UnknownSetting {
        at: FilePos,
        key: String,
        suggestion: Option<&'static str>,
        /// The key heads a `[table]`: likely a config nested the way other tools nest.
        is_table: bool,
    },
    /// A command-line-only setting found in the config file.
    NotInFile {
        at: FilePos,
        setting: &'static str,
        flag: String,
    },
    /// The config file is not valid TOML.
    Syntax { at: FilePos, message: String },
    /// The config file could not be read.
    Read { path: PathBuf, error: io::Error },
    /// A gunicorn setting unitcorn refuses (`config/gunicorn.rs` says why); `at` is
    /// where it was set.
    NotSupported {
        at: String,
        setting: String,
        why: &'static str,
    },
    /// A server hook given where only a Python callable can be (TOML), or a callable that
    /// does not take the hook's arguments.
    Hook {
        at: String,
        setting: String,
        problem: String,
    },
    /// The Python config file raised (a syntax error included).
    PythonRaised {
        path: String,
        line: Option<usize>,
        traceback: String,
    },
    /// The interpreter could not run the Python config file at all.
    Interpreter { location: String, message: String },
    /// The command line or `UNITCORN_CMD_ARGS` does not parse (unknown flag, missing
    /// value, unclosed quote). `message` is clap's, without its "error: " prefix.
    Usage { source: ArgsSource, message: String },
    /// Serving (or checking) needs an app and none was given.
    NoApp,
    /// The default of `chdir` is the working directory, which could not be read.
    Cwd(io::Error),
}

impl ConfigError {
    pub(crate) fn value(origin: Origin, setting: &'static str, problem: Problem) -> Self {
        Self::from(ErrorKind::Value {
            origin,
            setting,
            problem,
        })
    }

    pub(crate) fn unknown_setting(
        at: FilePos,
        key: &str,
        suggestion: Option<&'static str>,
        is_table: bool,
    ) -> Self {
        Self::from(ErrorKind::UnknownSetting {
            at,
            key: key.to_owned(),
            suggestion,
            is_table,
        })
    }

    pub(crate) fn not_in_file(at: FilePos, setting: &'static str, flag: String) -> Self {
        Self::from(ErrorKind::NotInFile { at, setting, flag })
    }

    pub(crate) fn syntax(at: FilePos, message: &str) -> Self {
        Self::from(ErrorKind::Syntax {
            at,
            message: message.trim_end().to_owned(),
        })
    }

    pub(crate) fn read(path: &Path, error: io::Error) -> Self {
        Self::from(ErrorKind::Read {
            path: path.to_owned(),
            error,
        })
    }

    pub(crate) fn not_supported(at: &Origin, setting: &str, why: &'static str) -> Self {
        Self::from(ErrorKind::NotSupported {
            at: at.to_string(),
            setting: setting.to_owned(),
            why,
        })
    }

    pub(crate) fn hook(at: &Origin, setting: &str, problem: String) -> Self {
        Self::from(ErrorKind::Hook {
            at: at.to_string(),
            setting: setting.to_owned(),
            problem,
        })
    }

    pub(crate) fn python_raised(path: String, line: Option<usize>, traceback: String) -> Self {
        Self::from(ErrorKind::PythonRaised {
            path,
            line,
            traceback,
        })
    }

    pub(crate) fn interpreter(location: &str, message: String) -> Self {
        Self::from(ErrorKind::Interpreter {
            location: location.to_owned(),
            message,
        })
    }

    pub(crate) fn usage(source: ArgsSource, message: &str) -> Self {
        let message = message.trim();
        let message = message.strip_prefix("error: ").unwrap_or(message);
        Self::from(ErrorKind::Usage {
            source,
            message: message.to_owned(),
        })
    }

    pub(crate) fn no_app() -> Self {
        Self::from(ErrorKind::NoApp)
    }

    pub(crate) fn cwd(error: io::Error) -> Self {
        Self::from(ErrorKind::Cwd(error))
    }

    /// The command line (or `UNITCORN_CMD_ARGS`) does not parse: an unknown flag, a
    /// missing value, an unclosed quote. A caller may exit 2, as clap and argparse do.
    pub fn is_usage(&self) -> bool {
        matches!(self.kind, ErrorKind::Usage { .. })
    }
}

impl From<ErrorKind> for ConfigError {
    fn from(kind: ErrorKind) -> Self {
        ConfigError { kind }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Value {
                origin,
                setting,
                problem,
            } => {
                let location = origin.to_string();
                let subject = match origin {
                    Origin::Args { flag, .. } => flag.clone(),
                    _ => format!("setting {setting:?}"),
                };
                match problem {
                    Problem::Expected { expected, got } => {
                        write!(f, "{location}: {subject} must be {expected}, got {got}")
                    }
                    Problem::Invalid(why) => write!(f, "{location}: {subject}: {why}"),
                }
            }
            ErrorKind::UnknownSetting {
                at,
                key,
                suggestion,
                is_table,
            } => match suggestion {
                Some(name) => write!(f, "{at}: unknown setting {key:?} (did you mean {name:?}?)"),
                None if *is_table => write!(
                    f,
                    "{at}: unknown setting {key:?}; settings are top-level keys, not in a [table]"
                ),
                None => write!(
                    f,
                    "{at}: unknown setting {key:?}; `unitcorn --print-config` lists every setting"
                ),
            },
            ErrorKind::NotInFile { at, setting, flag } => write!(
                f,
                "{at}: setting {setting:?} cannot be set in a config file; give {flag} on the command line"
            ),
            ErrorKind::Syntax { at, message } => write!(f, "{at}: invalid TOML: {message}"),
            ErrorKind::Read { path, error } => write!(
                f,
                "{}: cannot read the config file: {error}",
                path.display()
            ),
            ErrorKind::NotSupported { at, setting, why } => {
                write!(f, "{at}: setting {setting:?} is not supported: {why}")
            }
            ErrorKind::Hook {
                at,
                setting,
                problem,
            } => {
                write!(f, "{at}: setting {setting:?} (a server hook): {problem}")
            }
            ErrorKind::PythonRaised {
                path,
                line,
                traceback,
            } => {
                match line {
                    Some(line) => write!(f, "{path}:{line}: ")?,
                    None => write!(f, "{path}: ")?,
                }
                write!(
                    f,
                    "the config file raised an exception:\n{}",
                    traceback.trim_end()
                )
            }
            ErrorKind::Interpreter { location, message } => write!(
                f,
                "{location}: the Python interpreter could not run the config file: {}",
                message.trim_end()
            ),
            ErrorKind::Usage { source, message } => write!(f, "{source}: {message}"),
            ErrorKind::NoApp => f.write_str(
                "no app to serve: pass APP (e.g. `unitcorn myproject.wsgi:application`) \
                 or set wsgi_app in the config file",
            ),
            ErrorKind::Cwd(error) => write!(
                f,
                "cannot read the current directory, the default of chdir ({error}); pass --chdir DIR"
            ),
        }
    }
}

/// The message above is complete: an io error it wraps is already quoted in it, so it
/// is not also returned as a source (printing the chain would say it twice).
impl std::error::Error for ConfigError {}
