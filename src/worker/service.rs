//! One request, from hyper's parsed head to the response hyper writes: limits, the
//! choice between calling the app inline or on a pool thread, error responses.

use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use pyo3::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::body::{Chunk, ResponseBody};
use super::deadlines::{AppSlot, Deadlines};
use super::forwarded::Proxies;
use super::pool::AppPool;
use super::wsgi::environ::{EnvironBuilder, Peer, RequestHead};
use super::wsgi::input::Input;
use super::wsgi::response::{self, AppFailure, AppIter, Started};
use super::wsgi::start_response::Declared;
use crate::logging::{AccessLog, AccessRecord};
use crate::scoreboard::Scoreboard;

/// A body up to this size with a Content-Length is read whole before the app is called,
/// so a one-thread worker can call the app on its I/O thread (no hand-off). Larger,
/// chunked or `Expect: 100-continue` bodies stream to an app thread instead.
const INLINE_BODY_MAX: u64 = 64 * 1024;

/// Chunks a pool thread may get ahead of a slow client before it waits.
const STREAM_QUEUE_CHUNKS: usize = 8;

/// gunicorn's request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line; 0 = no limit of our own.
    pub request_line: usize,
    pub field_size: usize,
}

/// What every request of a worker shares.
pub struct Worker {
    pub app: Arc<Py<PyAny>>,
    /// The app slots (`--threads`) and their deadlines; a response holds a slot until its
    /// body is done.
    pub deadlines: Arc<Deadlines>,
    /// After this many requests the worker asks the master for a replacement.
    pub retire_after: Option<u64>,
    /// Call the app on the I/O thread (one app thread per worker).
    pub inline: bool,
    pub pool: AppPool,
    pub limits: Limits,
    /// How long the client may take to send the request body (gunicorn's `timeout` on
    /// socket reads): a client that stalls mid-body is answered 408 and dropped.
    pub body_timeout: Duration,
    pub runtime: tokio::runtime::Handle,
    pub access_log: Option<Rc<AccessLog>>,
    pub scoreboard: Arc<Scoreboard>,
    pub slot: usize,
    /// Which peers may set the scheme and mount point (forwarded_allow_ips).
    pub proxies: Proxies,
    /// An ASGI app is served instead of a WSGI one.
    pub asgi: Option<Arc<super::asgi::Asgi>>,
}

/// What a connection adds: the listener's environ template, the peer.
pub struct Conn {
    pub worker: Rc<Worker>,
    /// The client socket (a duplicate), for a deadline's 504.
    pub socket: Arc<std::os::fd::OwnedFd>,
    pub environ: Arc<EnvironBuilder>,
    pub peer: Peer,
}

pub async fn handle(
    conn: Rc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    // Only the access log needs the clock read here.
    let received = conn
        .worker
        .access_log
        .is_some()
        .then(|| (SystemTime::now(), Instant::now()));
    let board = conn.worker.scoreboard.slot(conn.worker.slot);
    let served = board.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if conn.worker.retire_after == Some(served) {
        board.retire.store(1, Ordering::Release);
    }
    if let Some(refusal) = check_limits(&conn.worker.limits, &req) {
        return Ok(refusal);
    }
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let forwarded = match conn
        .worker
        .proxies
        .forwarded(conn.peer.trusted, &parts.headers)
    {
        Ok(forwarded) => forwarded,
        Err(why) => return Ok(error_response(StatusCode::BAD_REQUEST, why)),
    };
    let head = RequestHead {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        peer: conn.peer.clone(),
        forwarded,
    };
    let expects_continue = head
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body_len = body.size_hint().exact();
    let inline =
        conn.worker.inline && !expects_continue && body_len.is_some_and(|n| n <= INLINE_BODY_MAX);

    let mut response = if let Some(asgi) = &conn.worker.asgi {
        asgi.call(&conn, &head, body, upgrade).await
    } else if inline {
        call_inline(&conn, &head, body, body_len).await
    } else {
        call_on_pool(&conn, &head, body).await
    };
    // A stopping worker closes each connection after its response, and says so.
    if !keeps_alive_by_default(&head) || super::signals::quit_received() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if let (Some(log), Some(received)) = (&conn.worker.access_log, received) {
        log_when_done(log, &conn.peer, head, &mut response, received);
    }
    Ok(response)
}

