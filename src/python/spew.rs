//! `spew`: gunicorn's "nuclear option", a trace function that prints every line of
//! Python the process runs, as `module:line: source`, to stdout.
//!
//! Installed on the thread that imports the app (a worker's main thread, where a
//! one-thread worker also calls the app, or the master with preload_app, whose
//! workers inherit it at the fork) and, through `threading.settrace`, on the threads the
//! app starts; unitcorn's own app threads (`--threads` > 1) are not traced, as gunicorn's
//! gthread pool is not.

use pyo3::prelude::*;
use pyo3::types::PyModule;

const SOURCE: &std::ffi::CStr = c"
import linecache, sys, threading

def _spew(frame, event, arg):
    if event == 'line':
        name = frame.f_globals.get('__name__', '[unknown]')
        filename = frame.f_code.co_filename
        line = linecache.getline(filename, frame.f_lineno)
        print('%s:%s: %s' % (name, frame.f_lineno, line.rstrip()), flush=True)
    return _spew

def install():
    sys.settrace(_spew)
    threading.settrace(_spew)
";

/// Trace every line from now on in this thread (and threads started by `threading`).
pub fn install() -> Result<(), super::Error> {
    Python::attach(|py| {
        PyModule::from_code(py, SOURCE, c"unitcorn/spew.py", c"_unitcorn_spew")?
            .getattr("install")?
            .call0()
            .map(drop)
    })
    .map_err(|e: PyErr| super::Error::one_line("cannot install the spew trace", &e))
}
