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

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

pub use bridge::Bridge;
pub(super) use call::call;

use crate::boot::WorkerBoot;

/// Serve `app` with the hub on this (the main) thread and hyper on an I/O thread; returns
/// when the I/O side is done (stop), like [`super::serve`].
pub fn serve(boot: WorkerBoot, app: Py<PyAny>, extras: super::Extras) -> Result<(), String> {
    let entries = boot.settings.worker_connections.max(1) as usize;
    let bridge =
        Arc::new(Bridge::new(entries).map_err(|e| format!("cannot make the hub's eventfd: {e}"))?);
    let beat_every = super::heartbeat_interval(boot.settings.timeout);
    // The I/O thread's first Python (is this app ASGI?) imports asyncio and inspect; the
    // hub, starting at the same time, imports gevent's own (inspect too). Two threads
    // importing one module under gevent's patched locks can deadlock the import system
    // (seen: a KeyError in importlib's module lock, a worker that never answers), so the
    // I/O thread's imports are done here, before either runs.
    super::asgi::wanted(&boot.settings, &app)?;
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
    crate::python::gevent::hub_module(py)
        .and_then(|m| {
            m.getattr("serve")?
                .call1((handle, app, beat_every.as_secs_f64()))
                .map(drop)
        })
        .map_err(|e| crate::python::format_exception(py, &e))
}
