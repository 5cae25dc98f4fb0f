//! The logging layer's one error type: a log that could not be set up, or an
//! `access_log_format` that does not compile.
//!
//! Not here: failures to write a line once the log is open (`io::Error`s the writers return,
//! which their callers count and carry on).
//!
//! `Display` prints one level, written for the operator (what failed, on what, what to do);
//! the cause, when there is one, is the `source`. `{:#}` prints the whole chain on one line,
//! as the top level does. The wording may change: match on the `is_*` methods, not the text.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::journald;

/// Why a log could not be set up, or a format not compiled.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    source: Option<Cause>,
}

/// The cause of an `Error`: the OS's error, or for a log file, why in words (`OpenWhy`).
#[derive(Debug)]
enum Cause {
    Io(io::Error),
    Open(OpenWhy),
}

/// Why a log file could not be opened, said of its path: a missing directory, a
/// directory the user cannot write in.
#[derive(Debug)]
pub struct OpenWhy {
    error: io::Error,
    path: PathBuf,
}

impl fmt::Display for OpenWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .display();
        match self.error.kind() {
            io::ErrorKind::NotFound => write!(f, "the directory {dir} does not exist"),
            io::ErrorKind::PermissionDenied => write!(
                f,
                "permission denied: the user unitcorn runs as cannot write it, or in {dir}"
            ),
            io::ErrorKind::IsADirectory => write!(f, "it is a directory: name a file in it"),
            _ => write!(
                f,
                "{}; check that {dir} exists and is writable by the user unitcorn runs as",
                self.error
            ),
        }
    }
}

/// Its message says what the OS error means: not repeated as a source.
impl StdError for OpenWhy {}

#[derive(Debug)]
enum Kind {
    /// `loglevel` is not one of gunicorn's level names.
    Level(String),
    /// A log file could not be opened.
    Open { log: Log, path: PathBuf },
    /// `errorlog`/`accesslog = "journald"`, and journald's socket cannot be reached.
    Journal { log: Log },
    /// A global `tracing` subscriber was installed before the error log's.
    AlreadyInstalled,
    /// `access_log_format` does not compile.
    Format(Format),
}

/// Which log: they share kinds, and the message names the setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Log {
    Error,
    Access,
}

impl Log {
    fn setting(self) -> &'static str {
        match self {
            Log::Error => "errorlog",
            Log::Access => "accesslog",
        }
    }
}

/// What is wrong in an `access_log_format`, at which byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Format {
    /// A `%(` with no `)`.
    Unclosed { at: usize },
    /// A `%(name)` that is not one of gunicorn's atoms.
    UnknownAtom { atom: String },
    /// A known atom not followed by `s` (or `d`/`i` for the integer atoms).
    Conversion { atom: String, at: usize },
    /// A `%` followed by neither `%` nor `(`.
    LonePercent { at: usize },
}

impl Error {
    fn new(kind: Kind) -> Error {
        Error { kind, source: None }
    }

    fn with(mut self, source: io::Error) -> Error {
        self.source = Some(Cause::Io(source));
        self
    }

    pub(super) fn level(loglevel: &str) -> Error {
        Error::new(Kind::Level(loglevel.to_owned()))
    }

    pub(super) fn open(log: Log, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        let why = OpenWhy {
            error: source,
            path: path.clone(),
        };
        Error {
            kind: Kind::Open { log, path },
            source: Some(Cause::Open(why)),
        }
    }

    pub(super) fn journal(log: Log, source: io::Error) -> Error {
        Error::new(Kind::Journal { log }).with(source)
    }

    pub(super) fn already_installed() -> Error {
        Error::new(Kind::AlreadyInstalled)
    }

    pub(super) fn access_format(problem: Format) -> Error {
        Error::new(Kind::Format(problem))
    }

