//! Running a gunicorn Python config file in the embedded interpreter, and bringing its
//! module-level names back as plain data (`PyValue`): config's `PythonConfigRunner`, which
//! the callers of `config::load` hand in as `Runner`. The callables stay here, found again
//! from a hook's descriptor (`config::extras::Hook`) by `callable`.
//!
//! Which names are settings, and what they must be, is `config/python_file.rs`'s job.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use pyo3::prelude::*;
use pyo3::types::{PyModule, PyTuple};

use crate::config::extras::{ConfigRun, Hook};
use crate::config::{Entry, PyValue, PythonConfigRunner, Ran, RunnerError};

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

/// The embedded interpreter as config's runner of Python config files.
pub struct Runner;

impl PythonConfigRunner for Runner {
    fn run(
        &self,
        location: &str,
        cwd: &Path,
        virtualenv: Option<&Path>,
        env_virtualenv: Option<&Path>,
    ) -> Result<Ran, RunnerError> {
        // Where `virtualenv` was set is not known yet: the settings are being read.
        let venv = super::named_venv(virtualenv, None, env_virtualenv);
        run(location, cwd, venv).map_err(Into::into)
    }
}

/// Run the config file at `location` (a path, `file:PATH`, or `python:MODULE`), with
/// `cwd` first on `sys.path` and the virtualenv (if any) activated. Starts the
/// interpreter in this process if it is not yet.
fn run(
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
    use std::path::Path;

    use pyo3::prelude::*;

    use super::Runner;
    use crate::config::tests::{TempFile, load_with};
    use crate::config::{Command, ConfigError, Settings, convert, settings};

    fn load(args: &[&str]) -> Result<Command, ConfigError> {
        load_with(&Runner, args, &[])
    }

    /// Settings from `args`, with `app:app` appended so that serving has an app.
    fn settings(args: &[&str]) -> Settings {
        let mut args = args.to_vec();
        args.push("app:app");
        match load(&args) {
            Ok(Command::Serve(settings)) => settings,
            other => panic!("{other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match load(args) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("expected an error for {args:?}, got {c:?}"),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
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
        let load = |file: &Path| settings(&["-c", &file.to_string_lossy()]);
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

    // ----- config's Python config file tests, run by this interpreter

    #[test]
    fn a_missing_python_config_file_is_named() {
        let e = err(&["app:app", "-c", "/nonexistent/gunicorn.conf.py"]);
        assert!(
            e.starts_with("/nonexistent/gunicorn.conf.py: cannot read the config file: "),
            "{e}"
        );
    }

    #[test]
    fn a_python_config_file_sets_settings_and_hooks() {
        let file = TempFile::new(
            "gunicorn.conf.py",
            "import multiprocessing\n\
             workers = 2 * 2\n\
             bind = ['127.0.0.1:9000', 'unix:/run/app.sock']\n\
             raw_env = ('A=1',)\n\
             umask = 0o22\n\
             pidfile = None\n\
             secure_scheme_headers = {'X-Proto': 'https'}\n\
             helper = 'not a setting'\n\
             def post_fork(server, worker):\n    pass\n\
             def pre_request(worker, req):\n    pass\n",
        );
        let s = settings(&["-c", file.path()]);
        assert_eq!(s.workers, 4);
        assert_eq!(s.bind, strings(&["127.0.0.1:9000", "unix:/run/app.sock"]));
        assert_eq!(s.raw_env, strings(&["A=1"]));
        assert_eq!(s.umask, 0o22);
        assert_eq!(s.pidfile, None);
        assert_eq!(s.secure_scheme_headers, strings(&["X-PROTO=https"]));
        let hooks: Vec<_> = s.extras.hooks.iter().map(|h| h.name).collect();
        assert_eq!(hooks, ["post_fork", "pre_request"]);
        assert!(
            s.extras
                .hook("post_fork")
                .unwrap()
                .describe
                .starts_with("post_fork ("),
            "{:?}",
            s.extras.hooks
        );
        // The command line still wins over the file.
        assert_eq!(settings(&["-c", file.path(), "-w", "7"]).workers, 7);
        // python:MODULE is imported from the working directory (--chdir's, here).
        let module = TempFile::new("unitcorn_test_conf_module.py", "workers = 5\n");
        let dir = module.path.parent().unwrap().to_string_lossy().into_owned();
        let s = settings(&["--chdir", &dir, "-c", "python:unitcorn_test_conf_module"]);
        assert_eq!(s.workers, 5);
    }

    #[test]
    fn python_config_errors_name_the_file_line_and_setting() {
        let file = TempFile::new("bad.conf.py", "workers = 3\nbind = 8000\n");
        assert_eq!(
            err(&["app:app", "-c", file.path()]),
            format!(
                "{}:2: setting \"bind\" must be a string or a list of strings, got 8000",
                file.path()
            )
        );
        let file = TempFile::new(
            "raises.conf.py",
            "workers = 3\nimport no_such_module_here\n",
        );
        let e = err(&["app:app", "-c", file.path()]);
        assert!(
            e.starts_with(&format!(
                "{}:2: the config file raised an exception:\nTraceback",
                file.path()
            )),
            "{e}"
        );
        assert!(
            e.contains("ModuleNotFoundError: No module named 'no_such_module_here'"),
            "{e}"
        );
        let file = TempFile::new("syntax.conf.py", "workers = 3\nbind = [\n");
        let e = err(&["app:app", "-c", file.path()]);
        assert!(e.starts_with(&format!("{}:2: ", file.path())), "{e}");
        assert!(e.contains("SyntaxError"), "{e}");
        let file = TempFile::new("hook.conf.py", "def post_fork(server):\n    pass\n");
        assert_eq!(
            err(&["app:app", "-c", file.path()]),
            format!(
                "{path}:1: setting \"post_fork\" (a server hook): must take 2 positional \
                 arguments (server, worker); post_fork ({path}:1) does not",
                path = file.path()
            )
        );
        let file = TempFile::new("ssl.conf.py", "keyfile = None\ncertfile = '/etc/c.pem'\n");
        assert!(err(&["app:app", "-c", file.path()]).starts_with(&format!(
            "{}:2: setting \"certfile\" is not supported: TLS",
            file.path()
        )));
    }

    #[test]
    fn the_seed_gunicorn_config_loads_unchanged() {
        let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gunicorn_config.py");
        let s = settings(&["-c", &seed.to_string_lossy()]);
        assert_eq!(s.bind, strings(&["127.0.0.1:8000"]));
        assert_eq!(
            (s.backlog, s.workers, s.worker_connections),
            (2048, 3, 1024)
        );
        assert_eq!(s.worker_class, crate::config::WorkerClass::Gevent);
        assert_eq!((s.timeout, s.keepalive), (30, 2));
        assert!(!s.spew && !s.daemon && s.reload);
        assert_eq!(s.pidfile.as_deref(), Some(Path::new("/run/gunicorn.pid")));
        assert_eq!(s.umask, 0);
        assert_eq!(
            (s.user.as_deref(), s.group.as_deref()),
            (Some("natadmin"), Some("natadmin"))
        );
        assert_eq!(s.tmp_upload_dir, None);
        assert_eq!(s.loglevel, "info");
        assert_eq!(s.access_log_format, settings::DEFAULT_ACCESS_LOG_FORMAT);
        assert_eq!(s.accesslog.as_deref(), Some("/var/log/gunicorn/access.log"));
        assert_eq!(s.errorlog, "/var/log/gunicorn/error.log");
        assert_eq!(s.proc_name, None);
        assert!(s.extras.hooks.is_empty() && s.extras.notes.is_empty());
        // And converted to TOML, it loads to the same settings.
        let toml = convert::convert(&seed.to_string_lossy(), &Runner).unwrap();
        let file = TempFile::new("seed.toml", &toml);
        let from_toml = settings(&["-c", file.path()]);
        assert_eq!(
            from_toml,
            Settings {
                config: Some(file.path.clone()),
                ..s
            },
            "{toml}"
        );
    }
}
