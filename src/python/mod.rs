//! The embedded interpreter: starting it, preparing `sys.path` (virtualenv, `--chdir`,
//! `--pythonpath`) and importing the app.
//!
//! It does not serve requests (that is `worker/wsgi`) and keeps no per-request state.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::config::Settings;

pub mod config;
mod error;
mod fork;
pub mod gevent;
pub mod hooks;
pub mod interpreter;
mod spew;

pub use error::Error;
pub use fork::around_fork;

const LOADER_SOURCE: &str = include_str!("loader.py");

/// Where the app's code and packages come from.
#[derive(Debug, Clone)]
pub struct PythonSetup<'a> {
    pub chdir: &'a Path,
    pub pythonpath: Option<&'a str>,
    /// `virtualenv =` or else `$VIRTUAL_ENV`.
    pub virtualenv: Option<NamedVenv<'a>>,
}

pub use interpreter::{NamedVenv, VenvSource};

/// Start the interpreter in this process (unless it runs already: the Python package's
/// case) and prepare `sys.path`. Idempotent per process.
pub fn start(setup: &PythonSetup<'_>) -> Result<(), Error> {
    // One thread at a time from the check to the end of initialize (its SAFETY needs it):
    // the server starts it from one thread, but cargo's tests load config files at once.
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if !interpreter::is_initialized() {
        let program = match &setup.virtualenv {
            Some(venv) => venv.check(interpreter::BUILT_WITH)?,
            None => PathBuf::from(interpreter::BUILT_WITH),
        };
        interpreter::initialize(&program)?;
    }
    drop(starting);
    fork::mark_started();
    Python::attach(|py| {
        let loader = loader(py).map_err(|e| Error::traceback(py, SETUP, &e))?;
        let venv = venv_to_activate(py, setup.virtualenv.as_ref())?;
        loader
            .getattr("setup")
            .and_then(|f| {
                f.call1((
                    setup.chdir.to_string_lossy().as_ref(),
                    setup.pythonpath,
                    venv,
                ))
            })
            .map_err(|e| Error::traceback(py, SETUP, &e))?;
        Ok(())
    })
}

/// Import the app named by `spec` (`module:callable`, `module:factory(...)`, `module`).
/// The error is the app's traceback, or the loader's one line for an app it cannot find.
pub fn import_app(spec: &str) -> Result<Py<PyAny>, Error> {
    Python::attach(|py| {
        let loader = loader(py).map_err(|e| Error::traceback(py, SETUP, &e))?;
        loader
            .getattr("import_app")
            .and_then(|f| f.call1((spec,)))
            .map(Bound::unbind)
            .map_err(|e| Error::traceback(py, "", &e))
    })
}

/// What `start` was doing when Python raised.
const SETUP: &str = "cannot prepare the interpreter for the app (sys.path from chdir, \
                     pythonpath and the virtualenv)";

/// The virtualenv to activate over the running interpreter, checked: none when the
/// interpreter is that venv's already (its own, or started from its `bin/python`).
fn venv_to_activate(
    py: Python<'_>,
    named: Option<&NamedVenv<'_>>,
) -> Result<Option<String>, Error> {
    let Some(venv) = named else { return Ok(None) };
    let sys = py
        .import("sys")
        .map_err(|e| Error::traceback(py, SETUP, &e))?;
    let attr = |name: &str| -> Result<PathBuf, Error> {
        sys.getattr(name)
            .and_then(|v| v.extract::<PathBuf>())
            .map_err(|e| Error::traceback(py, SETUP, &e))
    };
    if same_dir(venv.path, &attr("prefix")?) {
        return Ok(None);
    }
    venv.check(&attr("executable")?.to_string_lossy())?;
    Ok(Some(venv.path.to_string_lossy().into_owned()))
}

