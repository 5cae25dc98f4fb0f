//! An awaitable that is done already: what `receive` and `send` return when they need not
//! wait. `await` on it costs no asyncio future and no trip through the loop's scheduler:
//! `__await__` returns the object itself and its first `__next__` ends the iteration with
//! the value.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

#[pyclass(module = "unitcorn")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    /// An awaitable whose result is `value` (`None`: Python's None).
    pub fn awaitable(py: Python<'_>, value: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, Ready { value })?.into_any())
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.value.take() {
            // Returning None ends the iteration with no value: the await yields None.
            None => Ok(None),
            Some(value) => Err(PyStopIteration::new_err((value.clone_ref(py),))),
        }
    }

    /// Coroutines drive sub-iterators with `send(None)` after the first step.
    fn send(&mut self, py: Python<'_>, _value: Py<PyAny>) -> PyResult<Option<Py<PyAny>>> {
        self.__next__(py)
    }
}
