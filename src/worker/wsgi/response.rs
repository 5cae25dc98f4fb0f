//! Calling the app and walking its iterable, as PEP 3333 orders it: the response starts
//! with the first non-empty chunk (or the end of an empty body), never before.

use bytes::Bytes;
use pyo3::exceptions::{PyAssertionError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyIterator, PyList, PyTuple};

use super::file_wrapper::FileWrapper;
use super::start_response::{Declared, StartResponse};
use crate::worker::file_body::FileBody;

/// The app's response up to the point where it may be sent.
pub struct Started {
    pub declared: Declared,
    /// Chunks already produced (by `write()` and the iterable).
    pub chunks: Vec<Bytes>,
    /// The rest of the iterable; `None` when it is exhausted and closed already.
    pub rest: Option<AppIter>,
    /// A real file given to `wsgi.file_wrapper`, sent after `chunks` (read by the
    /// worker, not iterated), and its iterable to close once the response is out.
    pub file: Option<FileTail>,
}

/// The file of a `wsgi.file_wrapper` response and the iterable that wraps it.
pub struct FileTail {
    pub file: FileBody,
    pub closer: AppIter,
}

/// An app failure before the response started: the traceback for the error log.
pub struct AppFailure {
    pub traceback: String,
}

impl AppFailure {
    fn from_py(py: Python<'_>, err: &PyErr) -> Self {
        AppFailure {
            traceback: crate::python::format_exception(py, err),
        }
    }
}

/// Call `app(environ, start_response)` and run it up to its first non-empty chunk.
pub fn start(
    py: Python<'_>,
    app: &Py<PyAny>,
    environ: Bound<'_, PyDict>,
) -> Result<Started, AppFailure> {
    let sr = Bound::new(py, StartResponse::new()).map_err(|e| AppFailure::from_py(py, &e))?;
    let result = app
        .bind(py)
        .call1((environ, sr.clone()))
        .map_err(|e| AppFailure::from_py(py, &e))?;

    if let Ok(wrapper) = result.cast::<FileWrapper>()
        && let Some(file) = real_file(wrapper)
    {
        let declared = take_declared(py, &sr)?;
        let chunks = std::mem::take(&mut sr.borrow_mut().written);
        let len = declared
            .content_length
            .map_or(file.len, |cl| file.len.min(cl));
        let closer = AppIter {
            iter: None,
            result: result.clone().unbind(),
            start_response: sr.clone().unbind(),
            closed: false,
        };
        return Ok(Started {
            declared,
            chunks,
            rest: None,
            file: Some(FileTail {
                file: FileBody::new(file.fd, file.offset, len),
                closer,
            }),
        });
    }

    // A list or tuple is complete already: take it whole, so the response can go out with
    // a Content-Length in one write (the common case for plain WSGI apps).
    if let Ok(list) = result.cast::<PyList>() {
        let chunks = collect_seq(py, list.iter(), &sr);
        return finish_whole(py, &sr, &result, chunks);
    }
    if let Ok(tuple) = result.cast::<PyTuple>() {
        let chunks = collect_seq(py, tuple.iter(), &sr);
        return finish_whole(py, &sr, &result, chunks);
    }

    let iter = match result.try_iter() {
        Ok(iter) => iter,
        Err(_) => {
            close_result(py, &result);
            let err = PyTypeError::new_err(format!(
                "the app must return an iterable of bytes, not {}",
                type_name(&result)
            ));
            return Err(AppFailure::from_py(py, &err));
        }
    };
    let mut rest = AppIter {
        iter: Some(iter.unbind()),
        result: result.unbind(),
        start_response: sr.clone().unbind(),
        closed: false,
    };
    let mut chunks = std::mem::take(&mut sr.borrow_mut().written);
    while chunks.is_empty() {
        match rest.next_chunk(py) {
            Ok(Some(chunk)) => chunks.push(chunk),
            Ok(None) => {
                rest.close(py);
                let declared = take_declared(py, &sr)?;
                return Ok(Started {
                    declared,
                    chunks,
                    rest: None,
                    file: None,
                });
            }
            Err(err) => {
                rest.close(py);
                return Err(AppFailure::from_py(py, &err));
            }
        }
    }
    let declared = take_declared(py, &sr)?;
    let have: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    if declared.content_length.is_some_and(|len| have >= len) {
        // Everything the app declared is here (Flask's one-chunk responses): nothing more
        // may be sent, so close the iterable now, in this same call into Python.
        rest.close(py);
        return Ok(Started {
            declared,
            chunks,
            rest: None,
            file: None,
        });
    }
    Ok(Started {
        declared,
        chunks,
        rest: Some(rest),
        file: None,
    })
}

