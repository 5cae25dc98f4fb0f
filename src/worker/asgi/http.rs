//! One ASGI HTTP request: the I/O side (hand-off to the loop, request body pump, response)
//! and the app side (the `receive` and `send` callables), which meet in `exchange.rs`.
//!
//! What every worker class shares is used, not repeated: the body as `request_body.rs`
//! took it in (and its limits in the pump), the head checked by `response_head.rs`, the
//! deadline table's slot, `responses::finish`.
//!
//! The response head is held until the first `http.response.body` and goes out with it, so a
//! response of one body message is one hand-off and gets a Content-Length.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::{Response, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tokio::sync::{mpsc, oneshot};

use super::exchange::{self, Messages};
use super::scope::ScopeSource;
use super::{AppCtx, Asgi};
use crate::worker::body::{Chunk, ResponseBody};
use crate::worker::deadlines::AppSlot;
use crate::worker::request_body::{BodyReader, BodySource};
use crate::worker::response_head::{self, Declared, HeadCheck};
use crate::worker::responses;
use crate::worker::service::Conn;
use crate::worker::wsgi::environ::RequestHead;
use crate::worker::wsgi::response::type_name;

/// How the response starts, as the I/O side takes it.
enum Start {
    Head(Box<Head>),
    /// The app failed, or returned, before its response started: 500.
    Failed,
}

struct Head {
    declared: Declared,
    first: Bytes,
    /// The rest of the body, when the first message said more_body.
    more: Option<mpsc::UnboundedReceiver<Out>>,
}

/// The rest of a streamed response body.
enum Out {
    Chunk(Bytes),
    End,
    /// The app failed mid-response: the connection is cut (the client must not take a
    /// truncated body for a whole one).
    Abort,
}

/// The request side, shared by the I/O thread (body, disconnect) and the loop thread.
#[derive(Default)]
struct Inbox {
    chunks: VecDeque<Bytes>,
    body_done: bool,
    /// The last `http.request` (more_body False) went to the app.
    body_delivered: bool,
    disconnected: bool,
    /// The body broke a limit (`limit_request_body`, the body timeout) while the app read
    /// it: the answer, when the app gives none of its own.
    refused: Option<(StatusCode, &'static str)>,
    response_done: bool,
}

impl Messages for Inbox {
    type Message = Incoming_;

    fn next_message(&mut self) -> Option<Incoming_> {
        if let Some(chunk) = self.chunks.pop_front() {
            let more = !(self.chunks.is_empty() && self.body_done);
            self.body_delivered = !more;
            return Some(Incoming_::Request(chunk, more));
        }
        if self.body_done && !self.body_delivered {
            self.body_delivered = true;
            return Some(Incoming_::Request(Bytes::new(), false));
        }
        if self.disconnected || (self.body_delivered && self.response_done) {
            return Some(Incoming_::Disconnect);
        }
        None
    }

    fn sender_free(&self) -> bool {
        self.disconnected || self.response_done
    }

    fn to_py(py: Python<'_>, message: Incoming_) -> PyResult<Py<PyAny>> {
        message.to_py(py)
    }

    fn wants_input(&self) -> bool {
        !self.body_done
    }
}

type Exchange = exchange::Exchange<Inbox>;

enum Incoming_ {
    Request(Bytes, bool),
    Disconnect,
}

impl Incoming_ {
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let message = PyDict::new(py);
        match self {
            Incoming_::Request(body, more) => {
                message.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
                message.set_item(intern!(py, "body"), PyBytes::new(py, body))?;
                message.set_item(intern!(py, "more_body"), *more)?;
            }
            Incoming_::Disconnect => {
                message.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
            }
        }
        Ok(message.into_any().unbind())
    }
}

/// The app's side of one request: `receive` and `send` are its bound methods.
#[pyclass(module = "unitcorn")]
pub struct HttpCycle {
    ex: Arc<Exchange>,
    ctx: Arc<AppCtx>,
    /// Where the response head goes (through the bridge's batched replies).
    head_tx: Option<oneshot::Sender<Start>>,
    /// Where the rest of a streamed body goes.
    out: Option<mpsc::UnboundedSender<Out>>,
    /// `http.response.start`, held until the first body message.
    start: Option<Declared>,
    head_sent: bool,
    complete: bool,
}

#[pymethods]
impl HttpCycle {
    fn receive(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.ex.receive(py, &self.ctx.create_future)
    }

