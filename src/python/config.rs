//! Running a gunicorn Python config file in the embedded interpreter, and bringing its
//! module-level names back as plain data (`PyValue`), callables kept as `Hook`s.
//!
//! Which names are settings, and what they must be, is `config/python_file.rs`'s job.

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyModule, PyTuple};

const SOURCE: &str = include_str!("pyconfig.py");

/// A Python callable from the config file (a server hook).
#[derive(Clone)]
pub struct Hook {
    pub callable: Arc<Py<PyAny>>,
    /// `name (file:line)`, for `--print-config` and messages.
    pub describe: String,
    /// The fewest and most positional arguments it takes (`None`: any number).
    pub arity: (usize, Option<usize>),
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

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
    Callable(Hook),
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
    /// Its names, in the order they were first bound; `path` is the file that ran.
    Names { path: String, entries: Vec<Entry> },
    /// No such file.
    Missing { path: String },
    /// It raised (a syntax error included): the traceback, and the file's line.
    Raised {
        path: String,
        line: Option<usize>,
        traceback: String,
    },
}

/// Run the config file at `location` (a path, `file:PATH`, or `python:MODULE`), with
/// `cwd` first on `sys.path` and the virtualenv (if any) activated. Starts the
/// interpreter in this process if it is not yet.
pub fn run(
    location: &str,
    cwd: &Path,
    virtualenv: Option<super::NamedVenv<'_>>,
) -> Result<Ran, String> {
    super::start(&super::PythonSetup {
        chdir: cwd,
        pythonpath: None,
        virtualenv,
    })
    .map_err(|e| e.to_string())?;
    Python::attach(|py| {
        let module = module(py).map_err(|e| super::format_exception(py, &e))?;
        let outcome = module
            .getattr("run")
            .and_then(|f| f.call1((location, cwd.to_string_lossy().as_ref())))
            .map_err(|e| super::format_exception(py, &e))?;
        read_outcome(&outcome).map_err(|e| super::format_exception(py, &e))
    })
}

fn read_outcome(outcome: &Bound<'_, PyAny>) -> PyResult<Ran> {
    let tuple = outcome.cast::<PyTuple>()?;
    let tag: String = tuple.get_item(0)?.extract()?;
    let path: String = tuple.get_item(1)?.extract()?;
    Ok(match tag.as_str() {
        "missing" => Ran::Missing { path },
        "error" => Ran::Raised {
            path,
            line: tuple.get_item(2)?.extract()?,
            traceback: tuple.get_item(3)?.extract()?,
        },
        _ => {
            let mut entries = Vec::new();
            for item in tuple.get_item(2)?.try_iter()? {
                let item = item?;
                let entry = item.cast::<PyTuple>()?;
                entries.push(Entry {
                    name: entry.get_item(0)?.extract()?,
                    value: read_value(&entry.get_item(1)?)?,
                    line: entry.get_item(2)?.extract()?,
                });
            }
            Ran::Names { path, entries }
        }
    })
}

/// One `_tag`ged value back into `PyValue`.
fn read_value(tagged: &Bound<'_, PyAny>) -> PyResult<PyValue> {
    let tuple = tagged.cast::<PyTuple>()?;
    let tag: String = tuple.get_item(0)?.extract()?;
    Ok(match tag.as_str() {
        "none" => PyValue::None,
        "bool" => PyValue::Bool(tuple.get_item(1)?.extract()?),
        "int" => PyValue::Int(tuple.get_item(1)?.extract()?),
        "float" => PyValue::Float(tuple.get_item(1)?.extract()?),
        "str" => PyValue::Str(tuple.get_item(1)?.extract()?),
        "list" => PyValue::List(
            tuple
                .get_item(1)?
                .try_iter()?
                .map(|v| read_value(&v?))
                .collect::<PyResult<_>>()?,
        ),
        "dict" => {
            let mut pairs = Vec::new();
            for pair in tuple.get_item(1)?.try_iter()? {
                let pair = pair?;
                let pair = pair.cast::<PyTuple>()?;
                pairs.push((
                    read_value(&pair.get_item(0)?)?,
                    read_value(&pair.get_item(1)?)?,
                ));
            }
            PyValue::Dict(pairs)
        }
        "callable" => {
            let (fewest, most): (usize, isize) = tuple.get_item(3)?.extract()?;
            PyValue::Callable(Hook {
                callable: Arc::new(tuple.get_item(1)?.unbind()),
                describe: tuple.get_item(2)?.extract()?,
                arity: (fewest, usize::try_from(most).ok()),
            })
        }
        _ => PyValue::Other(tuple.get_item(1)?.extract()?, tuple.get_item(2)?.extract()?),
    })
}

/// The helper module, compiled once per process.
fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static MODULE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            let code = CString::new(SOURCE).expect("pyconfig.py contains no NUL byte");
            PyModule::from_code(py, &code, c"unitcorn/pyconfig.py", c"_unitcorn_pyconfig")
                .map(Bound::unbind)
        })
        .map(|m| m.bind(py).clone())
}