/// Write the access log line once the body is out (gunicorn logs at the end too, with
/// the bytes actually sent and the full duration).
fn log_when_done(
    log: &Rc<AccessLog>,
    peer: &Peer,
    head: RequestHead,
    response: &mut Response<ResponseBody>,
    (start, began): (SystemTime, Instant),
) {
    let status = response.status().as_u16();
    let response_headers = if log.format().uses_response_headers() {
        response.headers().clone()
    } else {
        HeaderMap::new()
    };
    let peer = peer.clone();
    let log = Rc::clone(log);
    let body = std::mem::replace(response.body_mut(), ResponseBody::empty());
    *response.body_mut() = body.on_done(Box::new(move |sent| {
        let environ = [("REMOTE_PORT", peer.port.as_deref().unwrap_or(""))];
        let record = AccessRecord {
            remote_addr: &peer.ip,
            method: head.method.as_str(),
            path: head.uri.path(),
            query: head.uri.query().unwrap_or(""),
            protocol: super::wsgi::environ::protocol(head.version),
            status,
            body_bytes: sent,
            request_headers: &head.headers,
            response_headers: &response_headers,
            start,
            duration: began.elapsed(),
            pid: std::process::id(),
            environ: &environ,
        };
        if let Err(e) = log.log(&record) {
            tracing::warn!("cannot write the access log: {e}");
        }
    }));
}

/// An HTTP/1.0 client that did not ask for keep-alive is closed after the response; say
/// so, as every response after which unitcorn closes does.
fn keeps_alive_by_default(head: &RequestHead) -> bool {
    head.version != Version::HTTP_10
        || head
            .headers
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"))
}

async fn call_inline(
    conn: &Conn,
    head: &RequestHead,
    body: Incoming,
    body_len: Option<u64>,
) -> Response<ResponseBody> {
    let bytes = if body_len == Some(0) {
        Bytes::new()
    } else {
        match tokio::time::timeout(conn.worker.body_timeout, body.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(_)) => {
                return error_response(StatusCode::BAD_REQUEST, "incomplete request body");
            }
            Err(_) => {
                return error_response(StatusCode::REQUEST_TIMEOUT, "request body timed out");
            }
        }
    };
    let Some(slot) = conn.worker.deadlines.acquire(&conn.socket).await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "worker stopping");
    };
    let outcome = Python::attach(|py| {
        let input = Bound::new(py, Input::buffered(bytes)).map_err(|e| failure(py, &e))?;
        let environ = conn
            .environ
            .build(py, head, input.into_any())
            .map_err(|e| failure(py, &e))?;
        response::start(py, &conn.worker.app, environ)
    });
    match outcome {
        Ok(started) => {
            let Started {
                declared,
                chunks,
                rest,
                closer,
            } = started;
            let len = declared.content_length;
            let body = match rest {
                Some(rest) => ResponseBody::inline(chunks, rest, len),
                None => ResponseBody::full(chunks, len),
            };
            answered(slot, |slot| {
                finish(head, declared, body.close_after(closer).hold(slot))
            })
        }
        Err(failure) => answered(slot, |_| internal_error(&failure)),
    }
}

/// The response, unless the deadline answered 504 for this call already (the connection
/// is closed then, and the worker about to be replaced).
fn answered(
    slot: AppSlot,
    response: impl FnOnce(AppSlot) -> Response<ResponseBody>,
) -> Response<ResponseBody> {
    if slot.answer() {
        response(slot)
    } else {
        error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
    }
}

async fn call_on_pool(conn: &Conn, head: &RequestHead, body: Incoming) -> Response<ResponseBody> {
    let Some(slot) = conn.worker.deadlines.acquire(&conn.socket).await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "worker stopping");
    };
    let (started_tx, started_rx) = oneshot::channel();
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(STREAM_QUEUE_CHUNKS);
    let app = Arc::clone(&conn.worker.app);
    let environ = Arc::clone(&conn.environ);
    let runtime = conn.worker.runtime.clone();
    let body_timeout = conn.worker.body_timeout;
    let job_head = RequestHead {
        method: head.method.clone(),
        uri: head.uri.clone(),
        version: head.version,
        headers: head.headers.clone(),
        peer: head.peer.clone(),
        forwarded: head.forwarded.clone(),
    };
    conn.worker.pool.submit(Box::new(move || {
        let input = Input::streaming(body, runtime, body_timeout);
        run_on_pool(&app, &environ, job_head, input, started_tx, chunk_tx)
    }));
    match started_rx.await {
        Ok(Ok(PoolStart {
            declared,
            chunks,
            streaming,
            closer,
        })) => {
            let len = declared.content_length;
            let body = if streaming {
                ResponseBody::channel(chunks, chunk_rx, len)
            } else {
                ResponseBody::full(chunks, len)
            };
            answered(slot, |slot| {
                finish(head, declared, body.close_after(closer).hold(slot))
            })
        }
        Ok(Err(failure)) => answered(slot, |_| internal_error(&failure)),
        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "app thread lost"),
    }
}

