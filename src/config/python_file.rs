//! Reading a gunicorn Python config file (`-c gunicorn.conf.py`, `-c python:module`):
//! its module-level names become settings, hooks, or notes, as gunicorn reads them.
//!
//! Config does not run Python: it says what it needs of an interpreter
//! (`PythonConfigRunner`: run this file, give back its names as plain data) and the caller
//! hands one in (`python/config.rs` implements it). This file decides what each name is and
//! words the errors (file, line, setting). As in gunicorn, a name that is no setting at all
//! is the file's own variable and is left alone (a likely misspelt setting is noted); the
//! names of gunicorn settings go through `gunicorn.rs`.

use std::path::Path;

use super::error::ConfigError;
use super::extras::{ConfigRun, Extras, Hook};
use super::gunicorn::{self, Loose, Verdict, hook_parameters};
use super::origin::Origin;
use super::source::Read;
use super::table::{self, Kind, Scope};
use super::value::{Problem, Value, check_all, pair_item, sorted_pairs};

/// What config needs of an interpreter to read a Python config file. Config never starts
/// one itself: loading takes the runner as an argument, so that this layer knows nothing of
/// Python's embedding (`python::config::Runner` is the real one).
pub trait PythonConfigRunner {
    /// Run the config file at `location` (a path, `file:PATH`, or `python:MODULE`), with
    /// `cwd` first on `sys.path` and `virtualenv` (else `env_virtualenv`, `$VIRTUAL_ENV`)
    /// activated, so that the file can import the app's packages. The error is the
    /// interpreter's own (it could not start, the runner failed), worded for the operator;
    /// the file's exceptions are `Ran::Raised`.
    fn run(
        &self,
        location: &str,
        cwd: &Path,
        virtualenv: Option<&Path>,
        env_virtualenv: Option<&Path>,
    ) -> Result<Ran, RunnerError>;
}

/// Why a runner could not run the file: the interpreter layer's own error, which config
/// only shows.
pub type RunnerError = Box<dyn std::error::Error + Send + Sync>;

/// A module-level value, as Python gave it.
#[derive(Debug, Clone)]
pub enum PyValue {
    None,
    Bool(bool),
    /// Python's decimal digits (an int may be larger than any Rust integer).
    Int(String),
    Float(String),
    Str(String),
    List(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
    /// A callable: `name (file:line)` and its (fewest, most) positional arguments; the
    /// object itself stays with the runner, found again from a hook's descriptor.
    Callable {
        describe: String,
        arity: (usize, Option<usize>),
    },
    /// Anything else: its type name and a short repr.
    Other(String, String),
}

/// One module-level name of the config file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub value: PyValue,
    /// The line of the top-level statement that last bound it, when Python can tell.
    pub line: Option<usize>,
}

/// What running the config file gave.
#[derive(Debug)]
pub enum Ran {
    /// Its names, in the order they were first bound; `path` is the file that ran, `run`
    /// the key of its callables.
    Names {
        path: String,
        entries: Vec<Entry>,
        run: ConfigRun,
    },
    /// No such file.
    Missing { path: String },
    /// It raised (a syntax error included): the traceback, and the file's line.
    Raised {
        path: String,
        line: Option<usize>,
        traceback: String,
    },
}

/// Is `location` (the `-c` value) a Python config file rather than TOML?
pub(crate) fn is_python(location: &str) -> bool {
    location.starts_with("python:") || location.ends_with(".py")
}

