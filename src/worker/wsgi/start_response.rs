//! The `start_response` callable and its `write()` (PEP 3333 to the letter).
//!
//! It records the status and headers; it sends nothing. The response starts (headers go
//! to the client) only with the first non-empty body chunk, which `response.rs` decides.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

/// What the app declared with `start_response`.
#[derive(Debug, Clone)]
pub struct Declared {
    pub status: StatusCode,
    /// The app's reason phrase when it differs from the standard one.
    pub reason: Option<Bytes>,
    pub headers: HeaderMap,
    /// The app's own Content-Length, which we enforce.
    pub content_length: Option<u64>,
    /// The app sent `Connection: close`.
    pub close: bool,
}

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
    let (code, reason) = status.split_once(' ').unwrap_or((status, ""));
    let code = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 100)
        .ok_or_else(|| PyValueError::new_err(format!("invalid status {status:?}")))?;
    let reason = match code.canonical_reason() {
        Some(canonical) if canonical == reason => None,
        _ if reason.is_empty() => None,
        _ => Some(Bytes::copy_from_slice(reason.as_bytes())),
    };

    let mut map = HeaderMap::new();
    let mut content_length = None;
    let mut close = false;
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value): (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>) = item
            .extract()
            .map_err(|_| PyTypeError::new_err("headers must be a list of (str, str) tuples"))?;
        let name_h = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PyValueError::new_err(format!("invalid header name {name:?}")))?;
        let value_h = header_value(&value).ok_or_else(|| {
            PyValueError::new_err(format!("invalid value for header {name:?}: {value:?}"))
        })?;
        match name_h.as_str() {
            "content-length" => {
                content_length = Some(value.trim().parse::<u64>().map_err(|_| {
                    PyValueError::new_err(format!("invalid Content-Length {value:?}"))
                })?);
            }
            "connection" => {
                close |= value.to_ascii_lowercase().contains("close");
                continue;
            }
            // Hop-by-hop headers belong to the server (PEP 3333 forbids them to apps);
            // framing is ours to decide, as gunicorn does.
            "transfer-encoding"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailers"
            | "upgrade" => continue,
            _ => {}
        }
        map.append(name_h, value_h);
    }
    Ok(Declared {
        status: code,
        reason,
        headers: map,
        content_length,
        close,
    })
}

/// A header value: latin-1 text without control characters (no response splitting).
fn header_value(value: &str) -> Option<HeaderValue> {
    if value.is_ascii() {
        return HeaderValue::from_str(value).ok();
    }
    let bytes: Option<Vec<u8>> = value
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect();
    HeaderValue::from_bytes(&bytes?).ok()
}
