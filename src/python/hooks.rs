//! gunicorn's server hooks, called where gunicorn calls them, with the `server`, `worker`,
//! `req` and `resp` objects of `hooks.py`.
//!
//! Hooks come from a Python config file only, so a process that has hooks has an
//! interpreter already; without hooks every function here returns at once, without
//! touching Python. The master calls the server-side hooks from its one thread (no
//! Python thread is started); a worker calls its own after the fork. A hook that raises
//! is logged with its traceback; the few that stop the start in gunicorn (on_starting,
//! when_ready, post_fork, post_worker_init) return the error to their caller.

use std::ffi::CString;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::BoundObject;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule, PyTuple};

use crate::config::extras::Hook;
use crate::config::table::Kind;
use crate::config::{SETTINGS, Settings, Value};

const SOURCE: &str = include_str!("hooks.py");

/// The hooks of this process: the settings they came with, and the objects they share.
struct State {
    settings: Arc<Settings>,
    server: Py<PyAny>,
    /// The worker object made for the next fork (pre_fork), until the fork is done.
    pending: Option<Py<PyAny>>,
    /// In a worker: its own object.
    worker: Option<Py<PyAny>>,
    /// The last worker count nworkers_changed was told.
    nworkers: Option<usize>,
}

/// Held only to copy in or out, never while Python runs: any Python code may release the
/// GIL, and then a thread that takes the GIL and waits for this lock, or a hook of another
/// thread (worker_abort's while worker_int's sleeps), would wait on Python it cannot let
/// finish. Python is called with what `shared` copied out.
static STATE: Mutex<Option<State>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a hook call needs, copied out of `STATE` (see there).
struct Shared {
    settings: Arc<Settings>,
    server: Py<PyAny>,
    worker: Option<Py<PyAny>>,
}

fn shared(py: Python<'_>) -> Option<Shared> {
    let guard = state();
    let state = guard.as_ref()?;
    Some(Shared {
        settings: Arc::clone(&state.settings),
        server: state.server.clone_ref(py),
        worker: state.worker.as_ref().map(|w| w.clone_ref(py)),
    })
}

/// The settings the hooks came with; `None` without hooks (then no Python is touched).
fn hook_settings() -> Option<Arc<Settings>> {
    state().as_ref().map(|s| Arc::clone(&s.settings))
}

/// This process has hooks and is a worker.
fn in_worker() -> bool {
    state().as_ref().is_some_and(|s| s.worker.is_some())
}

/// The master starts (or reloads, HUP) with `settings`: make or update the `server`
/// object. Nothing happens without hooks (and then no interpreter is needed).
pub fn configure(settings: &Arc<Settings>) {
    if settings.extras.hooks.is_empty() && hook_settings().is_none() {
        return;
    }
    let made = Python::attach(|py| -> PyResult<()> {
        let cfg = config_object(py, settings)?;
        match shared(py) {
            Some(current) => {
                current.server.call_method1(py, "reconfigure", (cfg,))?;
                if let Some(state) = state().as_mut() {
                    state.settings = Arc::clone(settings);
                }
            }
            None => {
                let module = module(py)?;
                let log = module.getattr("Log")?.call0()?;
                let server = module
                    .getattr("Server")?
                    .call1((std::process::id(), cfg, log))?;
                *state() = Some(State {
                    settings: Arc::clone(settings),
                    server: server.unbind(),
                    pending: None,
                    worker: None,
                    nworkers: None,
                });
            }
        }
        Ok(())
    });
    if let Err(e) = made {
        tracing::error!("cannot prepare the server hooks' objects: {e}");
    }
}

/// Call the server hook `name` (`on_starting`, `when_ready`, `on_reload`, `pre_exec`,
/// `on_exit`) with the server object; the error is its traceback.
pub fn server_hook(name: &'static str) -> Result<(), String> {
    let Some(settings) = hook_settings() else {
        return Ok(());
    };
    let Some(hook) = settings.extras.hook(name) else {
        return Ok(());
    };
    Python::attach(|py| match shared(py) {
        Some(shared) => call_hook(py, hook, (shared.server,)),
        None => Ok(()),
    })
}