/// Run the config file at `location` (a path or `python:MODULE`) with `python` and read its
/// names. `cwd` goes first on `sys.path`; `virtualenv` (else `env_virtualenv`,
/// `$VIRTUAL_ENV`) is activated first, so that the file can import the app's packages.
pub(crate) fn read(
    python: &dyn PythonConfigRunner,
    location: &str,
    cwd: &Path,
    virtualenv: Option<&Path>,
    env_virtualenv: Option<&Path>,
) -> Result<Read, ConfigError> {
    let ran = python
        .run(location, cwd, virtualenv, env_virtualenv)
        .map_err(|e| ConfigError::interpreter(location, e.to_string()))?;
    match ran {
        Ran::Missing { path } => Err(ConfigError::read(
            Path::new(&path),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )),
        Ran::Raised {
            path,
            line,
            traceback,
        } => Err(ConfigError::python_raised(path, line, traceback)),
        Ran::Names { path, entries, run } => names(&path, &run, entries),
    }
}

/// Sort the file's names into settings, hooks and notes; the first problem stops it.
/// `run` is the run of the file that bound them, which the hooks' descriptors name.
fn names(path: &str, run: &ConfigRun, entries: Vec<Entry>) -> Result<Read, ConfigError> {
    let mut read = Read {
        values: Vec::new(),
        extras: Extras::default(),
    };
    for entry in entries {
        let at = Origin::PyFile {
            path: path.to_owned(),
            line: entry.line,
        };
        if let Some(setting) = table::find(&entry.name) {
            if setting.scope != Scope::Anywhere {
                let flag = setting.cli.display_name().unwrap_or_default();
                return Err(ConfigError::value(
                    at,
                    setting.name,
                    Problem::Invalid(format!(
                        "cannot be set in a config file; give {flag} on the command line"
                    )),
                ));
            }
            let value = convert(setting.kind, &entry.value)
                .map_err(|problem| ConfigError::value(at.clone(), setting.name, problem))?;
            read.values.push((setting, value, at));
        } else if let Some(args) = gunicorn::hook_args(&entry.name) {
            let name = gunicorn::hooks()
                .find(|h| *h == entry.name)
                .expect("hook_args found it");
            match entry.value {
                PyValue::None => {}
                PyValue::Callable { describe, arity } => {
                    let (fewest, most) = arity;
                    if fewest > args || most.is_some_and(|m| m < args) {
                        return Err(ConfigError::hook(
                            &at,
                            name,
                            format!(
                                "must take {args} positional argument{} ({}); {} does not",
                                if args == 1 { "" } else { "s" },
                                hook_parameters(name),
                                describe
                            ),
                        ));
                    }
                    read.extras.hooks.retain(|h| h.name != name);
                    read.extras.hooks.push(Hook {
                        name,
                        describe,
                        run: run.clone(),
                    });
                }
                other => {
                    return Err(ConfigError::hook(
                        &at,
                        name,
                        format!(
                            "must be a function taking ({}), got {}",
                            hook_parameters(name),
                            describe(&other)
                        ),
                    ));
                }
            }
        } else if let Some(verdict) = gunicorn::verdict(&entry.name, &loose(&entry.value)) {
            match verdict {
                Verdict::Accept => {}
                Verdict::AcceptAndLog(why) => read.extras.notes.push(format!(
                    "{at}: setting {:?} has no effect in unitcorn: {why}",
                    entry.name
                )),
                Verdict::Refuse(why) => {
                    return Err(ConfigError::not_supported(&at, &entry.name, why));
                }
            }
        } else if !matches!(entry.value, PyValue::Callable { .. } | PyValue::Other(..))
            && !entry.name.starts_with('_')
            && let Some(meant) = table::suggest(&entry.name)
            && meant != entry.name
        {
            // gunicorn ignores names that are no setting: the file's own variables.
            read.extras.notes.push(format!(
                "{at}: {:?} is not a setting (did you mean {meant:?}?); ignored, as gunicorn \
                 ignores it",
                entry.name
            ));
        }
    }
    Ok(read)
}

