//! Running a gunicorn Python config file in the embedded interpreter, and bringing its
//! module-level names back as plain data (`PyValue`); the callables stay here, found
//! again from a hook's descriptor (`config::extras::Hook`) by `callable`.
//!
//! Which names are settings, and what they must be, is `config/python_file.rs`'s job.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use pyo3::prelude::*;
use pyo3::types::{PyModule, PyTuple};

use crate::config::extras::{ConfigRun, Hook};

const SOURCE: &str = include_str!("pyconfig.py");

/// The callables each run of a config file bound at module level, by name.
///
/// Kept as they were when the file ran rather than looked up again in its module: that is
/// what gunicorn calls (its settings capture the functions), a hook that rebinds a
/// module-level name does not change which function is the hook, and a HUP re-runs the
/// file (a new `__config__` module) while the settings kept for a rollback must still
/// call their own run's functions.
struct Run {
    serial: u64,
    /// Alive while a hook descriptor of the run is (`ConfigRun::held`).
    held: Weak<()>,
    callables: Vec<(String, Py<PyAny>)>,
}

static RUNS: Mutex<Vec<Run>> = Mutex::new(Vec::new());
static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

fn runs() -> std::sync::MutexGuard<'static, Vec<Run>> {
    RUNS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The callable `hook` describes, as its run of the config file bound it. `None` only for
/// a descriptor not made from `run`'s names: one that was keeps its run's callables.
pub fn callable(py: Python<'_>, hook: &Hook) -> Option<Py<PyAny>> {
    let runs = runs();
    let run = runs.iter().find(|r| r.serial == hook.run.serial)?;
    let (_, callable) = run.callables.iter().find(|(name, _)| name == hook.name)?;
    Some(callable.clone_ref(py))
}

/// Keep the callables of a run that just ended, and let go of those of the runs no
/// descriptor holds any more (a replaced configuration, a file without hooks). Called
/// attached to the interpreter, so the objects let go of are freed at once.
fn keep(_py: Python<'_>, path: &str, callables: Vec<(String, Py<PyAny>)>) -> ConfigRun {
    let run = ConfigRun::new(path.to_owned(), NEXT_RUN.fetch_add(1, Ordering::Relaxed));
    let released: Vec<Run> = {
        let mut runs = runs();
        let (alive, released) = std::mem::take(&mut *runs)
            .into_iter()
            .partition(|r| r.held.strong_count() > 0);
        *runs = alive;
        runs.push(Run {
            serial: run.serial,
            held: std::sync::Arc::downgrade(&run.held),
            callables,
        });
        released
    };
    // Dropped with the lock released: a finalizer that runs then may reach `callable`.
    drop(released);
    run
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
    /// A callable: `name (file:line)` and its (fewest, most) positional arguments; the
    /// object itself is kept by this module (`callable`) when it is a module-level name.
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

/// Run the config file at `location` (a path, `file:PATH`, or `python:MODULE`), with
/// `cwd` first on `sys.path` and the virtualenv (if any) activated. Starts the
/// interpreter in this process if it is not yet.
pub fn run(
    location: &str,
    cwd: &Path,
    virtualenv: Option<super::NamedVenv<'_>>,
) -> Result<Ran, super::Error> {
    super::start(&super::PythonSetup {
        chdir: cwd,
        pythonpath: None,
        virtualenv,
    })?;
    // The file's own exceptions are `Ran::Raised`; these are the runner's, whose caller
    // says what was being run.
    const RUNNING: &str = "";
    Python::attach(|py| {
        let module = module(py).map_err(|e| super::Error::traceback(py, RUNNING, &e))?;
        let outcome = module
            .getattr("run")
            .and_then(|f| f.call1((location, cwd.to_string_lossy().as_ref())))
            .map_err(|e| super::Error::traceback(py, RUNNING, &e))?;
        read_outcome(py, &outcome).map_err(|e| super::Error::traceback(py, RUNNING, &e))
    })
}

fn read_outcome(py: Python<'_>, outcome: &Bound<'_, PyAny>) -> PyResult<Ran> {
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
            let mut callables = Vec::new();
            for item in tuple.get_item(2)?.try_iter()? {
                let item = item?;
                let entry = item.cast::<PyTuple>()?;
                let name: String = entry.get_item(0)?.extract()?;
                let tagged = entry.get_item(1)?;
                let value = read_value(&tagged)?;
                if let PyValue::Callable { .. } = value {
                    let object = tagged.cast::<PyTuple>()?.get_item(1)?;
                    callables.push((name.clone(), object.unbind()));
                }
                entries.push(Entry {
                    name,
                    value,
                    line: entry.get_item(2)?.extract()?,
                });
            }
            let run = keep(py, &path, callables);
            Ran::Names { path, entries, run }
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
            PyValue::Callable {
                describe: tuple.get_item(2)?.extract()?,
                arity: (fewest, usize::try_from(most).ok()),
            }
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

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use pyo3::prelude::*;

    use crate::config::{Command, Settings, load_from};

    fn load(file: &std::path::Path) -> Settings {
        let args = ["unitcorn", "-c", &file.to_string_lossy(), "app:app"];
        match load_from(args.iter().map(OsString::from).collect(), &|_| None) {
            Ok(Command::Serve(settings)) => settings,
            other => panic!("{other:?}"),
        }
    }

    fn returns(settings: &Settings) -> i64 {
        let hook = settings
            .extras
            .hook("on_starting")
            .expect("the hook is set");
        Python::attach(|py| {
            let callable = super::callable(py, hook).expect("its run keeps it");
            callable
                .call1(py, (py.None(),))
                .unwrap()
                .extract(py)
                .unwrap()
        })
    }

    #[test]
    fn each_run_of_the_file_keeps_its_own_callables_while_its_settings_live() {
        let dir = std::env::temp_dir().join(format!("unitcorn-hook-runs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hooks.conf.py");
        // The same hook at the same place, another body (and size, so that no cached
        // bytecode of the first is taken for the second).
        std::fs::write(&file, "def on_starting(server):\n    return 1\n").unwrap();
        let first = load(&file);
        std::fs::write(&file, "def on_starting(server):\n    return 22\n").unwrap();
        let second = load(&file);
        // A HUP that changes nothing else sees the same configuration...
        assert_eq!(first.extras, second.extras);
        // ...yet a rollback to the first settings calls the first run's function.
        assert_eq!((returns(&first), returns(&second)), (1, 22));

        let serial = first.extras.hook("on_starting").unwrap().run.serial;
        drop(first);
        let _third = load(&file);
        assert!(
            !super::runs().iter().any(|r| r.serial == serial),
            "a run no settings hold is let go of at the next run"
        );
        assert_eq!(returns(&second), 22);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