/// A `wsgi.file_wrapper` over a regular file: its descriptor, position and length left.
struct RealFile {
    fd: std::os::fd::OwnedFd,
    offset: u64,
    len: u64,
}

fn real_file(wrapper: &Bound<'_, FileWrapper>) -> Option<RealFile> {
    let py = wrapper.py();
    let filelike = wrapper.borrow().filelike.clone_ref(py);
    let filelike = filelike.bind(py);
    let fd: i32 = filelike.call_method0("fileno").ok()?.extract().ok()?;
    // The app's own position (tell) is the logical one; the OS position may be ahead of
    // it when Python buffered a read.
    let offset: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
    let (fd, size) = crate::worker::file_body::dup_regular_file(fd)?;
    Some(RealFile {
        fd,
        offset,
        len: size.saturating_sub(offset),
    })
}

fn collect_seq<'py>(
    _py: Python<'py>,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    sr: &Bound<'py, StartResponse>,
) -> PyResult<Vec<Bytes>> {
    let mut chunks = std::mem::take(&mut sr.borrow_mut().written);
    for item in items {
        let bytes = as_bytes(&item)?;
        if !bytes.is_empty() {
            chunks.push(Bytes::copy_from_slice(bytes));
        }
    }
    Ok(chunks)
}

fn finish_whole(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    result: &Bound<'_, PyAny>,
    chunks: PyResult<Vec<Bytes>>,
) -> Result<Started, AppFailure> {
    close_result(py, result);
    let chunks = chunks.map_err(|e| AppFailure::from_py(py, &e))?;
    let declared = take_declared(py, sr)?;
    Ok(Started {
        declared,
        chunks,
        rest: None,
        file: None,
    })
}

fn take_declared(py: Python<'_>, sr: &Bound<'_, StartResponse>) -> Result<Declared, AppFailure> {
    let mut sr = sr.borrow_mut();
    sr.headers_sent = true;
    sr.declared.clone().ok_or_else(|| {
        AppFailure::from_py(
            py,
            &PyAssertionError::new_err("the app returned without calling start_response"),
        )
    })
}

fn as_bytes<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    match item.cast::<PyBytes>() {
        Ok(b) => Ok(b.as_bytes()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "the app's iterable must yield bytes, not {}",
            type_name(item)
        ))),
    }
}

/// The type of `value`, for a message that names the app's mistake.
pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Call the iterable's `close()`, logging (not raising) what it raises.
fn close_result(py: Python<'_>, result: &Bound<'_, PyAny>) {
    // Lists and tuples (most plain WSGI responses) have no close(); asking would raise
    // and discard an AttributeError on every request.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return;
    }
    let outcome = match result.getattr_opt(pyo3::intern!(py, "close")) {
        Ok(Some(close)) => close.call0().map(drop),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(err) = outcome {
        tracing::error!(
            "Error in the app iterable's close()\n{}",
            crate::python::format_exception(py, &err).trim_end()
        );
    }
}

/// The part of the app's iterable not yet consumed; `close()` is called exactly once,
/// at the end, on error, or when the response is dropped (client gone).
pub struct AppIter {
    /// `None` for a file the worker reads itself: only its `close()` is left to call.
    iter: Option<Py<PyIterator>>,
    result: Py<PyAny>,
    start_response: Py<StartResponse>,
    closed: bool,
}

impl AppIter {
    /// The next non-empty chunk (data from `write()` first), `None` at the end.
    pub fn next_chunk(&mut self, py: Python<'_>) -> PyResult<Option<Bytes>> {
        loop {
            {
                let mut sr = self.start_response.bind(py).borrow_mut();
                if !sr.written.is_empty() {
                    return Ok(Some(sr.written.remove(0)));
                }
            }
            let Some(iter) = &self.iter else {
                return Ok(None);
            };
            let Some(item) = iter.bind(py).clone().next() else {
                return Ok(None);
            };
            let item = item?;
            let bytes = as_bytes(&item)?;
            if !bytes.is_empty() {
                return Ok(Some(Bytes::copy_from_slice(bytes)));
            }
        }
    }

    /// `next_chunk` for a response already started: an exception can only be logged (the
    /// connection is then closed, since the status line is gone already).
    pub fn next_or_log(&mut self, py: Python<'_>) -> Result<Option<Bytes>, ()> {
        self.next_chunk(py).map_err(|e| {
            tracing::error!(
                "Error while streaming the response; closing the connection\n{}",
                crate::python::format_exception(py, &e).trim_end()
            )
        })
    }

    pub fn close(&mut self, py: Python<'_>) {
        if !std::mem::replace(&mut self.closed, true) {
            close_result(py, self.result.bind(py));
        }
    }
}

impl Drop for AppIter {
    fn drop(&mut self) {
        if !self.closed {
            Python::attach(|py| self.close(py));
        }
    }
}