/// Check, before anything is bound or forked, that the virtualenv the settings (or
/// `VIRTUAL_ENV`) name can be served by this interpreter: a clear error at start rather
/// than workers that fail one after another.
pub fn preflight(settings: &Settings) -> Result<(), Error> {
    let env_venv = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from);
    let set_by = settings.provenance("virtualenv");
    let setting = settings.virtualenv.as_deref();
    let Some(venv) = named_venv(setting, Some(&set_by), env_venv.as_deref()) else {
        return Ok(());
    };
    if interpreter::is_initialized() {
        Python::attach(|py| venv_to_activate(py, Some(&venv)).map(drop))
    } else {
        venv.check(interpreter::BUILT_WITH).map(drop)
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Why the interpreter hosting the Python package cannot serve, if it cannot.
pub fn unsupported_interpreter(py: Python<'_>) -> PyResult<Option<String>> {
    let (major, minor) = interpreter::version();
    if (major, minor) < (3, 9) {
        return Ok(Some(format!(
            "Python {major}.{minor} is not supported: unitcorn serves CPython 3.9 and later"
        )));
    }
    let gil_disabled = py
        .import("sysconfig")?
        .call_method1("get_config_var", ("Py_GIL_DISABLED",))?
        .extract::<Option<i64>>()
        .unwrap_or(None)
        .unwrap_or(0);
    if gil_disabled != 0 {
        return Ok(Some(format!(
            "free-threaded CPython ({major}.{minor}t) is not supported yet: run the app on a              regular (GIL) build of CPython {major}.{minor}"
        )));
    }
    Ok(None)
}

/// The interpreter runs already: this is the Python package, hosted by the venv's Python.
pub fn mark_hosted() {
    fork::mark_started();
}

/// The virtualenv the settings name (`virtualenv`, set where `set_by` says), or else the
/// environment (`VIRTUAL_ENV`).
pub fn named_venv<'a>(
    setting: Option<&'a Path>,
    set_by: Option<&'a crate::config::Provenance>,
    env: Option<&'a Path>,
) -> Option<NamedVenv<'a>> {
    setting
        .map(|path| NamedVenv {
            path,
            named_by: VenvSource::Setting(set_by),
        })
        .or(env.map(|path| NamedVenv {
            path,
            named_by: VenvSource::Environment,
        }))
}

/// Start the interpreter and import the app named by the settings; the error is what the
/// operator must read.
pub fn load_app(settings: &Settings) -> Result<Py<PyAny>, Error> {
    let env_venv = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from);
    let set_by = settings.provenance("virtualenv");
    start(&PythonSetup {
        chdir: &settings.chdir,
        pythonpath: settings.pythonpath.as_deref(),
        virtualenv: named_venv(
            settings.virtualenv.as_deref(),
            Some(&set_by),
            env_venv.as_deref(),
        ),
    })?;
    // gevent's worker patches the standard library before the app sees it: here, so that
    // it also holds for the master's import with preload_app (gunicorn patches in the
    // worker only, after a preloaded app imported the unpatched modules).
    if settings.worker_class == crate::config::WorkerClass::Gevent {
        gevent::monkey_patch()?;
    }
    if settings.spew {
        spew::install()?;
    }
    let spec = settings.wsgi_app.as_deref().ok_or_else(Error::no_app)?;
    import_app(spec)
}

/// Import the app again in this process (HUP with `preload_app`): the modules loaded from
/// the app's own directories (`chdir`, `pythonpath`) are forgotten first, so that their
/// new code is read; installed packages stay loaded.
pub fn reload_app(settings: &Settings) -> Result<Py<PyAny>, Error> {
    let mut roots = vec![settings.chdir.to_string_lossy().into_owned()];
    roots.extend(
        settings
            .pythonpath
            .iter()
            .flat_map(|p| p.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty()),
    );
    Python::attach(|py| {
        loader(py)
            .and_then(|l| l.getattr("forget_modules_under")?.call1((roots,)).map(drop))
            .map_err(|e| {
                Error::traceback(
                    py,
                    "cannot forget the app's modules before importing it again",
                    &e,
                )
            })
    })?;
    load_app(settings)
}

/// Write the Python traceback of every thread to `fd` when the process dies of a fatal
/// signal: SIGABRT (the master's, for a request past its deadline), SIGSEGV, SIGBUS…
/// faulthandler does it from the signal handler itself, so it works while the app holds
/// the GIL or is stuck in C; the process then dies of the signal.
pub fn dump_tracebacks_on_fatal_signals(fd: i32) -> Result<(), Error> {
    Python::attach(|py| {
        let faulthandler = py.import("faulthandler")?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("file", fd)?;
        kwargs.set_item("all_threads", true)?;
        faulthandler
            .getattr("enable")?
            .call((), Some(&kwargs))
            .map(drop)
    })
    .map_err(|e: PyErr| Error::one_line("faulthandler.enable() raised", &e))
}

/// Remove `names` from `os.environ` of an interpreter started already (preload_app);
/// nothing to do otherwise (a new interpreter reads the process environment).
pub fn forget_env(names: &[&str]) {
    if !fork::started() {
        return;
    }
    Python::attach(|py| {
        if let Ok(environ) = py.import("os").and_then(|os| os.getattr("environ")) {
            for name in names {
                let _ = environ.call_method1("pop", (*name, py.None()));
            }
        }
    });
}

