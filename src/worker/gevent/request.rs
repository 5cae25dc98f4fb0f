//! One request inside its greenlet: build the environ, call the app, hand the response
//! to the Rust side, and wait — on the hub, never by blocking the thread — whenever the
//! client is behind (response) or ahead (request body).
//!
//! Waiting is the Python side's `wait(id)`: it parks the greenlet until the hub receives
//! `Notify(id)` through the bridge. Every wait here first arranges for that notify: a
//! task on the tokio runtime that completes when the body has data or the response queue
//! has room. A notify can come for nothing (a stale one): every waiter checks again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pyo3::exceptions::{PyIOError, PyRuntimeError};
use pyo3::prelude::*;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::bridge::{Bridge, Job};
use crate::worker::body::Chunk;
use crate::worker::service::{AppStart, BodySource, StartedMsg};
use crate::worker::wsgi::environ::{EnvironBuilder, RequestHead};
use crate::worker::wsgi::input::Input;
use crate::worker::wsgi::response::{self, AppFailure, AppIter};

/// A request as the Rust side hands it to the hub.
pub(in crate::worker) struct RequestJob {
    pub id: u64,
    pub head: RequestHead,
    pub body: BodySource,
    pub environ: Arc<EnvironBuilder>,
    pub started: oneshot::Sender<StartedMsg>,
    pub chunks: mpsc::Sender<Chunk>,
    pub runtime: tokio::runtime::Handle,
    pub bridge: Arc<Bridge>,
    /// How long one read of the body may wait for the client.
    pub body_timeout: Duration,
    /// `limit_request_body`; 0: none.
    pub body_limit: u64,
}

#[pyclass(module = "unitcorn")]
pub struct GreenRequest {
    id: u64,
    job: Option<RequestJob>,
}

impl GreenRequest {
    pub(in crate::worker) fn new(job: RequestJob) -> Self {
        GreenRequest {
            id: job.id,
            job: Some(job),
        }
    }
}

#[pymethods]
impl GreenRequest {
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Serve the request with `app`; `wait(id)` parks this greenlet until notified.
    /// Raises only what the wait raised (the greenlet was killed): app errors become
    /// responses or log entries here.
    fn run(&mut self, py: Python<'_>, app: Py<PyAny>, wait: Py<PyAny>) -> PyResult<()> {
        let job = self
            .job
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("request already run"))?;
        job.run(py, &app, wait)
    }
}

impl RequestJob {
    fn run(self, py: Python<'_>, app: &Py<PyAny>, wait: Py<PyAny>) -> PyResult<()> {
        let waiter = Waiter {
            id: self.id,
            wait,
            bridge: Arc::clone(&self.bridge),
            runtime: self.runtime.clone(),
        };
        let input = match self.body {
            BodySource::Whole(bytes) => Input::buffered(bytes),
            BodySource::Started(read, rest) => {
                let pull = BodyPull {
                    body: Some(rest),
                    received: read.len() as u64,
                    limit: self.body_limit,
                    timeout: self.body_timeout,
                    waiter: waiter.clone_ref(py),
                };
                // A mutex only to make it Sync, as a pyclass's content must be; only this
                // greenlet ever reads it.
                let pull = Mutex::new(pull);
                Input::pulling(read, Box::new(move |py| pull_next(&mut lock(&pull), py)))
            }
        };
        let outcome = Bound::new(py, input)
            .and_then(|input| self.environ.build(py, &self.head, input.into_any()))
            .map_err(|e| AppFailure {
                traceback: crate::python::format_exception(py, &e),
            })
            .and_then(|environ| response::start(py, app, environ));
        let mut rest = match outcome {
            Ok(started) => {
                let (start, rest) = AppStart::of(started);
                // The client left before the head: nothing more to do (dropping `rest`
                // closes the iterable).
                if self.started.send(Ok(start)).is_err() {
                    return Ok(());
                }
                match rest {
                    Some(rest) => rest,
                    None => return Ok(()),
                }
            }
            Err(failure) => {
                let _ = self.started.send(Err(failure));
                return Ok(());
            }
        };
        let streamed = stream(py, &mut rest, &self.chunks, &waiter);
        rest.close(py);
        streamed
    }
}

