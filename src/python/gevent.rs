//! gevent at the interpreter level: patching the standard library before the app is
//! imported, and the hub's Python module (`gevent_hub.py`) that the gevent worker runs.
//!
//! Here, not in `worker/gevent`, because the patch is part of loading the app (in the
//! master too, with `preload_app`), and this layer imports no worker code.

use std::ffi::CString;

use pyo3::prelude::*;
use pyo3::types::PyModule;

const HUB_SOURCE: &str = include_str!("gevent_hub.py");

/// `gevent.monkey.patch_all()`, before the app is imported (in the worker, or in the
/// master with `preload_app`: the app must never see the unpatched modules). Done once
/// per process. The error says how to get gevent.
pub fn monkey_patch() -> Result<(), super::Error> {
    Python::attach(|py| {
        py.import("gevent")
            .map_err(|e| super::Error::no_gevent(&e))?;
        hub_module(py)
            .and_then(|m| m.getattr("patch")?.call0().map(drop))
            .map_err(|e| super::Error::traceback(py, "gevent's monkey-patching failed", &e))
    })
}

/// The hub's Python module, compiled once per process.
pub fn hub_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static HUB: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    HUB.get_or_try_init(py, || {
        let code = CString::new(HUB_SOURCE).expect("gevent_hub.py contains no NUL byte");
        PyModule::from_code(py, &code, c"unitcorn/gevent_hub.py", c"_unitcorn_gevent")
            .map(Bound::unbind)
    })
    .map(|m| m.bind(py).clone())
}