    fn send(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        // A borrowed str where the ABI allows it (abi3 before 3.10 copies).
        match &*exchange::message_type(message)?.to_cow()? {
            "http.response.start" => {
                if self.start.is_some() || self.head_sent {
                    return Err(PyRuntimeError::new_err("http.response.start sent twice"));
                }
                let status = message
                    .get_item(intern!(py, "status"))?
                    .ok_or_else(|| PyValueError::new_err("http.response.start without a status"))?
                    .extract::<u16>()?;
                let declared = declared(status, message.get_item(intern!(py, "headers"))?)?;
                self.start = Some(declared);
                Ok(self.ctx.done.clone_ref(py))
            }
            "http.response.body" => {
                if self.complete {
                    return Err(PyRuntimeError::new_err(
                        "http.response.body sent after the response was complete",
                    ));
                }
                let body = match message.get_item(intern!(py, "body"))? {
                    Some(body) => Bytes::from(body.extract::<Vec<u8>>().map_err(|_| {
                        PyTypeError::new_err(format!(
                            "http.response.body's body must be bytes, not {}",
                            type_name(&body)
                        ))
                    })?),
                    None => Bytes::new(),
                };
                let more = match message.get_item(intern!(py, "more_body"))? {
                    Some(more) => more.is_truthy()?,
                    None => false,
                };
                let len = body.len();
                let gone = if self.head_sent {
                    let out = self.out.as_ref();
                    let gone = out.is_none_or(|out| out.send(Out::Chunk(body)).is_err());
                    if !more && let Some(out) = self.out.take() {
                        let _ = out.send(Out::End);
                    }
                    gone
                } else {
                    let declared = self.start.take().ok_or_else(|| {
                        PyRuntimeError::new_err("http.response.body before http.response.start")
                    })?;
                    self.head_sent = true;
                    let rest = more.then(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        self.out = Some(tx);
                        rx
                    });
                    let head = Start::Head(Box::new(Head {
                        declared,
                        first: body,
                        more: rest,
                    }));
                    self.reply(head);
                    false
                };
                if !more {
                    self.complete = true;
                    self.ex.update(|inbox| inbox.response_done = true);
                    // (update() wakes a receive() waiting for the disconnect, on the loop.)
                    return Ok(self.ctx.done.clone_ref(py));
                }
                if gone || !self.ex.flow.sent(len) {
                    return Ok(self.ctx.done.clone_ref(py));
                }
                // The client is behind: wait until the connection took most of it.
                match self.ex.wait_for_drain(py, &self.ctx.create_future)? {
                    Some(fut) => Ok(fut),
                    None => Ok(self.ctx.done.clone_ref(py)),
                }
            }
            other => Err(PyValueError::new_err(format!(
                "unexpected ASGI message type {other:?} for an HTTP request"
            ))),
        }
    }

    /// The task ended: `exc` is what it raised, or None.
    fn finish(&mut self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) {
        super::task_ended(&self.ex.task, py, exc.as_ref(), "");
        if !self.head_sent {
            // A body refused mid-read is the client's fault, answered 408/413 (`serve`).
            if exc.is_none() && self.ex.inbox().refused.is_none() {
                tracing::error!("ASGI callable returned without sending a response body");
            }
            self.reply(Start::Failed);
        } else if !self.complete {
            if exc.is_none() {
                tracing::error!("ASGI callable returned without completing the response");
            }
            if let Some(out) = self.out.take() {
                let _ = out.send(Out::Abort);
            }
        }
        self.complete = true;
        self.ex.release_sender();
    }
}

impl HttpCycle {
    /// Hand the response head to the I/O side, batched with the other replies of this turn
    /// of the loop (one wake-up of the I/O thread for all of them).
    fn reply(&mut self, start: Start) {
        if let Some(tx) = self.head_tx.take() {
            self.ctx.reply(Box::new(move || {
                let _ = tx.send(start);
            }));
        }
    }
}

/// The response head of `http.response.start`: its headers an iterable of (name, value)
/// byte pairs, checked by the rule every worker class shares (`response_head.rs`).
fn declared(status: u16, headers: Option<Bound<'_, PyAny>>) -> PyResult<Declared> {
    let refused = |e: response_head::HeadError| PyValueError::new_err(e.to_string());
    let status = response_head::status(status).map_err(refused)?;
    let mut check = HeadCheck::default();
    if let Some(headers) = headers {
        for pair in headers.try_iter()? {
            let (name, value): (Vec<u8>, Vec<u8>) = pair?.extract()?;
            check.push(&name, &value).map_err(refused)?;
        }
    }
    Ok(check.declared(status, None))
}

/// On the loop thread: build the scope and start the app's task.
fn start(
    py: Python<'_>,
    ctx: &Arc<AppCtx>,
    src: ScopeSource,
    ex: Arc<Exchange>,
    head_tx: oneshot::Sender<Start>,
) {
    let mut head_tx = Some(head_tx);
    let cycle = || HttpCycle {
        ex: Arc::clone(&ex),
        ctx: Arc::clone(ctx),
        head_tx: head_tx.take(),
        out: None,
        start: None,
        head_sent: false,
        complete: false,
    };
    if !super::start_cycle(py, ctx, &src, &ex.task, cycle)
        && let Some(tx) = head_tx
    {
        let _ = tx.send(Start::Failed);
    }
}

/// Marks the client gone (for `http.disconnect`) when the request's I/O side ends: the
/// response was written, or hyper dropped the request because the connection closed.
struct Live(Arc<Exchange>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.update(|inbox| inbox.disconnected = true);
    }
}