/// Like `server_hook`, for hooks whose failure does not stop anything: logged.
pub fn server_hook_logged(name: &'static str) {
    if let Err(traceback) = server_hook(name) {
        log_failure(name, &traceback);
    }
}

/// The master's worker count is `count` now: `nworkers_changed(server, new, old)` when it
/// changed (the first time, old is None, as in gunicorn).
pub fn workers_target(count: usize) {
    let old = {
        let mut guard = state();
        let Some(state) = guard.as_mut() else {
            return;
        };
        if state.nworkers == Some(count) {
            return;
        }
        state.nworkers.replace(count)
    };
    Python::attach(|py| {
        let Some(shared) = shared(py) else { return };
        let _ = shared.server.setattr(py, "num_workers", count);
        if let Some(hook) = shared.settings.extras.hook("nworkers_changed")
            && let Err(traceback) = call_hook(py, hook, (shared.server, count, old))
        {
            log_failure("nworkers_changed", &traceback);
        }
    });
}

/// Before forking worker number `age`: make its object and call `pre_fork(server,
/// worker)`. A failure is logged and the fork goes on.
pub fn pre_fork(age: usize) {
    if hook_settings().is_none() {
        return;
    }
    Python::attach(|py| {
        let Some(shared) = shared(py) else { return };
        let made = (|| -> PyResult<Py<PyAny>> {
            let cfg = shared.server.getattr(py, "cfg")?;
            let log = shared.server.getattr(py, "log")?;
            let worker = module(py)?
                .getattr("Worker")?
                .call1((age, std::process::id(), cfg, log))?
                .unbind();
            if let Some(hook) = shared.settings.extras.hook("pre_fork")
                && let Err(traceback) = call_hook(
                    py,
                    hook,
                    (shared.server.clone_ref(py), worker.clone_ref(py)),
                )
            {
                log_failure("pre_fork", &traceback);
            }
            Ok(worker)
        })();
        match made {
            Ok(worker) => {
                // The one it replaces (a fork that failed) is let go of outside the lock.
                let previous = state().as_mut().and_then(|s| s.pending.replace(worker));
                drop(previous);
            }
            Err(e) => tracing::error!("cannot make the worker object for the hooks: {e}"),
        }
    });
}

/// In the master, after the fork: the worker object goes into `server.WORKERS`.
pub fn forked_parent(pid: i32) {
    let Some(worker) = state().as_mut().and_then(|s| s.pending.take()) else {
        return;
    };
    Python::attach(|py| {
        let Some(shared) = shared(py) else { return };
        let _ = worker.setattr(py, "pid", pid);
        let _ = shared
            .server
            .getattr(py, "WORKERS")
            .and_then(|workers| workers.call_method1(py, "__setitem__", (pid, worker)));
    });
}

/// In the worker, right after the fork: `post_fork(server, worker)`. Its failure is the
/// worker's boot failure, as in gunicorn.
pub fn forked_child() -> Result<(), String> {
    let Some(worker) = state().as_mut().and_then(|s| s.pending.take()) else {
        return Ok(());
    };
    Python::attach(|py| {
        let Some(shared) = shared(py) else {
            return Ok(());
        };
        let result = (|| {
            module(py)
                .and_then(|m| {
                    m.getattr("in_child")?
                        .call1((worker.clone_ref(py),))
                        .map(drop)
                })
                .map_err(|e| e.to_string())?;
            // The other workers are the master's business.
            let _ = shared
                .server
                .getattr(py, "WORKERS")
                .and_then(|w| w.call_method0(py, "clear"));
            match shared.settings.extras.hook("post_fork") {
                Some(hook) => call_hook(py, hook, (shared.server, worker.clone_ref(py))),
                None => Ok(()),
            }
        })();
        if let Some(state) = state().as_mut() {
            state.worker = Some(worker);
        }
        result
    })
}