/// Walk the rest of the iterable into the response queue, waiting for room.
fn stream(
    py: Python<'_>,
    rest: &mut AppIter,
    chunks: &mpsc::Sender<Chunk>,
    waiter: &Waiter,
) -> PyResult<()> {
    loop {
        let (item, last) = match rest.next_or_log(py) {
            Ok(Some(chunk)) => (Ok(chunk), false),
            Ok(None) => return Ok(()),
            // The response must end in an error, not look complete: send it like a chunk.
            Err(()) => (Err(()), true),
        };
        let mut item = item;
        loop {
            match chunks.try_send(item) {
                Ok(()) => break,
                // The client is gone.
                Err(TrySendError::Closed(_)) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    item = back;
                    let room = chunks.clone();
                    waiter.wait_for(py, async move {
                        // Room, or the client gone: either way the greenlet looks again.
                        drop(room.reserve().await);
                    })?;
                }
            }
        }
        if last {
            return Ok(());
        }
    }
}

/// How a greenlet parks until a task on the runtime is done.
struct Waiter {
    id: u64,
    /// The hub's `wait(id)`.
    wait: Py<PyAny>,
    bridge: Arc<Bridge>,
    runtime: tokio::runtime::Handle,
}

impl Waiter {
    fn clone_ref(&self, py: Python<'_>) -> Self {
        Waiter {
            id: self.id,
            wait: self.wait.clone_ref(py),
            bridge: Arc::clone(&self.bridge),
            runtime: self.runtime.clone(),
        }
    }

    /// Run `task` on the runtime and park the greenlet until it has finished (the task's
    /// end notifies the hub). Raises what the wait raised (the greenlet was killed).
    fn wait_for<F>(&self, py: Python<'_>, task: F) -> PyResult<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (id, bridge, flag) = (self.id, Arc::clone(&self.bridge), Arc::clone(&done));
        self.runtime.spawn(async move {
            task.await;
            flag.store(true, std::sync::atomic::Ordering::Release);
            bridge.push(Job::Notify(id));
        });
        // A stale notify of an earlier wait may arrive first: wait until this task's.
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            self.wait.call1(py, (self.id,))?;
        }
        Ok(())
    }
}

/// The rest of a request body, read from the connection as the app asks.
struct BodyPull {
    /// `None` once the body ended (or failed).
    body: Option<Incoming>,
    received: u64,
    limit: u64,
    timeout: Duration,
    waiter: Waiter,
}

fn lock(pull: &Mutex<BodyPull>) -> std::sync::MutexGuard<'_, BodyPull> {
    pull.lock().unwrap_or_else(|e| e.into_inner())
}

type Frame = Result<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>, ()>;

/// The next non-empty chunk of the body, or `None` at its end.
fn pull_next(pull: &mut BodyPull, py: Python<'_>) -> PyResult<Option<Bytes>> {
    loop {
        let Some(mut body) = pull.body.take() else {
            return Ok(None);
        };
        let got: Arc<Mutex<Option<(Incoming, Frame)>>> = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&got);
        let timeout = pull.timeout;
        pull.waiter.wait_for(py, async move {
            let frame = tokio::time::timeout(timeout, body.frame())
                .await
                .map_err(drop);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((body, frame));
        })?;
        let Some((body, frame)) = got.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Err(PyRuntimeError::new_err("the request body reader vanished"));
        };
        match frame {
            Err(()) => {
                return Err(PyIOError::new_err(format!(
                    "the client sent no request body data for {}s",
                    timeout.as_secs()
                )));
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(err))) => {
                return Err(PyIOError::new_err(format!(
                    "could not read the request body: {err}"
                )));
            }
            Ok(Some(Ok(frame))) => {
                pull.body = Some(body);
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                pull.received += data.len() as u64;
                if pull.limit > 0 && pull.received > pull.limit {
                    pull.body = None;
                    return Err(PyIOError::new_err(format!(
                        "the request body is larger than limit_request_body ({} bytes)",
                        pull.limit
                    )));
                }
                return Ok(Some(data));
            }
        }
    }
}
