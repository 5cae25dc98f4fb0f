//! Where the two sides of one ASGI cycle (an HTTP request, a WebSocket) meet: the I/O
//! side puts what arrives into the cycle's inbox, the app's `receive()` takes it on the
//! loop thread, and a `send()` that got ahead of the client waits here for the backlog to
//! drain ([`Flow`]). One implementation for both kinds of cycle; what a message is, and
//! when a waiting sender may go on anyway, is the cycle's [`Messages`].
//!
//! It does not read the socket nor write responses (`http.rs`, `websocket.rs` do).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use tokio::sync::Notify;

use super::TaskSlot;
use super::bridge::Bridge;
use super::flow::Flow;

/// What a cycle's inbox holds besides its waiters, and the messages `receive()` makes of it.
pub(super) trait Messages: Default + Send + 'static {
    type Message;
    /// The next message for `receive()`, if there is one yet.
    fn next_message(&mut self) -> Option<Self::Message>;
    /// A sender waiting for the backlog may go on whatever it is (the peer is gone, the
    /// response complete).
    fn sender_free(&self) -> bool;
    fn to_py(py: Python<'_>, message: Self::Message) -> PyResult<Py<PyAny>>;
    /// A `receive()` about to wait needs the I/O side to fetch more (HTTP: the next
    /// frame of the request body).
    fn wants_input(&self) -> bool {
        false
    }
}

/// The inbox: the cycle's messages and the futures of an app that waits.
#[derive(Default)]
pub(super) struct Mailbox<M> {
    messages: M,
    receive_waiter: Option<Py<PyAny>>,
    drain_waiter: Option<Py<PyAny>>,
}

impl<M> Deref for Mailbox<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.messages
    }
}

impl<M> DerefMut for Mailbox<M> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.messages
    }
}

pub(super) struct Exchange<M: Messages> {
    inbox: Mutex<Mailbox<M>>,
    /// The app waits for input the I/O side fetches only on demand.
    pub want_input: Notify,
    pub flow: Flow,
    bridge: Arc<Bridge>,
    pub task: TaskSlot,
}

impl<M: Messages> Exchange<M> {
    pub fn new(messages: M, bridge: &Arc<Bridge>) -> Arc<Self> {
        Arc::new(Exchange {
            inbox: Mutex::new(Mailbox {
                messages,
                receive_waiter: None,
                drain_waiter: None,
            }),
            want_input: Notify::new(),
            flow: Flow::default(),
            bridge: Arc::clone(bridge),
            task: TaskSlot::default(),
        })
    }

    pub fn inbox(&self) -> MutexGuard<'_, Mailbox<M>> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From the I/O side: something changed; let the loop answer whoever waits.
    pub fn update(self: &Arc<Self>, change: impl FnOnce(&mut M)) {
        self.update_if(|m| {
            change(m);
            true
        });
    }

    /// `update` for a change that may turn out to be none (`change` returns false).
    pub fn update_if(self: &Arc<Self>, change: impl FnOnce(&mut M) -> bool) {
        let waiting = {
            let mut inbox = self.inbox();
            if !change(&mut inbox.messages) {
                return;
            }
            inbox.receive_waiter.is_some() || inbox.drain_waiter.is_some()
        };
        if waiting {
            self.wake();
        }
    }

    /// Have the loop complete what can be completed now.
    pub fn wake(self: &Arc<Self>) {
        let ex = Arc::clone(self);
        self.bridge.post(Box::new(move |py| ex.resolve(py)));
    }

    /// On the loop thread: complete the futures that can be completed now.
    fn resolve(&self, py: Python<'_>) {
        let (receive, drain) = {
            let mut inbox = self.inbox();
            let receive = match inbox.receive_waiter.is_some() {
                true => inbox
                    .messages
                    .next_message()
                    .map(|m| (inbox.receive_waiter.take(), m)),
                false => None,
            };
            let drain = if inbox.sender_free() || self.flow.drained() {
                inbox.drain_waiter.take()
            } else {
                None
            };
            (receive, drain)
        };
        if let Some((Some(fut), message)) = receive {
            match M::to_py(py, message) {
                Ok(message) => set_result(py, &fut, message),
                Err(e) => set_exception(py, &fut, e),
            }
        }
        if let Some(fut) = drain {
            set_result(py, &fut, py.None());
        }
    }

    /// The app's `receive()`: the next message at once, or a future for it.
    pub fn receive(&self, py: Python<'_>, create_future: &Py<PyAny>) -> PyResult<Py<PyAny>> {
        let mut inbox = self.inbox();
        if inbox.receive_waiter.is_some() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "receive() called again before the previous call returned",
            ));
        }
        if let Some(message) = inbox.messages.next_message() {
            drop(inbox);
            let message = M::to_py(py, message)?;
            return super::awaitable::Ready::awaitable(py, Some(message));
        }
        let fut = create_future.call0(py)?;
        inbox.receive_waiter = Some(fut.clone_ref(py));
        let fetch = inbox.wants_input();
        drop(inbox);
        if fetch {
            self.want_input.notify_one();
        }
        Ok(fut)
    }

    /// A `send()` that got ahead of the client: the future it returns, completed once the
    /// backlog drained; `None` when it drained meanwhile (no need to wait).
    pub fn wait_for_drain(
        &self,
        py: Python<'_>,
        create_future: &Py<PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let fut = create_future.call0(py)?;
        self.inbox().drain_waiter = Some(fut.clone_ref(py));
        if !self.flow.wait() {
            self.inbox().drain_waiter = None;
            return Ok(None);
        }
        Ok(Some(fut))
    }

    /// The app is done: a sender still waiting goes on.
    pub fn release_sender(self: &Arc<Self>) {
        let waiter = self.inbox().drain_waiter.take();
        if let Some(fut) = waiter {
            self.bridge
                .post(Box::new(move |py| set_result(py, &fut, py.None())));
        }
    }
}

/// The `type` of a message the app sent.
pub(super) fn message_type<'py>(message: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyString>> {
    let kind = message
        .get_item(intern!(message.py(), "type"))?
        .ok_or_else(|| PyValueError::new_err("ASGI message without a 'type'"))?;
    Ok(kind.cast_into::<PyString>()?)
}

/// Complete an asyncio future unless it was cancelled meanwhile.
pub(super) fn set_result(py: Python<'_>, fut: &Py<PyAny>, value: Py<PyAny>) {
    let fut = fut.bind(py);
    if fut
        .call_method0(intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true)
    {
        return;
    }
    if let Err(e) = fut.call_method1(intern!(py, "set_result"), (value,)) {
        tracing::warn!("cannot complete an ASGI receive/send: {e}");
    }
}

fn set_exception(py: Python<'_>, fut: &Py<PyAny>, err: PyErr) {
    let _ = fut
        .bind(py)
        .call_method1(intern!(py, "set_exception"), (err.into_value(py),));
}
