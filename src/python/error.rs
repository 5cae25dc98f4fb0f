//! The interpreter layer's one error type: the interpreter, the virtualenv or the app could not
//! be brought up, or Python raised where we called it.
//!
//! Not here: the app's errors while serving (the worker reports those with their tracebacks).
//!
//! `Display` is one level, for the operator: what failed and what to do, and where Python
//! raised, its traceback (or its one line, for the calls whose failure is only a warning).
//! There is no Rust source below it: a Python exception is rendered to text while the
//! interpreter is at hand. The wording may change: use the `is_*` methods, not the text.

use std::fmt;

use pyo3::{PyErr, Python};

/// Why the interpreter, its virtualenv or the app could not be brought up.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The virtualenv the settings or `VIRTUAL_ENV` name cannot serve: the whole message.
    Virtualenv(String),
    /// The embedded interpreter did not start: the whole message.
    Start(String),
    /// Neither APP nor `wsgi_app` names the app.
    NoApp,
    /// `worker_class = "gevent"` and gevent does not import: the ImportError's line.
    NoGevent(String),
    /// Python raised while we were doing `doing` (empty: the text says it all, as the app
    /// loader's own "app not found" messages do); `text` is the traceback or one line.
    Raised { doing: &'static str, text: String },
}

impl Error {
    pub(super) fn virtualenv(message: String) -> Error {
        Error {
            kind: Kind::Virtualenv(message),
        }
    }

    pub(super) fn start(message: String) -> Error {
        Error {
            kind: Kind::Start(message),
        }
    }

    pub(super) fn no_app() -> Error {
        Error { kind: Kind::NoApp }
    }

    pub(super) fn no_gevent(err: &PyErr) -> Error {
        Error {
            kind: Kind::NoGevent(err.to_string()),
        }
    }

    /// Python raised `err` while we were `doing` something: its whole traceback.
    pub(super) fn traceback(py: Python<'_>, doing: &'static str, err: &PyErr) -> Error {
        Error::raised(doing, super::format_exception(py, err))
    }

    /// Python raised `err` while we were `doing` something: its one line (`TypeError: ...`).
    pub(super) fn one_line(doing: &'static str, err: &PyErr) -> Error {
        Error::raised(doing, err.to_string())
    }

    fn raised(doing: &'static str, text: String) -> Error {
        Error {
            kind: Kind::Raised { doing, text },
        }
    }

    /// The virtualenv named cannot serve (missing, not a venv, another Python).
    #[cfg(test)]
    pub fn is_virtualenv(&self) -> bool {
        matches!(self.kind, Kind::Virtualenv(_))
    }

    /// No app was named.
    #[cfg(test)]
    pub fn is_no_app(&self) -> bool {
        matches!(self.kind, Kind::NoApp)
    }

    /// Python raised (the app's import included).
    #[cfg(test)]
    pub fn is_raised(&self) -> bool {
        matches!(self.kind, Kind::Raised { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Virtualenv(message) | Kind::Start(message) => f.write_str(message),
            Kind::NoApp => f.write_str("no app given: pass APP (module:callable) or set wsgi_app"),
            Kind::NoGevent(line) => write!(
                f,
                "worker_class = \"gevent\" needs the gevent package in the app's virtualenv \
                 (pip install gevent): {line}"
            ),
            Kind::Raised { doing, text } => {
                let text = text.trim_end();
                match (doing.is_empty(), text.contains('\n')) {
                    (true, _) => f.write_str(text),
                    (false, true) => write!(f, "{doing}\n{text}"),
                    (false, false) => write!(f, "{doing}: {text}"),
                }
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_puts_what_we_did_before_the_traceback() {
        let one = Error::raised("cannot install the spew trace", "TypeError: no\n".into());
        assert!(one.is_raised());
        assert_eq!(
            one.to_string(),
            "cannot install the spew trace: TypeError: no"
        );
        let tb = Error::raised(
            "gevent's monkey-patching failed",
            "Traceback (most recent call last):\n  File \"x\"\nValueError: v\n".into(),
        );
        assert_eq!(
            tb.to_string(),
            "gevent's monkey-patching failed\nTraceback (most recent call last):\n  File \"x\"\n\
             ValueError: v"
        );
        let bare = Error::raised("", "Failed to find attribute 'app' in 'm'.\n".into());
        assert_eq!(bare.to_string(), "Failed to find attribute 'app' in 'm'.");
    }

    #[test]
    fn no_app_says_how_to_name_one() {
        let err = Error::no_app();
        assert!(err.is_no_app() && !err.is_raised() && !err.is_virtualenv());
        assert_eq!(
            err.to_string(),
            "no app given: pass APP (module:callable) or set wsgi_app"
        );
    }
}