/// What an app thread reports once the response can start.
struct PoolStart {
    declared: Declared,
    chunks: Vec<Bytes>,
    /// More chunks follow on the channel.
    streaming: bool,
    closer: Option<AppIter>,
}

type StartedMsg = Result<PoolStart, AppFailure>;

/// On an app thread: call the app, report its start, then walk the rest of the iterable,
/// waiting for the client (without the GIL) whenever the queue is full.
fn run_on_pool(
    app: &Py<PyAny>,
    environ: &EnvironBuilder,
    head: RequestHead,
    input: Input,
    started_tx: oneshot::Sender<StartedMsg>,
    chunk_tx: mpsc::Sender<Chunk>,
) {
    let outcome = Python::attach(|py| {
        let input = Bound::new(py, input).map_err(|e| failure(py, &e))?;
        let env = environ
            .build(py, &head, input.into_any())
            .map_err(|e| failure(py, &e))?;
        response::start(py, app, env)
    });
    let mut rest = match outcome {
        Ok(Started {
            declared,
            chunks,
            rest,
            closer,
        }) => {
            let streaming = rest.is_some();
            let start = PoolStart {
                declared,
                chunks,
                streaming,
                closer,
            };
            if started_tx.send(Ok(start)).is_err() {
                return;
            }
            match rest {
                Some(rest) => rest,
                None => return,
            }
        }
        Err(failure) => {
            let _ = started_tx.send(Err(failure));
            return;
        }
    };
    loop {
        let next = Python::attach(|py| rest.next_or_log(py));
        let sent = match next {
            Ok(Some(chunk)) => chunk_tx.blocking_send(Ok(chunk)).is_ok(),
            Ok(None) => false,
            Err(()) => {
                let _ = chunk_tx.blocking_send(Err(()));
                false
            }
        };
        if !sent {
            break;
        }
    }
    Python::attach(|py| rest.close(py));
}

fn failure(py: Python<'_>, err: &PyErr) -> AppFailure {
    AppFailure {
        traceback: crate::python::format_exception(py, err),
    }
}

/// The response for what the app declared; no body where HTTP allows none.
pub(super) fn finish(
    head: &RequestHead,
    declared: Declared,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let status = declared.status;
    let bodiless = head.method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut headers = declared.headers;
    let body = if bodiless {
        // HEAD answers with the length GET would have, when the app's body is complete.
        if head.method == Method::HEAD
            && !headers.contains_key(CONTENT_LENGTH)
            && let Some(len) = body.size_hint().exact()
        {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        drop(body);
        ResponseBody::empty()
    } else {
        body
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if let Some(reason) = declared.reason
        && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason)
    {
        response.extensions_mut().insert(reason);
    }
    if declared.close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn internal_error(failure: &AppFailure) -> Response<ResponseBody> {
    tracing::error!("Error handling request\n{}", failure.traceback.trim_end());
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

/// A response of unitcorn's own; the connection is closed after it.
pub(super) fn error_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let text = format!("{} {}\n", status.as_u16(), message);
    let mut response = Response::new(ResponseBody::full(vec![Bytes::from(text)], None));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// gunicorn's `limit_request_line` and `limit_request_field_size` (hyper itself enforces
/// `limit_request_fields` and answers 431).
fn check_limits(limits: &Limits, req: &Request<Incoming>) -> Option<Response<ResponseBody>> {
    if limits.request_line > 0 {
        let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
        // "METHOD SP request-target SP HTTP/1.1"
        let line = req.method().as_str().len() + 1 + target + 1 + 8;
        if line > limits.request_line {
            return Some(error_response(
                StatusCode::URI_TOO_LONG,
                "Request-URI Too Long",
            ));
        }
    }
    if limits.field_size > 0 {
        let too_large = req
            .headers()
            .iter()
            .any(|(name, value)| name.as_str().len() + 2 + value.len() > limits.field_size);
        if too_large {
            return Some(error_response(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large",
            ));
        }
    }
    None
}