/// Set `name=value` in `os.environ` of an interpreter started already (a Python config
/// file runs before `raw_env` is applied, and os.environ is read once, at start).
pub fn export_env(name: &str, value: &str) {
    if !fork::started() {
        return;
    }
    Python::attach(|py| {
        if let Ok(environ) = py.import("os").and_then(|os| os.getattr("environ")) {
            let _ = environ.set_item(name, value);
        }
    });
}

/// `os.environ[name] = value` in the interpreter's mapping only, without the putenv(3)
/// that `os.environ`'s own assignment makes: for a master at a reload, whose app may run
/// threads, where the process environment must not change (a C `getenv` in one of them
/// could read an array that `setenv` is replacing). The code the master runs (a preloaded
/// app's import, the hooks) reads `os.environ`; the workers set both after the fork.
pub fn export_env_to_mapping(name: &str, value: &str) {
    if !fork::started() {
        return;
    }
    Python::attach(|py| {
        let set = (|| -> PyResult<()> {
            // CPython's os._Environ since 3.2: `_data` is the mapping, keyed by bytes.
            let environ = py.import("os")?.getattr("environ")?;
            let key = environ.call_method1("encodekey", (name,))?;
            let value = environ.call_method1("encodevalue", (value,))?;
            environ.getattr("_data")?.set_item(key, value)
        })();
        if let Err(e) = set {
            tracing::warn!(
                "reload: cannot show {name} to the master's interpreter ({e}); the new \
                 workers have it"
            );
        }
    });
}

/// The app imported by the master before forking (`preload_app`), shared by the workers
/// copy-on-write.
static PRELOADED: std::sync::Mutex<Option<Py<PyAny>>> = std::sync::Mutex::new(None);

/// Keep `app` as the one every worker forked from now on serves; with `freeze`, move what
/// exists now into the collector's permanent generation (`gc.freeze()`), so that the
/// workers' collections leave the pages they share with the master alone.
pub fn set_preloaded(app: Py<PyAny>, freeze: bool) {
    let mut slot = PRELOADED.lock().unwrap_or_else(|e| e.into_inner());
    *slot = Some(app);
    Python::attach(|py| {
        if freeze && let Err(e) = py.import("gc").and_then(|gc| gc.call_method0("freeze")) {
            tracing::warn!("gc.freeze() failed: {e}");
        }
        // A thread started by the app at import runs here only: the workers are forked
        // from this thread alone, and the master must stay single-threaded at a fork.
        let threads = py
            .import("threading")
            .and_then(|t| t.call_method0("active_count"))
            .and_then(|n| n.extract::<usize>())
            .unwrap_or(1);
        if threads > 1 {
            tracing::warn!(
                "the app started {} thread(s) at import; with preload_app they run in the \
                 master only, not in the workers: start them in the workers instead",
                threads - 1
            );
        }
    });
}

/// The app the master preloaded, if it did.
pub fn preloaded_app() -> Option<Py<PyAny>> {
    let slot = PRELOADED.lock().unwrap_or_else(|e| e.into_inner());
    let app = slot.as_ref()?;
    Some(Python::attach(|py| app.clone_ref(py)))
}

/// The loader module, compiled once per process.
fn loader(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static LOADER: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    LOADER
        .get_or_try_init(py, || {
            let code = CString::new(LOADER_SOURCE).expect("loader.py contains no NUL byte");
            PyModule::from_code(py, &code, c"unitcorn/loader.py", c"_unitcorn_loader")
                .map(Bound::unbind)
        })
        .map(|m| m.bind(py).clone())
}

/// A Python exception as the error log shows it: the full traceback, or one line for the
/// loader's own "app not found" errors.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = loader(py).and_then(|l| {
        l.getattr("format_exception")?
            .call1((err.value(py), err.traceback(py)))?
            .extract::<String>()
    });
    match formatted {
        Ok(text) => text,
        Err(_) => format!("{err}\n"),
    }
}

/// The source files of the modules loaded now that belong to the app (not the standard
/// library's, not an installed package's), for `reload`; `None` when `sys.modules` has not
/// changed size since `known` modules were counted (the usual case: nothing to look at).
pub fn app_module_files(known: usize) -> Result<Option<(usize, Vec<String>)>, Error> {
    Python::attach(|py| {
        let count = py.import("sys")?.getattr("modules")?.len()?;
        if count == known {
            return Ok(None);
        }
        let files = loader(py)?
            .getattr("app_module_files")?
            .call0()?
            .extract::<Vec<String>>()?;
        Ok(Some((count, files)))
    })
    .map_err(|e: PyErr| Error::one_line("reading sys.modules raised", &e))
}
