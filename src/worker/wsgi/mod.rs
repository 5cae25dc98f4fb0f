//! PEP 3333: the environ, `start_response`, `wsgi.input`, `wsgi.errors`,
//! `wsgi.file_wrapper`, and the rules for walking the app's response.
//!
//! Nothing here does I/O or knows about connections; `worker/app_call.rs` drives it, and
//! the response head rule is `worker/response_head.rs`'s.

pub mod environ;
pub mod errors;
pub mod file_wrapper;
pub mod input;
pub mod response;
pub mod start_response;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// The keys every request's environ shares, built once per worker.
pub fn static_environ<'py>(
    py: Python<'py>,
    multithread: bool,
    multiprocess: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    env.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
    env.set_item("wsgi.url_scheme", "http")?;
    env.set_item("wsgi.errors", Bound::new(py, errors::ErrorStream)?)?;
    env.set_item("wsgi.multithread", multithread)?;
    env.set_item("wsgi.multiprocess", multiprocess)?;
    env.set_item("wsgi.run_once", false)?;
    env.set_item("wsgi.input_terminated", true)?;
    env.set_item(
        "wsgi.file_wrapper",
        py.get_type::<file_wrapper::FileWrapper>(),
    )?;
    env.set_item(
        "SERVER_SOFTWARE",
        concat!("unitcorn/", env!("CARGO_PKG_VERSION")),
    )?;
    Ok(env)
}