/// A Python value as the `Kind` of its setting reads it (gunicorn's validators: strings
/// are read as the command line reads them, lists and dicts item by item).
fn convert(kind: Kind, value: &PyValue) -> Result<Value, Problem> {
    let expected = || Problem::Expected {
        expected: kind.expected(),
        got: describe(value),
    };
    match (kind, value) {
        (Kind::OptText(_) | Kind::OptPath, PyValue::None) => Ok(Value::Unset),
        (Kind::Flag, PyValue::Bool(b)) => Ok(Value::Bool(*b)),
        (Kind::Int { min, max }, PyValue::Int(digits)) => match digits.parse::<i128>() {
            Ok(n) if n >= i128::from(min) && n <= i128::from(max) => Ok(Value::Int(n as u64)),
            _ => Err(expected()),
        },
        (Kind::Umask, PyValue::Int(digits)) => match digits.parse::<u64>() {
            Ok(n) if n <= 0o777 => Ok(Value::Int(n)),
            _ => Err(expected()),
        },
        // A uid or gid given as a number (gunicorn takes both).
        (Kind::Text(_) | Kind::OptText(_), PyValue::Int(digits)) => kind.read_str(digits),
        (
            Kind::Flag
            | Kind::Int { .. }
            | Kind::Umask
            | Kind::Text(_)
            | Kind::OptText(_)
            | Kind::Path
            | Kind::OptPath
            | Kind::Repeated(_)
            | Kind::CommaList(_)
            | Kind::Pairs,
            PyValue::Str(s),
        ) => kind.read_str(s),
        (Kind::Repeated(check) | Kind::CommaList(check), PyValue::List(items)) => {
            let mut strings = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    PyValue::Str(s) => strings.push(s.trim()),
                    other => {
                        return Err(Problem::Expected {
                            expected: kind.expected(),
                            got: format!("a list holding {}", describe(other)),
                        });
                    }
                }
            }
            check_all(check, strings)
        }
        (Kind::Pairs, PyValue::Dict(pairs)) => {
            let mut out = Vec::with_capacity(pairs.len());
            for pair in pairs {
                match pair {
                    (PyValue::Str(name), PyValue::Str(value)) => out.push(pair_item(name, value)?),
                    (name, value) => {
                        return Err(Problem::Expected {
                            expected: kind.expected(),
                            got: format!("a dict holding {}: {}", describe(name), describe(value)),
                        });
                    }
                }
            }
            sorted_pairs(out)
        }
        _ => Err(expected()),
    }
}

/// A Python value as it appears in "got …": Python's spelling.
fn describe(value: &PyValue) -> String {
    match value {
        PyValue::None => "None".into(),
        PyValue::Bool(true) => "True".into(),
        PyValue::Bool(false) => "False".into(),
        PyValue::Int(digits) => digits.clone(),
        PyValue::Float(repr) => repr.clone(),
        PyValue::Str(s) => super::value::quote(s),
        PyValue::List(_) => "a list".into(),
        PyValue::Dict(_) => "a dict".into(),
        PyValue::Callable { describe, .. } => format!("the callable {describe}"),
        PyValue::Other(type_name, repr) => format!("{repr} (a {type_name})"),
    }
}

