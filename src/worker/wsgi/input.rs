//! `wsgi.input`: the request body as a binary file object that streams.
//!
//! A body the worker already holds (small, complete) is served from memory; any other
//! body is pulled from the connection chunk by chunk as the app reads, so a large upload
//! never sits whole in memory and `Expect: 100-continue` is answered only when the app
//! first reads. Reading blocks the calling app thread, never the I/O thread: a streamed
//! input is only ever given to an app running on a pool thread — or in a greenlet, whose
//! reads wait on the gevent hub (`Source::Pull`). Every read is held to the limits of
//! `request_body.rs` (`limit_request_body`, the body timeout): a read past them raises.

use bytes::{Buf, Bytes, BytesMut};
use pyo3::exceptions::PyIOError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::worker::request_body::{BodyReader, BodySource};

/// Where the bytes not yet in the buffer come from.
pub enum Source {
    /// Nothing more: the buffer holds the rest of the body.
    Done,
    /// The connection's body, read on demand by blocking on the worker's runtime (its
    /// limits are the reader's: `request_body.rs`).
    Stream {
        reader: BodyReader,
        runtime: tokio::runtime::Handle,
    },
    /// Chunks handed over by a callback (`None`: the end), which may wait without blocking
    /// the thread: the gevent worker's greenlets wait on the hub.
    Pull(Puller),
}

/// The next non-empty chunk of a body, `None` at its end.
pub type Puller = Box<dyn FnMut(Python<'_>) -> PyResult<Option<Bytes>> + Send + Sync>;

#[pyclass(module = "unitcorn")]
pub struct Input {
    buf: BytesMut,
    source: Source,
}

impl Input {
    /// A body already complete in memory.
    pub fn buffered(body: Bytes) -> Self {
        Input {
            buf: BytesMut::from(body),
            source: Source::Done,
        }
    }

    /// A body read from the connection as the app asks for it, after the `read` bytes
    /// the worker took from it already.
    pub fn streaming(read: Bytes, reader: BodyReader, runtime: tokio::runtime::Handle) -> Self {
        Input {
            source: Source::Stream { reader, runtime },
            buf: BytesMut::from(read),
        }
    }

    /// The body as `source` holds it; the rest, if any, read on `runtime`.
    pub fn of(source: BodySource, runtime: &tokio::runtime::Handle) -> Self {
        match source {
            BodySource::Whole(bytes) => Input::buffered(bytes),
            BodySource::Started(read, reader) => Input::streaming(read, reader, runtime.clone()),
        }
    }

    /// A body whose first `read` bytes are here and the rest comes from `pull`.
    pub fn pulling(read: Bytes, pull: Puller) -> Self {
        Input {
            buf: BytesMut::from(read),
            source: Source::Pull(pull),
        }
    }

    /// Append the next chunk of the body to the buffer; false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if let Source::Pull(pull) = &mut self.source {
            let next = pull(py);
            if !matches!(next, Ok(Some(_))) {
                self.source = Source::Done;
            }
            return next.map(|chunk| {
                chunk.is_some_and(|data| {
                    self.buf.extend_from_slice(&data);
                    true
                })
            });
        }
        let Source::Stream { reader, runtime } = &mut self.source else {
            return Ok(false);
        };
        // The timer must be made inside the runtime's context (block_on's).
        let next = py.detach(|| runtime.block_on(reader.next()));
        match next {
            Ok(Some(data)) => {
                self.buf.extend_from_slice(&data);
                Ok(true)
            }
            Ok(None) => {
                self.source = Source::Done;
                Ok(false)
            }
            Err(err) => {
                self.source = Source::Done;
                Err(PyIOError::new_err(err.to_string()))
            }
        }
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(self.buf.len());
        let out = PyBytes::new(py, &self.buf[..n]);
        self.buf.advance(n);
        out
    }

    fn line_len(&mut self, py: Python<'_>, limit: Option<usize>) -> PyResult<usize> {
        let mut scanned = 0;
        loop {
            if let Some(i) = memchr(b'\n', &self.buf[scanned..]) {
                let len = scanned + i + 1;
                return Ok(limit.map_or(len, |l| len.min(l)));
            }
            scanned = self.buf.len();
            if limit.is_some_and(|l| scanned >= l) || !self.fill(py)? {
                return Ok(limit.map_or(self.buf.len(), |l| self.buf.len().min(l)));
            }
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    /// `read()`, `read(-1)`: the rest of the body; `read(n)`: at most n bytes.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        match limit(size) {
            None => {
                while self.fill(py)? {}
                let n = self.buf.len();
                Ok(self.take(py, n))
            }
            Some(n) => {
                while self.buf.len() < n && self.fill(py)? {}
                Ok(self.take(py, n))
            }
        }
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let n = self.line_len(py, limit(size))?;
        Ok(self.take(py, n))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let n = self.line_len(py, None)?;
            if n == 0 {
                return Ok(lines);
            }
            lines.append(self.take(py, n))?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                return Ok(lines);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let n = self.line_len(py, None)?;
        Ok((n > 0).then(|| self.take(py, n)))
    }

    fn readable(&self) -> bool {
        true
    }

    fn close(&mut self) {}
}
