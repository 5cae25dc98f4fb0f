//! `wsgi.file_wrapper`: an iterable over a file object; the worker reads a real file's
//! bytes itself (`file_body.rs`) instead of iterating it.

use pyo3::prelude::*;

#[pyclass(module = "unitcorn")]
pub struct FileWrapper {
    pub filelike: Py<PyAny>,
    pub blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let chunk = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok((chunk.len()? > 0).then_some(chunk))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}
