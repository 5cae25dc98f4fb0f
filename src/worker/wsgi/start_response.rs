//! The `start_response` callable and its `write()` (PEP 3333 to the letter).
//!
//! It records the status and headers, checked by `response_head.rs` (the rule every
//! worker class shares); it sends nothing. The response starts (headers go
//! to the client) only with the first non-empty body chunk, which `response.rs` decides.

use bytes::Bytes;
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

pub use crate::worker::response_head::Declared;
use crate::worker::response_head::{self, HeadCheck};

#[pyclass(module = "unitcorn")]
pub struct StartResponse {
    pub declared: Option<Declared>,
    /// Set once the headers went to the client: from then on `exc_info` re-raises.
    pub headers_sent: bool,
    /// Data given to `write()`, sent before the iterable's.
    pub written: Vec<Bytes>,
}

impl StartResponse {
    pub fn new() -> Self {
        StartResponse {
            declared: None,
            headers_sent: false,
            written: Vec::new(),
        }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let this = slf.borrow();
            if let Some(exc_info) = exc_info {
                if this.headers_sent {
                    // PEP 3333: "if exc_info is provided, and the HTTP headers have already
                    // been sent, start_response must raise an error, and should re-raise
                    // using the exc_info tuple."
                    let exc = exc_info.cast::<PyTuple>()?.get_item(1)?;
                    return Err(PyErr::from_value(exc));
                }
            } else if this.declared.is_some() {
                return Err(PyAssertionError::new_err(
                    "start_response called a second time without exc_info",
                ));
            }
        }
        let declared = parse(status, headers)?;
        slf.borrow_mut().declared = Some(declared);
        slf.getattr(pyo3::intern!(py, "write"))
    }

    /// The legacy `write()` callable returned by `start_response`.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.declared.is_none() {
            return Err(PyAssertionError::new_err(
                "write() called before start_response",
            ));
        }
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be bytes, not {}",
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        if !bytes.as_bytes().is_empty() {
            self.written.push(Bytes::copy_from_slice(bytes.as_bytes()));
        }
        Ok(())
    }
}

fn parse(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Declared> {
    let status: &str = &status
        .extract::<std::borrow::Cow<'_, str>>()
        .map_err(|_| PyTypeError::new_err("status must be a str such as '200 OK'"))?;
    let (code, reason) = response_head::status_line(status).map_err(refused)?;
    let mut check = HeadCheck::default();
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value): (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>) = item
            .extract()
            .map_err(|_| PyTypeError::new_err("headers must be a list of (str, str) tuples"))?;
        // PEP 3333: header text is latin-1; a code point past U+00FF is no byte at all.
        let value = latin1(&value).ok_or_else(|| {
            PyValueError::new_err(format!("invalid value for header {name:?}: {value:?}"))
        })?;
        check.push(name.as_bytes(), &value).map_err(refused)?;
    }
    Ok(check.declared(code, reason))
}

fn refused(err: response_head::HeadError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// Latin-1 text as its bytes (ASCII, the common case, borrowed).
fn latin1(value: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
    if value.is_ascii() {
        return Some(std::borrow::Cow::Borrowed(value.as_bytes()));
    }
    value
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(std::borrow::Cow::Owned)
}
