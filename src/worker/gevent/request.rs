//! One request inside its greenlet: the app-call core of `app_call.rs` (environ, app,
//! walk, close), handing the response to the Rust side, and waiting — on the hub, never
//! by blocking the thread — whenever the client is behind (response) or ahead (request
//! body).
//!
//! Waiting is the Python side's `wait(id)`: it parks the greenlet until the hub receives
//! `Notify(id)` through the bridge. Every wait here first arranges for that notify: a
//! task on the tokio runtime that completes when the body has data or the response queue
//! has room. A notify can come for nothing (a stale one): every waiter checks again.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pyo3::exceptions::{PyIOError, PyRuntimeError};
use pyo3::prelude::*;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::bridge::{Bridge, Job};
use crate::worker::app_call::{self, EnvironSlot, StartedMsg};
use crate::worker::body::Chunk;
use crate::worker::request_body::{BodyReader, IntakeError, Spooled};
use crate::worker::wsgi::environ::{EnvironBuilder, RequestHead};
use crate::worker::wsgi::input::Input;

/// A request as the Rust side hands it to the hub.
pub(in crate::worker) struct RequestJob {
    pub id: u64,
    pub head: RequestHead,
    pub body: Spooled,
    pub environ: Arc<EnvironBuilder>,
    /// Where post_request finds the environ (the hook is set).
    pub environ_out: Option<EnvironSlot>,
    pub started: oneshot::Sender<StartedMsg>,
    pub chunks: mpsc::Sender<Chunk>,
    pub runtime: tokio::runtime::Handle,
    pub bridge: Arc<Bridge>,
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
    /// The app-call core (`app_call.rs`), with a greenlet's way of waiting: for body data
    /// and for room in the response queue, on the hub.
    fn run(self, py: Python<'_>, app: &Py<PyAny>, wait: Py<PyAny>) -> PyResult<()> {
        let waiter = Waiter {
            id: self.id,
            wait,
            bridge: Arc::clone(&self.bridge),
            runtime: self.runtime.clone(),
        };
        let Spooled { held, rest } = self.body;
        let input = match rest {
            None => Input::complete(held),
            Some(reader) => {
                let pull = BodyPull {
                    reader: Some(reader),
                    waiter: waiter.clone_ref(py),
                };
                // A mutex only to make it Sync, as a pyclass's content must be; only this
                // greenlet ever reads it.
                let pull = Mutex::new(pull);
                Input::pulling(held, Box::new(move |py| pull_next(&mut lock(&pull), py)))
            }
        };
        let outcome = app_call::begin(
            py,
            app,
            &self.environ,
            &self.head,
            input,
            self.environ_out.as_ref(),
        );
        match app_call::report(outcome, self.started) {
            Some(rest) => app_call::walk(rest, |item| queue(py, &self.chunks, &waiter, item)),
            None => Ok(()),
        }
    }
}

/// Put one chunk in the response queue, waiting on the hub for room; false when the
/// client is gone.
fn queue(
    py: Python<'_>,
    chunks: &mpsc::Sender<Chunk>,
    waiter: &Waiter,
    mut item: Chunk,
) -> PyResult<bool> {
    loop {
        match chunks.try_send(item) {
            Ok(()) => return Ok(true),
            Err(TrySendError::Closed(_)) => return Ok(false),
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

/// The rest of a request body, read from the connection as the app asks (the reader's
/// limits are `request_body.rs`'s, the same as every worker class's).
struct BodyPull {
    /// `None` once the body ended (or failed).
    reader: Option<BodyReader>,
    waiter: Waiter,
}

fn lock(pull: &Mutex<BodyPull>) -> std::sync::MutexGuard<'_, BodyPull> {
    pull.lock().unwrap_or_else(|e| e.into_inner())
}

type Read = (BodyReader, Result<Option<Bytes>, IntakeError>);

/// The next non-empty chunk of the body, or `None` at its end.
fn pull_next(pull: &mut BodyPull, py: Python<'_>) -> PyResult<Option<Bytes>> {
    let Some(mut reader) = pull.reader.take() else {
        return Ok(None);
    };
    let got: Arc<Mutex<Option<Read>>> = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&got);
    pull.waiter.wait_for(py, async move {
        let next = reader.next().await;
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((reader, next));
    })?;
    let Some((reader, next)) = got.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return Err(PyRuntimeError::new_err("the request body reader vanished"));
    };
    match next {
        Ok(Some(data)) => {
            pull.reader = Some(reader);
            Ok(Some(data))
        }
        Ok(None) => Ok(None),
        Err(err) => Err(PyIOError::new_err(err.to_string())),
    }
}