    /// The setting whose value caused this (`errorlog`, `loglevel`...), for the caller
    /// to say where it was set; `None` for a failure no setting caused.
    pub fn setting(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Level(_) => Some("loglevel"),
            Kind::Open { log, .. } | Kind::Journal { log } => Some(log.setting()),
            Kind::Format(_) => Some("access_log_format"),
            Kind::AlreadyInstalled => None,
        }
    }

    /// The `loglevel` setting is not one of gunicorn's level names.
    #[cfg(test)]
    pub fn is_level(&self) -> bool {
        matches!(self.kind, Kind::Level(_))
    }

    /// A log file could not be opened (the source says why).
    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        matches!(self.kind, Kind::Open { .. })
    }

    /// journald's socket could not be reached.
    #[cfg(test)]
    pub fn is_journal(&self) -> bool {
        matches!(self.kind, Kind::Journal { .. })
    }

    /// `access_log_format` does not compile.
    #[cfg(test)]
    pub fn is_format(&self) -> bool {
        matches!(self.kind, Kind::Format(_))
    }
}

/// One error is never equal to another; this is for comparing results of `parse` in tests,
/// where the problem found in a format is what matters.
impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Format(a), Kind::Format(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Level(v) => write!(
                f,
                "invalid loglevel {v:?}: use one of debug, info, warning, error, critical"
            ),
            Kind::Open { log, path } => {
                let which = match log {
                    Log::Error => "error",
                    Log::Access => "access",
                };
                write!(f, "cannot open the {which} log {}", path.display())
            }
            Kind::Journal { log } => {
                let (setting, stdio) = match log {
                    Log::Error => (log.setting(), "stderr"),
                    Log::Access => (log.setting(), "stdout"),
                };
                write!(
                    f,
                    "{setting} = \"journald\": cannot reach journald at {}",
                    journald::SOCKET
                )?;
                // The socket's error belongs before the advice; it is not repeated as the
                // source.
                if let Some(Cause::Io(source)) = &self.source {
                    write!(f, ": {source}")?;
                }
                write!(
                    f,
                    "; is systemd-journald running? ({setting} = \"-\" logs to {stdio})"
                )
            }
            Kind::AlreadyInstalled => f.write_str(
                "a global log subscriber is already installed in this process \
                 (the error log is set up once, before the first fork; please report)",
            ),
            Kind::Format(problem) => match problem {
                Format::Unclosed { at } => write!(
                    f,
                    "access_log_format: \"%(\" at byte {at} is never closed; atoms are written \
                     %(name)s"
                ),
                Format::UnknownAtom { atom } => write!(
                    f,
                    "access_log_format: unknown atom %({atom})s; use one of h l u t r m U q H s \
                     B b f a T M D L p, or {{header}}i, {{header}}o, {{variable}}e"
                ),
                Format::Conversion { atom, at } => write!(
                    f,
                    "access_log_format: atom %({atom}) at byte {at} must be written %({atom})s"
                ),
                Format::LonePercent { at } => write!(
                    f,
                    "access_log_format: lone \"%\" at byte {at}; write %% for a percent sign or \
                     %(name)s for an atom"
                ),
            },
        }?;
        if f.alternate() {
            let mut source = self.source();
            while let Some(e) = source {
                write!(f, ": {e}")?;
                source = e.source();
            }
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match (&self.kind, &self.source) {
            // Quoted in the message already.
            (Kind::Journal { .. }, _) | (_, None) => None,
            (_, Some(Cause::Io(e))) => Some(e),
            (_, Some(Cause::Open(why))) => Some(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_names_the_setting_and_path_and_chains_the_cause() {
        let err = Error::open(
            Log::Access,
            "/var/log/app/access.log",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(err.is_open());
        assert_eq!(err.setting(), Some("accesslog"));
        assert_eq!(
            err.to_string(),
            "cannot open the access log /var/log/app/access.log"
        );
        assert_eq!(
            format!("{err:#}"),
            "cannot open the access log /var/log/app/access.log: permission denied: the \
             user unitcorn runs as cannot write it, or in /var/log/app"
        );
        let missing = Error::open(
            Log::Error,
            "/nonexistent/error.log",
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(
            format!("{missing:#}"),
            "cannot open the error log /nonexistent/error.log: the directory /nonexistent \
             does not exist"
        );
    }

    #[test]
    fn journal_quotes_its_cause_once() {
        let err = Error::journal(Log::Error, io::Error::from(io::ErrorKind::NotFound));
        assert!(err.is_journal());
        assert!(err.source().is_none());
        assert_eq!(
            format!("{err:#}"),
            format!(
                "errorlog = \"journald\": cannot reach journald at {}: entity not found; is \
                 systemd-journald running? (errorlog = \"-\" logs to stderr)",
                journald::SOCKET
            )
        );
    }
}