/// Aborts the request body pump with the request.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the request body as the app asks for it (back-pressure to the client). A body
/// that breaks, stalls past the body timeout or grows past `limit_request_body` is a
/// disconnect for the app, and the client gets the 400, 408 or 413 a body read ahead
/// would have got (unless the app's response had started before).
async fn pump(mut reader: BodyReader, ex: Arc<Exchange>) {
    loop {
        ex.want_input.notified().await;
        match reader.next().await {
            Ok(Some(data)) => ex.update(|inbox| inbox.chunks.push_back(data)),
            Ok(None) => {
                ex.update(|inbox| inbox.body_done = true);
                return;
            }
            Err(err) => {
                let refused = Some(err.refusal());
                ex.update(|inbox| {
                    inbox.disconnected = true;
                    inbox.refused = refused;
                });
                return;
            }
        }
    }
}

/// The response body after the first chunk: what the app sends next.
struct Streaming {
    rx: mpsc::UnboundedReceiver<Out>,
    first: Option<Bytes>,
    ex: Arc<Exchange>,
    _live: Live,
    _timer: AppSlot,
    _pump: Option<AbortOnDrop>,
    /// The app failed: the error is reported on the next poll, once hyper had a chance to
    /// write what came before it.
    failing: bool,
}

impl Streaming {
    fn taken(&self, n: usize) {
        if self.ex.flow.taken(n) {
            self.ex.wake();
        }
    }
}

impl Stream for Streaming {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let this = &mut *self;
        if this.failing {
            return Poll::Ready(Some(Err(())));
        }
        if let Some(first) = this.first.take() {
            this.taken(first.len());
            if !first.is_empty() {
                return Poll::Ready(Some(Ok(first)));
            }
        }
        loop {
            return match this.rx.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Out::Chunk(chunk))) => {
                    this.taken(chunk.len());
                    if chunk.is_empty() {
                        continue;
                    }
                    Poll::Ready(Some(Ok(chunk)))
                }
                Poll::Ready(Some(Out::End)) => Poll::Ready(None),
                Poll::Ready(None) | Poll::Ready(Some(Out::Abort)) => {
                    // Pending with an immediate wake: hyper flushes what it holds first.
                    this.failing = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            };
        }
    }
}

/// The I/O side of one request: hand it to the loop, wait for the response head.
pub(super) async fn serve(
    asgi: &Asgi,
    conn: &Conn,
    head: &RequestHead,
    body: BodySource,
) -> Response<ResponseBody> {
    // The body as every worker class takes it in (request_body.rs): read ahead, or the
    // start of it and the reader of the rest, which the pump reads as the app asks.
    let mut inbox = Inbox::default();
    let streaming_body = match body {
        BodySource::Whole(bytes) => {
            if !bytes.is_empty() {
                inbox.chunks.push_back(bytes);
            }
            inbox.body_done = true;
            None
        }
        BodySource::Started(read, reader) => {
            if !read.is_empty() {
                inbox.chunks.push_back(read);
            }
            Some(reader)
        }
    };
    let ex = Exchange::new(inbox, &asgi.bridge);
    let timer = match asgi.deadline(conn, &ex.task).await {
        Ok(timer) => timer,
        Err(stopping) => return stopping,
    };
    let live = Live(Arc::clone(&ex));
    let pump = streaming_body
        .map(|reader| AbortOnDrop(tokio::task::spawn_local(pump(reader, Arc::clone(&ex)))));
    let (head_tx, mut head_rx) = oneshot::channel();
    let ctx = Arc::clone(&asgi.ctx);
    let job_ex = Arc::clone(&ex);
    let src = asgi.scope_source(conn, head, false);
    asgi.bridge
        .post_batched(Box::new(move |py| start(py, &ctx, src, job_ex, head_tx)));

    let outcome = tokio::select! {
        biased;
        () = timer.expired() => None,
        outcome = &mut head_rx => Some(outcome),
    };
    let Some(outcome) = outcome else {
        // Past the deadline, the loop perhaps stuck: the 504 now, from this thread; the
        // slot until the task ends.
        timer.keep_until(head_rx);
        return responses::error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout");
    };
    let refused = ex.inbox().refused.take();
    let started = match (outcome, refused) {
        // A body that broke, stalled or grew too large is the client's fault whatever the
        // app made of its disconnect: the client gets the refusal a body read ahead gets,
        // the same in every worker class, never an answer to a request cut short.
        (Ok(Start::Head(_)), Some((status, why))) if timer.answer() => {
            return responses::refuse(&conn.peer, status, why);
        }
        (Ok(Start::Head(started)), _) => started,
        (_, refused) => {
            if let Some((status, why)) = refused
                && timer.answer()
            {
                return responses::refuse(&conn.peer, status, why);
            }
            return match timer.answer() {
                true => responses::error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                ),
                false => responses::error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
            };
        }
    };
    if !timer.answer() {
        return responses::error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout");
    }
    let Head {
        declared,
        first,
        more,
    } = *started;
    let content_length = declared.content_length;
    let body = if let Some(rest) = more {
        ResponseBody::stream(
            Box::pin(Streaming {
                rx: rest,
                first: Some(first),
                ex,
                _live: live,
                _timer: timer,
                _pump: pump,
                failing: false,
            }),
            content_length,
        )
    } else {
        ResponseBody::full(vec![first], content_length)
    };
    responses::finish(head, declared, body)
}