/// The value reduced for comparison with gunicorn's defaults.
fn loose(value: &PyValue) -> Loose<'_> {
    match value {
        PyValue::None => Loose::None,
        PyValue::Bool(b) => Loose::Bool(*b),
        PyValue::Int(digits) => digits.parse().map_or(Loose::Other, Loose::Int),
        PyValue::Str(s) => Loose::Str(s),
        PyValue::List(items) if items.is_empty() => Loose::Empty,
        PyValue::Dict(pairs) if pairs.is_empty() => Loose::Empty,
        _ => Loose::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: PyValue, line: usize) -> Entry {
        Entry {
            name: name.into(),
            value,
            line: Some(line),
        }
    }

    fn names(path: &str, entries: Vec<Entry>) -> Result<Read, ConfigError> {
        super::names(path, &ConfigRun::new(path.to_owned(), u64::MAX), entries)
    }

    fn err(entries: Vec<Entry>) -> String {
        match names("/etc/gunicorn.conf.py", entries) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn values_convert_like_gunicorns_validators() {
        let read = names(
            "/etc/g.py",
            vec![
                entry("workers", PyValue::Int("3".into()), 1),
                entry("bind", PyValue::Str("127.0.0.1:8000".into()), 2),
                entry("umask", PyValue::Int("18".into()), 3),
                entry("user", PyValue::Int("1000".into()), 4),
                entry("pidfile", PyValue::None, 5),
                entry(
                    "raw_env",
                    PyValue::List(vec![PyValue::Str("A=1".into())]),
                    6,
                ),
                entry(
                    "secure_scheme_headers",
                    PyValue::Dict(vec![(
                        PyValue::Str("X-Proto".into()),
                        PyValue::Str("https".into()),
                    )]),
                    7,
                ),
                entry("daemon", PyValue::Bool(false), 8),
                entry("multiprocessing_helper", PyValue::Int("2".into()), 9),
            ],
        )
        .unwrap();
        let got: Vec<_> = read
            .values
            .iter()
            .map(|(s, v, _)| (s.name, v.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("workers", Value::Int(3)),
                ("bind", Value::List(vec!["127.0.0.1:8000".into()])),
                ("umask", Value::Int(0o22)),
                ("user", Value::Str("1000".into())),
                ("pidfile", Value::Unset),
                ("raw_env", Value::List(vec!["A=1".into()])),
                (
                    "secure_scheme_headers",
                    Value::List(vec!["X-PROTO=https".into()])
                ),
                ("daemon", Value::Bool(false)),
            ]
        );
        assert!(read.extras.notes.is_empty(), "{:?}", read.extras.notes);
    }

    #[test]
    fn errors_name_the_file_line_and_setting() {
        assert_eq!(
            err(vec![entry("workers", PyValue::Str("four".into()), 12)]),
            r#"/etc/gunicorn.conf.py:12: setting "workers" must be a positive integer, got "four""#
        );
        assert_eq!(
            err(vec![entry("timeout", PyValue::Float("2.5".into()), 3)]),
            r#"/etc/gunicorn.conf.py:3: setting "timeout" must be a non-negative integer, got 2.5"#
        );
        assert_eq!(
            err(vec![entry("errorlog", PyValue::None, 4)]),
            r#"/etc/gunicorn.conf.py:4: setting "errorlog" must be a string, got None"#
        );
        assert_eq!(
            err(vec![entry(
                "certfile",
                PyValue::Str("/etc/ssl/c.pem".into()),
                9
            )]),
            "/etc/gunicorn.conf.py:9: setting \"certfile\" is not supported: TLS is terminated \
             by the proxy in front of unitcorn (nginx, a load balancer); unitcorn serves plain \
             HTTP"
        );
        assert!(
            err(vec![entry("post_fork", PyValue::Str("x".into()), 2)]).starts_with(
                "/etc/gunicorn.conf.py:2: setting \"post_fork\" (a server hook): must be a \
                 function taking (server, worker), got \"x\""
            )
        );
        assert!(
            err(vec![entry("check_config", PyValue::Bool(true), 1)])
                .contains("give --check-config on the command line")
        );
    }

    #[test]
    fn gunicorn_defaults_pass_and_ignored_settings_are_noted() {
        let read = names(
            "/etc/g.py",
            vec![
                entry("keyfile", PyValue::None, 1),
                entry("syslog", PyValue::Bool(false), 2),
                entry("reuse_port", PyValue::Bool(true), 3),
                entry("wokers", PyValue::Int("3".into()), 4),
            ],
        )
        .unwrap();
        assert!(read.values.is_empty());
        assert_eq!(read.extras.notes.len(), 2, "{:?}", read.extras.notes);
        assert!(
            read.extras.notes[0].starts_with("/etc/g.py:3: setting \"reuse_port\" has no effect")
        );
        assert!(read.extras.notes[1].contains("did you mean \"workers\"?"));
    }
}
