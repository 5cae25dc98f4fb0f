//! WebSockets for ASGI apps: the HTTP/1.1 upgrade (hyper), the socket itself
//! (tokio-tungstenite: framing, masking, fragmentation, ping/pong and the closing handshake
//! are answered in Rust), and the `websocket.*` events of the app, which meet the socket
//! in `exchange.rs`. WSGI has no WebSocket: only an ASGI worker gets here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};

use super::exchange::{self, Messages};
use super::scope::ScopeSource;
use super::{AppCtx, Asgi};
use crate::worker::accept::Counted;
use crate::worker::body::ResponseBody;
use crate::worker::responses;
use crate::worker::service::Conn;
use crate::worker::wsgi::environ::RequestHead;

/// How long a closing socket waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A WebSocket opening handshake (RFC 6455 4.1) that the app may accept.
pub fn is_upgrade(head: &RequestHead) -> bool {
    let has_token = |name, token: &str| {
        head.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    head.method == Method::GET
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
        && head.headers.contains_key(SEC_WEBSOCKET_KEY)
}

/// From the app to the I/O side.
enum Out {
    Accept {
        subprotocol: Option<String>,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Send(Message, usize),
    Close(u16, String),
    /// The app returned (or raised, `failed`) without closing.
    Ended {
        failed: bool,
    },
}

/// From the I/O side to the app.
enum In {
    Connect,
    Text(String),
    Binary(Bytes),
    Disconnect(u16, String),
}

#[derive(Default)]
struct Inbox {
    events: VecDeque<In>,
    connect_delivered: bool,
    /// The socket is gone: every later `receive()` is websocket.disconnect.
    closed: Option<(u16, String)>,
}

impl Messages for Inbox {
    type Message = In;

    fn next_message(&mut self) -> Option<In> {
        if !self.connect_delivered {
            self.connect_delivered = true;
            return Some(In::Connect);
        }
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        self.closed
            .as_ref()
            .map(|(code, reason)| In::Disconnect(*code, reason.clone()))
    }

    /// A drain waiter is woken once the backlog is down, or the socket gone.
    fn sender_free(&self) -> bool {
        self.closed.is_some()
    }

    fn to_py(py: Python<'_>, message: In) -> PyResult<Py<PyAny>> {
        let dict = PyDict::new(py);
        match message {
            In::Connect => {
                dict.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
            }
            In::Text(text) => {
                dict.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
                dict.set_item(intern!(py, "text"), text)?;
            }
            In::Binary(bytes) => {
                dict.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
                dict.set_item(intern!(py, "bytes"), PyBytes::new(py, &bytes))?;
            }
            In::Disconnect(code, reason) => {
                dict.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
                dict.set_item(intern!(py, "code"), code)?;
                dict.set_item(intern!(py, "reason"), reason)?;
            }
        }
        Ok(dict.into_any().unbind())
    }
}

type Exchange = exchange::Exchange<Inbox>;

/// From the I/O side: an event for the app (only the first disconnect counts).
fn push(ex: &Arc<Exchange>, event: In) {
    ex.update_if(|inbox| {
        if let In::Disconnect(code, reason) = &event {
            if inbox.closed.is_some() {
                return false;
            }
            inbox.closed = Some((*code, reason.clone()));
        } else {
            inbox.events.push_back(event);
        }
        true
    });
}

/// The app's side of one WebSocket.
#[pyclass(module = "unitcorn")]
pub struct WsCycle {
    ex: Arc<Exchange>,
    ctx: Arc<AppCtx>,
    out: mpsc::UnboundedSender<Out>,
    accepted: bool,
    closed: bool,
}

#[pymethods]
impl WsCycle {
    fn receive(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.ex.receive(py, &self.ctx.create_future)
    }

    fn send(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let done = self.ctx.done.clone_ref(py);
        if self.closed {
            // The socket is gone (the app learns it from receive()); uvicorn drops these too.
            return Ok(done);
        }
        match &*exchange::message_type(message)?.to_cow()? {
            "websocket.accept" => {
                if self.accepted {
                    return Err(PyRuntimeError::new_err("websocket.accept sent twice"));
                }
                self.accepted = true;
                let subprotocol = match message.get_item(intern!(py, "subprotocol"))? {
                    Some(p) if !p.is_none() => Some(p.extract::<String>()?),
                    _ => None,
                };
                let headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) if !h.is_none() => h
                        .try_iter()?
                        .map(|pair| pair?.extract::<(Vec<u8>, Vec<u8>)>())
                        .collect::<PyResult<Vec<_>>>()?,
                    _ => Vec::new(),
                };
                let _ = self.out.send(Out::Accept {
                    subprotocol,
                    headers,
                });
                Ok(done)
            }
            "websocket.send" => {
                if !self.accepted {
                    return Err(PyRuntimeError::new_err(
                        "websocket.send before websocket.accept",
                    ));
                }
                let (message, len) = match message.get_item(intern!(py, "bytes"))? {
                    Some(b) if !b.is_none() => {
                        let b = Bytes::from(b.extract::<Vec<u8>>()?);
                        let len = b.len();
                        (Message::Binary(b), len)
                    }
                    _ => match message.get_item(intern!(py, "text"))? {
                        Some(t) if !t.is_none() => {
                            let t = t.extract::<String>()?;
                            let len = t.len();
                            (Message::Text(t.into()), len)
                        }
                        _ => {
                            return Err(PyValueError::new_err(
                                "websocket.send needs 'bytes' or 'text'",
                            ));
                        }
                    },
                };
                let gone = self.out.send(Out::Send(message, len)).is_err();
                if gone || !self.ex.flow.sent(len) {
                    return Ok(done);
                }
                Ok(self
                    .ex
                    .wait_for_drain(py, &self.ctx.create_future)?
                    .unwrap_or(done))
            }
            "websocket.close" => {
                let code = match message.get_item(intern!(py, "code"))? {
                    Some(c) if !c.is_none() => c.extract::<u16>()?,
                    _ => 1000,
                };
                let reason = match message.get_item(intern!(py, "reason"))? {
                    Some(r) if !r.is_none() => r.extract::<String>()?,
                    _ => String::new(),
                };
                self.closed = true;
                let _ = self.out.send(Out::Close(code, reason));
                Ok(done)
            }
            other => Err(PyValueError::new_err(format!(
                "unexpected ASGI message type {other:?} for a WebSocket"
            ))),
        }
    }

    fn finish(&mut self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) {
        let failed = super::task_ended(&self.ex.task, py, exc.as_ref(), " (WebSocket)");
        if !self.closed {
            self.closed = true;
            let _ = self.out.send(Out::Ended { failed });
        }
    }
}