/// In the worker, the app loaded: `worker.wsgi = app`, then `post_worker_init(worker)`
/// (its failure is a boot failure, as in gunicorn).
pub fn post_worker_init(app: &Py<PyAny>) -> Result<(), String> {
    if !in_worker() {
        return Ok(());
    }
    Python::attach(|py| {
        let Some((settings, worker)) = shared(py).and_then(|s| Some((s.settings, s.worker?)))
        else {
            return Ok(());
        };
        let _ = worker.setattr(py, "wsgi", app.clone_ref(py));
        let _ = worker.setattr(py, "booted", true);
        match settings.extras.hook("post_worker_init") {
            Some(hook) => call_hook(py, hook, (worker,)),
            None => Ok(()),
        }
    })
}

/// In the worker, told to stop (QUIT): `worker.alive = False`, then `worker_int(worker)`.
pub fn worker_int() {
    worker_signal_hook("worker_int");
}

/// In the worker, sent SIGABRT (a request past `timeout`): `worker_abort(worker)`.
pub fn worker_abort() {
    worker_signal_hook("worker_abort");
}

fn worker_signal_hook(name: &'static str) {
    if !in_worker() {
        return;
    }
    Python::attach(|py| {
        let Some((settings, worker)) = shared(py).and_then(|s| Some((s.settings, s.worker?)))
        else {
            return;
        };
        let _ = worker.setattr(py, "alive", false);
        if name == "worker_abort" {
            let _ = worker.setattr(py, "aborted", true);
        }
        if let Some(hook) = settings.extras.hook(name)
            && let Err(traceback) = call_hook(py, hook, (worker,))
        {
            log_failure(name, &traceback);
        }
    });
}

/// This process has a `worker_abort` hook to call on SIGABRT.
pub fn has_worker_abort() -> bool {
    state()
        .as_ref()
        .is_some_and(|s| s.worker.is_some() && s.settings.extras.hook("worker_abort").is_some())
}

/// In the worker, about to exit: `worker_exit(server, worker)`; a failure is a warning,
/// as in gunicorn.
pub fn worker_exit() {
    if !in_worker() || hook_settings().is_none_or(|s| s.extras.hook("worker_exit").is_none()) {
        return;
    }
    Python::attach(|py| {
        let Some(shared) = shared(py) else { return };
        let (Some(worker), Some(hook)) =
            (shared.worker, shared.settings.extras.hook("worker_exit"))
        else {
            return;
        };
        if let Err(traceback) = call_hook(py, hook, (shared.server, worker)) {
            tracing::warn!(
                "Exception during worker exit (worker_exit hook):\n{}",
                traceback.trim_end()
            );
        }
    });
}

/// In the master, a worker was reaped: `child_exit(server, worker)`, and it leaves
/// `server.WORKERS`.
pub fn child_exit(pid: i32) {
    if hook_settings().is_none() {
        return;
    }
    Python::attach(|py| {
        let Some(shared) = shared(py) else { return };
        let worker = shared
            .server
            .getattr(py, "WORKERS")
            .and_then(|w| w.call_method1(py, "pop", (pid, py.None())));
        let Ok(worker) = worker else { return };
        if worker.is_none(py) {
            return;
        }
        let _ = worker.setattr(py, "alive", false);
        if let Some(hook) = shared.settings.extras.hook("child_exit")
            && let Err(traceback) = call_hook(py, hook, (shared.server, worker))
        {
            log_failure("child_exit", &traceback);
        }
    });
}

/// The request hooks of a worker, when the config sets `pre_request` or `post_request`
/// (`None` otherwise: requests then never look at hooks).
pub fn request_hooks() -> Option<RequestHooks> {
    let settings = hook_settings()?;
    let pre = settings.extras.hook("pre_request");
    let post = settings.extras.hook("post_request");
    if !in_worker() || (pre.is_none() && post.is_none()) {
        return None;
    }
    // Looked up once here, not at every request.
    Python::attach(|py| {
        let worker = shared(py)?.worker?;
        let resolved = |hook: Option<&Hook>| match hook.map(|h| resolve(py, h)) {
            Some(Ok(callable)) => Some(callable),
            Some(Err(e)) => {
                tracing::error!("{e}");
                None
            }
            None => None,
        };
        Some(RequestHooks {
            worker,
            module: module(py).ok()?.unbind(),
            pre: resolved(pre),
            post: resolved(post),
        })
    })
}

