//! `wsgi.input`: the request body as a binary file object.
//!
//! What the worker read before the call (`request_body.rs`: the whole body, in memory or
//! spooled to a temporary file, as a rule) is read first; the rest, when the body did not
//! all arrive before the call, is pulled from the connection chunk by chunk as the app
//! reads, so that `Expect: 100-continue` is answered only when the app first reads.
//! Reading the connection blocks the calling app thread, never the I/O thread: such an
//! input is only ever given to an app running on a pool thread — or in a greenlet, whose
//! reads wait on the gevent hub (`Source::Pull`). Every read is held to the limits of
//! `request_body.rs` (`limit_request_body`, the client's pace): a read past them raises.

use std::fs::File;
use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};
use pyo3::exceptions::PyIOError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::worker::request_body::{BodyReader, Held, Spooled};

/// How much of a spooled body one read of its file takes.
const FILE_READ: usize = 64 * 1024;

/// Where the bytes not yet in the buffer come from, after the spooled file (if any).
pub enum Source {
    /// Nothing more.
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
    /// The spooled part of the body not read yet, read before `source`.
    spooled: Option<File>,
    source: Source,
}

impl Input {
    /// A body complete in memory.
    pub fn buffered(body: Bytes) -> Self {
        Input::complete(Held::Memory(body))
    }

    /// A body the worker holds whole.
    pub fn complete(held: Held) -> Self {
        Input::new(held, Source::Done)
    }

    /// The body as the worker took it in; the rest, if any, read on `runtime`.
    pub fn of(body: Spooled, runtime: &tokio::runtime::Handle) -> Self {
        let source = match body.rest {
            None => Source::Done,
            Some(reader) => Source::Stream {
                reader,
                runtime: runtime.clone(),
            },
        };
        Input::new(body.held, source)
    }

    /// A body whose first part is `held` and the rest comes from `pull`.
    pub fn pulling(held: Held, pull: Puller) -> Self {
        Input::new(held, Source::Pull(pull))
    }

    fn new(held: Held, source: Source) -> Self {
        match held {
            Held::Memory(bytes) => Input {
                buf: BytesMut::from(bytes),
                spooled: None,
                source,
            },
            Held::File(file) => Input {
                buf: BytesMut::new(),
                spooled: Some(file),
                source,
            },
        }
    }

    /// Append the next chunk of the body to the buffer; false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if let Some(file) = &mut self.spooled {
            let buf = &mut self.buf;
            match py.detach(|| read_into(file, buf)) {
                Ok(0) => self.spooled = None,
                Ok(_) => return Ok(true),
                Err(err) => {
                    self.spooled = None;
                    self.source = Source::Done;
                    return Err(PyIOError::new_err(format!(
                        "cannot read the spooled request body: {err}"
                    )));
                }
            }
        }
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

/// Read the next part of `file` onto the end of `buf`: the bytes read, 0 at its end.
fn read_into(file: &mut File, buf: &mut BytesMut) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + FILE_READ, 0);
    let read = loop {
        match file.read(&mut buf[start..]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => break read,
        }
    };
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
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