/// On the loop thread: build the scope and start the app's task.
fn start(
    py: Python<'_>,
    ctx: &Arc<AppCtx>,
    src: ScopeSource,
    ex: Arc<Exchange>,
    out: mpsc::UnboundedSender<Out>,
) {
    let cycle = || WsCycle {
        ex: Arc::clone(&ex),
        ctx: Arc::clone(ctx),
        out: out.clone(),
        accepted: false,
        closed: false,
    };
    if !super::start_cycle(py, ctx, &src, &ex.task, cycle) {
        let _ = out.send(Out::Ended { failed: true });
    }
}

/// The handshake: hand the scope to the app and answer what it decides (101, or 403 for a
/// close before accept, 500 for a failure).
pub(super) async fn serve(
    asgi: &Asgi,
    conn: &Conn,
    head: &RequestHead,
    upgrade: Option<OnUpgrade>,
) -> Response<ResponseBody> {
    let version_ok = head
        .headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut response =
            responses::error_response(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only");
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let key = head
        .headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let ex = Exchange::new(Inbox::default(), &asgi.bridge);
    let timer = match asgi.deadline(conn, &ex.task).await {
        Ok(timer) => timer,
        Err(stopping) => return stopping,
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let ctx = Arc::clone(&asgi.ctx);
    let src = asgi.scope_source(conn, head, true);
    let job_ex = Arc::clone(&ex);
    asgi.bridge
        .post_batched(Box::new(move |py| start(py, &ctx, src, job_ex, out_tx)));

    // Until the app decides, a client that goes away is a disconnect for it.
    let mut gone = Gone(Some(Arc::clone(&ex)));
    let decision = tokio::select! {
        biased;
        () = timer.expired() => None,
        decision = out_rx.recv() => Some(decision),
    };
    let Some(decision) = decision else {
        // Past the deadline: the 504 now; the slot until the app decides or ends.
        timer.keep_until(async move { out_rx.recv().await });
        return responses::error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout");
    };
    if !timer.answer() {
        return responses::error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout");
    }
    drop(timer);
    let (subprotocol, extra) = match decision {
        Some(Out::Accept {
            subprotocol,
            headers,
        }) => (subprotocol, headers),
        Some(Out::Ended { failed: true }) => {
            return responses::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            );
        }
        _ => return responses::error_response(StatusCode::FORBIDDEN, "Forbidden"),
    };
    let Some(upgrade) = upgrade else {
        return responses::error_response(StatusCode::INTERNAL_SERVER_ERROR, "upgrade unavailable");
    };
    let mut headers = HeaderMap::new();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&key) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&name),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(asgi.ws_max_message))
        .max_frame_size(Some(asgi.ws_max_message));
    let socket = Socket {
        ex: Arc::clone(&ex),
        out: out_rx,
        stopping: asgi.stopping.clone(),
        counted: Counted::new(&asgi.scoreboard, asgi.slot),
    };
    gone.0 = None;
    tokio::task::spawn_local(socket.run(upgrade, config));
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    response
}

