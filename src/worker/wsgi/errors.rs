//! `wsgi.errors`: a text stream whose writes go to the error log.

use pyo3::prelude::*;

#[pyclass(module = "unitcorn")]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    fn write(&self, text: &str) -> usize {
        // A full disk must not become an exception in the app.
        let _ = crate::logging::write_raw(text);
        text.len()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let _ = crate::logging::write_raw(&line?.extract::<String>()?);
        }
        Ok(())
    }

    fn flush(&self) {}
}
