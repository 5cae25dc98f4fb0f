//! The gevent worker (`worker_class = "gevent"`): the app runs in greenlets on gevent's
//! hub, with the standard library monkey-patched, up to `worker_connections` requests at
//! once; HTTP stays on the Rust side (hyper on tokio), unchanged.
//!
//! Threads: the process's main thread — where the app was imported after
//! `patch_all()` — runs the hub for the life of the worker (gevent's default loop, which
//! signals and child watchers need); the tokio runtime runs on a thread of its own. They
//! meet in the [`bridge::Bridge`]: requests, wake-ups and kills go to the hub through a
//! queue and an eventfd, and the greenlets send responses back through tokio channels
//! without ever blocking (`try_send`, then a wait on the hub for room).
//!
//! The Python side is `src/python/gevent_hub.py`.

mod bridge;
mod call;
mod request;

use std::ffi::CString;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyModule;

pub use bridge::Bridge;
pub(super) use call::call;

use crate::boot::WorkerBoot;

const HUB_SOURCE: &str = include_str!("../../python/gevent_hub.py");

/// `gevent.monkey.patch_all()`, before the app is imported (in the worker, or in the
/// master with `preload_app`: the app must never see the unpatched modules). Done once
/// per process. The error says how to get gevent.
pub fn monkey_patch() -> Result<(), String> {
    Python::attach(|py| {
        py.import("gevent").map_err(|e| {
            format!(
                "worker_class = \"gevent\" needs the gevent package in the app's virtualenv \
                 (pip install gevent): {e}"
            )
        })?;
        hub_module(py)
            .and_then(|m| m.getattr("patch")?.call0().map(drop))
            .map_err(|e| {
                format!(
                    "gevent's monkey-patching failed\n{}",
                    crate::python::format_exception(py, &e)
                )
            })
    })
}

/// Serve `app` with the hub on this (the main) thread and hyper on an I/O thread; returns
/// when the I/O side is done (stop), like [`super::serve`].
pub fn serve(boot: WorkerBoot, app: Py<PyAny>, extras: super::Extras) -> Result<(), String> {
    let entries = boot.settings.worker_connections.max(1) as usize;
    let bridge =
        Arc::new(Bridge::new(entries).map_err(|e| format!("cannot make the hub's eventfd: {e}"))?);
    let beat_every = super::heartbeat_interval(boot.settings.timeout);
    let io_app = Python::attach(|py| app.clone_ref(py));
    let io_bridge = Arc::clone(&bridge);
    let io = std::thread::Builder::new()
        .name("io".into())
        .spawn(move || {
            let served = super::serve(boot, io_app, Some(Arc::clone(&io_bridge)), extras);
            io_bridge.push(bridge::Job::Stop);
            served
        })
        .map_err(|e| format!("cannot start the I/O thread: {e}"))?;
    Python::attach(|py| run_hub(py, &bridge, app, beat_every))
        .map_err(|e| format!("the gevent hub failed\n{e}"))?;
    io.join()
        .map_err(|_| "the I/O thread panicked".to_owned())?
}

fn run_hub(
    py: Python<'_>,
    bridge: &Arc<Bridge>,
    app: Py<PyAny>,
    beat_every: Duration,
) -> Result<(), String> {
    let handle = Bound::new(
        py,
        bridge::HubBridge {
            bridge: Arc::clone(bridge),
        },
    )
    .map_err(|e| crate::python::format_exception(py, &e))?;
    hub_module(py)
        .and_then(|m| {
            m.getattr("serve")?
                .call1((handle, app, beat_every.as_secs_f64()))
                .map(drop)
        })
        .map_err(|e| crate::python::format_exception(py, &e))
}

/// The hub's Python module, compiled once per process.
fn hub_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static HUB: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    HUB.get_or_try_init(py, || {
        let code = CString::new(HUB_SOURCE).expect("gevent_hub.py contains no NUL byte");
        PyModule::from_code(py, &code, c"unitcorn/gevent_hub.py", c"_unitcorn_gevent")
            .map(Bound::unbind)
    })
    .map(|m| m.bind(py).clone())
}