/// The client left during the handshake.
struct Gone(Option<Arc<Exchange>>);

impl Drop for Gone {
    fn drop(&mut self) {
        if let Some(ex) = &self.0 {
            push(ex, In::Disconnect(1006, String::new()));
        }
    }
}

struct Socket {
    ex: Arc<Exchange>,
    out: mpsc::UnboundedReceiver<Out>,
    stopping: tokio::sync::watch::Receiver<bool>,
    counted: Counted,
}

impl Socket {
    async fn run(mut self, upgrade: OnUpgrade, config: WebSocketConfig) {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(_) => {
                push(&self.ex, In::Disconnect(1006, String::new()));
                return;
            }
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let (code, reason) = self.pump(&mut ws).await;
        push(&self.ex, In::Disconnect(code, reason));
        drop(self.counted);
    }

    /// Messages both ways until one side closes; the close code and reason for the app.
    async fn pump<S>(&mut self, ws: &mut WebSocketStream<S>) -> (u16, String)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(text))) => push(&self.ex, In::Text(text.to_string())),
                    Some(Ok(Message::Binary(bytes))) => push(&self.ex, In::Binary(bytes)),
                    // tungstenite queues the pong itself and sends it on the next read.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite has queued the reply; reading on sends it.
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        let _ = tokio::time::timeout(CLOSE_WAIT, async {
                            while ws.next().await.is_some() {}
                        })
                        .await;
                        return (code, reason);
                    }
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                        let reason = "message too big".to_owned();
                        close(ws, 1009, &reason).await;
                        return (1009, reason);
                    }
                    Some(Err(_)) | None => return (1006, String::new()),
                },
                out = self.out.recv() => match out {
                    Some(Out::Send(message, len)) => {
                        let sent = ws.send(message).await;
                        if self.ex.flow.taken(len) {
                            self.ex.wake();
                        }
                        if sent.is_err() {
                            return (1006, String::new());
                        }
                    }
                    Some(Out::Close(code, reason)) => {
                        close(ws, code, &reason).await;
                        return (code, reason);
                    }
                    // The app returned without closing: 1000, or 1011 if it raised.
                    Some(Out::Ended { failed }) => {
                        let code = if failed { 1011 } else { 1000 };
                        close(ws, code, "").await;
                        return (code, String::new());
                    }
                    None => {
                        close(ws, 1011, "").await;
                        return (1011, String::new());
                    }
                    Some(Out::Accept { .. }) => {}
                },
                _ = self.stopping.wait_for(|stop| *stop) => {
                    let reason = "server shutting down".to_owned();
                    close(ws, 1001, &reason).await;
                    return (1001, reason);
                }
            }
        }
    }
}

/// Send a close frame and wait (briefly) for the client's.
async fn close<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async { while ws.next().await.is_some() {} }).await;
}