/// `pre_request(worker, req)` and `post_request(worker, req, environ, resp)`.
pub struct RequestHooks {
    worker: Py<PyAny>,
    module: Py<PyModule>,
    pre: Option<Py<PyAny>>,
    post: Option<Py<PyAny>>,
}

/// What gunicorn's `req` carries, from the parsed request head.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub version: (u8, u8),
    pub headers: &'a http::HeaderMap,
    pub scheme: &'a str,
    pub peer: (&'a str, Option<&'a str>),
}

impl RequestHooks {
    /// Before the app: make `req` and call `pre_request`. `Err` is the traceback of a
    /// hook that raised (the request is then answered 500, as gunicorn does).
    pub fn before(&self, info: &RequestInfo<'_>) -> Result<Py<PyAny>, String> {
        Python::attach(|py| {
            let req = self.request(py, info).map_err(|e| e.to_string())?;
            if let Some(pre) = &self.pre {
                call(
                    py,
                    "pre_request",
                    pre,
                    (self.worker.clone_ref(py), req.clone_ref(py)),
                )?;
            }
            Ok(req)
        })
    }

    pub fn has_post(&self) -> bool {
        self.post.is_some()
    }

    /// After the response went out: `post_request(worker, req, environ, resp)`; a failure
    /// is logged, as gunicorn does.
    pub fn after(
        &self,
        req: &Py<PyAny>,
        environ: Option<Py<PyAny>>,
        status: http::StatusCode,
        headers: &http::HeaderMap,
        sent: u64,
    ) {
        let Some(post) = &self.post else { return };
        Python::attach(|py| {
            let made = (|| -> PyResult<Py<PyAny>> {
                let status = format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                );
                let resp = self.module.bind(py).getattr("Response")?.call1((
                    status.trim_end(),
                    header_list(py, headers, false)?,
                    sent,
                    PyTuple::new(py, [1, 1])?,
                ))?;
                Ok(resp.unbind())
            })();
            let resp = match made {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::error!("cannot make the response object for post_request: {e}");
                    return;
                }
            };
            let environ = environ.unwrap_or_else(|| PyDict::new(py).into_any().unbind());
            if let Err(traceback) = call(
                py,
                "post_request",
                post,
                (self.worker.clone_ref(py), req.clone_ref(py), environ, resp),
            ) {
                tracing::error!("Exception in post_request hook\n{}", traceback.trim_end());
            }
        });
    }

    fn request(&self, py: Python<'_>, info: &RequestInfo<'_>) -> PyResult<Py<PyAny>> {
        let peer = match info.peer.1.and_then(|p| p.parse::<u16>().ok()) {
            Some(port) => PyTuple::new(
                py,
                [
                    info.peer.0.into_pyobject(py)?.into_any(),
                    port.into_pyobject(py)?.into_any(),
                ],
            )?
            .into_any(),
            None => info.peer.0.into_pyobject(py)?.into_any(),
        };
        let req = self.module.bind(py).getattr("Request")?.call1((
            info.method,
            info.uri,
            info.path,
            info.query,
            PyTuple::new(py, [info.version.0, info.version.1])?,
            header_list(py, info.headers, true)?,
            info.scheme,
            peer,
        ))?;
        Ok(req.unbind())
    }
}

/// Headers as gunicorn's list of (name, value) tuples (request names upper-cased, as
/// gunicorn's parser gives them).
fn header_list<'py>(
    py: Python<'py>,
    headers: &http::HeaderMap,
    upper: bool,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for (name, value) in headers {
        let name = if upper {
            name.as_str().to_ascii_uppercase()
        } else {
            name.as_str().to_owned()
        };
        list.append((name, String::from_utf8_lossy(value.as_bytes()).into_owned()))?;
    }
    Ok(list)
}

