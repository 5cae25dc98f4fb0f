//! The Python package's front door: `unitcorn._core.main(sys.argv)`, called by the console
//! script `unitcorn` and by `python -m unitcorn` inside the app's own virtualenv.
//!
//! The interpreter is the venv's, already initialised: `sys.executable`, `sys.prefix`,
//! `site` and `sysconfig` are what the app expects. The core runs as it does in the binary,
//! with the GIL released; it takes the GIL where it runs Python, as it does there.

use std::ffi::OsString;
use std::path::PathBuf;

use pyo3::prelude::*;

use crate::program::Program;

/// Run unitcorn with `argv` (`sys.argv`: `argv[0]` is the script); returns the exit status.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<OsString>) -> PyResult<u8> {
    let sys = py.import("sys")?;
    if let Some(reason) = crate::python::unsupported_interpreter(py)? {
        eprintln!("unitcorn: {reason}");
        return Ok(1);
    }
    let executable: PathBuf = sys.getattr("executable")?.extract()?;
    let orig_argv: Option<Vec<OsString>> = match sys.getattr("orig_argv") {
        Ok(v) => Some(v.extract()?),
        Err(_) => None,
    };
    let program = Program::hosted(executable, argv, orig_argv);
    crate::python::mark_hosted();
    // The master's loop, and every worker's, take the GIL only where they run Python.
    let status = py.detach(|| crate::run(program));
    Ok(status)
}

/// The bridge relies on the GIL (per-request Python objects, the hooks): a free-threaded
/// interpreter is refused in `main` until it does not (packaging/README.md).
#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