/// Call the hook `hook` describes with `args`; `Err` is the traceback of what it raised.
fn call_hook<'py, A>(py: Python<'py>, hook: &Hook, args: A) -> Result<(), String>
where
    A: IntoPyObject<'py, Target = PyTuple>,
{
    call(py, hook.name, &resolve(py, hook)?, args)
}

/// The callable of the hook `hook` describes (kept by `python/config.rs` since the
/// config file ran).
fn resolve(py: Python<'_>, hook: &Hook) -> Result<Py<PyAny>, String> {
    super::config::callable(py, hook).ok_or_else(|| {
        format!(
            "the {} hook, {}, is not among the callables {} left",
            hook.name, hook.describe, hook.run.path
        )
    })
}

/// Call `hook(*args)`; `Err` is the traceback of what it raised.
fn call<'py, A>(py: Python<'py>, name: &str, hook: &Py<PyAny>, args: A) -> Result<(), String>
where
    A: IntoPyObject<'py, Target = PyTuple>,
{
    let outcome = module(py).and_then(|m| {
        let args: Bound<'py, PyTuple> = args.into_pyobject(py).map_err(Into::into)?.into_bound();
        m.getattr("call")?.call1((hook.clone_ref(py), args))
    });
    match outcome {
        Ok(result) if result.is_none() => Ok(()),
        Ok(traceback) => Err(traceback
            .extract::<String>()
            .unwrap_or_else(|_| format!("the {name} hook failed"))),
        Err(e) => Err(super::format_exception(py, &e)),
    }
}

/// A hook that raised and does not stop anything.
pub fn log_failure(name: &str, traceback: &str) {
    tracing::error!("Exception in {name} hook\n{}", traceback.trim_end());
}

/// `server.cfg`: every setting by its gunicorn name, and the hooks.
fn config_object<'py>(py: Python<'py>, settings: &Settings) -> PyResult<Bound<'py, PyAny>> {
    let values = PyDict::new(py);
    for setting in SETTINGS {
        let value = (setting.get)(settings);
        let object: Bound<'py, PyAny> = match (&value, setting.kind) {
            (Value::List(items), Kind::Pairs) => {
                let dict = PyDict::new(py);
                for item in items {
                    if let Some((k, v)) = item.split_once('=') {
                        dict.set_item(k, v)?;
                    }
                }
                dict.into_any()
            }
            (Value::Bool(b), _) => b.into_pyobject(py)?.to_owned().into_any(),
            (Value::Int(n), _) => n.into_pyobject(py)?.into_any(),
            (Value::Str(s), _) => s.into_pyobject(py)?.into_any(),
            (Value::List(items), _) => PyList::new(py, items)?.into_any(),
            (Value::Unset, _) => py.None().into_bound(py),
        };
        values.set_item(setting.name, object)?;
    }
    for name in crate::config::gunicorn::hooks() {
        match settings.extras.hook(name).map(|h| resolve(py, h)) {
            Some(Ok(callable)) => values.set_item(name, callable)?,
            Some(Err(e)) => return Err(pyo3::exceptions::PyLookupError::new_err(e)),
            None => values.set_item(name, py.None())?,
        }
    }
    module(py)?.getattr("Config")?.call1((values,))
}

/// `_emit(level, text)`: a hook's `log.info(...)` and friends, into the error log.
#[pyfunction]
fn emit(level: u32, text: &str) {
    match level {
        0..=10 => tracing::debug!("{text}"),
        11..=20 => tracing::info!("{text}"),
        21..=30 => tracing::warn!("{text}"),
        31..=40 => tracing::error!("{text}"),
        _ => tracing::error!(critical = true, "{text}"),
    }
}

/// The helper module, compiled once per process, `_emit` wired in.
fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static MODULE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            let code = CString::new(SOURCE).expect("hooks.py contains no NUL byte");
            let module = PyModule::from_code(py, &code, c"unitcorn/hooks.py", c"_unitcorn_hooks")?;
            module.setattr("_emit", wrap_pyfunction!(emit, &module)?)?;
            Ok(module.unbind())
        })
        .map(|m| m.bind(py).clone())
}
