//! One request, from hyper's parsed head to the response hyper writes: limits, the
//! choice between calling the app inline or on a pool thread, error responses.

use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST, HeaderValue, UPGRADE};
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
use crate::python::hooks::{RequestHooks, RequestInfo};
use crate::scoreboard::Scoreboard;

/// A body up to this size is read whole before the app is called, so a one-thread
/// worker can call the app on its I/O thread (no hand-off), and the app never sees a body
/// cut short. Larger or `Expect: 100-continue` bodies stream to an app thread instead.
const INLINE_BODY_MAX: u64 = 64 * 1024;

/// Chunks a pool thread may get ahead of a slow client before it waits.
const STREAM_QUEUE_CHUNKS: usize = 8;

/// gunicorn's request limits, and what else a request must pass before the app sees it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line; 0 = no limit of our own.
    pub request_line: usize,
    pub field_size: usize,
    /// `limit_request_body`; 0 = none.
    pub body: u64,
    /// `permit_unconventional_http_method`: any token is a method.
    pub any_method: bool,
    /// `casefold_http_method`.
    pub casefold_method: bool,
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
    /// gunicorn's pre_request/post_request, when the config sets one of them.
    pub request_hooks: Option<Rc<RequestHooks>>,
    /// The gevent hub, when the app runs in greenlets (worker_class = gevent).
    pub gevent: Option<Arc<super::gevent::Bridge>>,
    /// StatsD request metrics (`statsd_host`); None: no clock read, no work.
    pub metrics: Option<Rc<super::metrics::RequestMetrics>>,
    /// An ASGI app is served instead of a WSGI one.
    pub asgi: Option<Arc<super::asgi::Asgi>>,
}

/// Where an app call leaves its environ for post_request (set only when that hook is).
type EnvironSlot = Arc<std::sync::Mutex<Option<Py<PyAny>>>>;

/// What a connection adds: the listener's environ template, the peer.
pub struct Conn {
    pub worker: Rc<Worker>,
    /// The client socket (a duplicate), for a deadline's 504.
    pub socket: Arc<std::os::fd::OwnedFd>,
    pub environ: Arc<EnvironBuilder>,
    pub peer: Peer,
    /// Why the connection's byte checks cut the stream, if they did (strict.rs).
    pub fault: super::strict::FaultSeen,
}

pub async fn handle(
    conn: Rc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    // Only the access log and the metrics need the clock read here.
    let received = (conn.worker.access_log.is_some() || conn.worker.metrics.is_some())
        .then(|| (SystemTime::now(), Instant::now()));
    let board = conn.worker.scoreboard.slot(conn.worker.slot);
    let served = board.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if conn.worker.retire_after == Some(served) {
        board.retire.store(1, Ordering::Release);
    }
    let (mut parts, body) = req.into_parts();
    // hyper's upgrade handle (WebSockets), for an ASGI app only.
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    // Contradicting scheme headers from a trusted proxy are refused like a bad head.
    let (forwarded, bad_scheme) = match conn
        .worker
        .proxies
        .forwarded(conn.peer.trusted, &parts.headers)
    {
        Ok(forwarded) => (forwarded, None),
        Err(why) => (Default::default(), Some((StatusCode::BAD_REQUEST, why))),
    };
    let mut head = RequestHead {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        peer: conn.peer.clone(),
        forwarded,
    };
    let limits = &conn.worker.limits;
    let body_len = body.size_hint().exact();
    let mut response = match bad_scheme.or_else(|| refusal(limits, &head, body_len)) {
        Some((status, why)) => refuse(&conn.peer, status, why),
        None => {
            if limits.casefold_method {
                casefold(&mut head.method);
            }
            host_from_absolute_target(&mut head);
            match (&conn.worker.asgi, &conn.worker.request_hooks) {
                (Some(asgi), _) => asgi.call(&conn, &head, body, upgrade).await,
                (None, None) => call_app(&conn, &head, body, body_len, None).await,
                (None, Some(hooks)) => call_hooked(&conn, hooks, &head, body, body_len).await,
            }
        }
    };
    // A stopping worker closes each connection after its response, and says so.
    // After a CONNECT the client's bytes are a tunnel's, not requests.
    if !keeps_alive_by_default(&head)
        || head.method == Method::CONNECT
        || super::signals::quit_received()
    {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    // The client would read whatever follows as another protocol's bytes, and strict.rs
    // would stop checking what it sends: only a switch the client asked for goes out.
    if response.status() == StatusCode::SWITCHING_PROTOCOLS && !asked_to_upgrade(&head) {
        tracing::error!(
            "Error handling request {}: the app answered 101 Switching Protocols to a \
             request that asked for no upgrade",
            head.uri.path()
        );
        response = error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    }
    if let Some(received) = received {
        let done = Done {
            log: conn.worker.access_log.clone(),
            metrics: conn.worker.metrics.clone(),
        };
        done.when_sent(&conn.peer, head, &mut response, received);
    }
    Ok(response)
}

/// The app call between gunicorn's `pre_request(worker, req)` and, once the response is
/// out, `post_request(worker, req, environ, resp)`. A pre_request that raises is a 500
/// without the app, as in gunicorn.
async fn call_hooked(
    conn: &Conn,
    hooks: &Rc<RequestHooks>,
    head: &RequestHead,
    body: Incoming,
    body_len: Option<u64>,
) -> Response<ResponseBody> {
    let uri = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let info = RequestInfo {
        method: head.method.as_str(),
        uri,
        path: head.uri.path(),
        query: head.uri.query().unwrap_or(""),
        version: if head.version == Version::HTTP_10 {
            (1, 0)
        } else {
            (1, 1)
        },
        headers: &head.headers,
        scheme: if head.forwarded.https {
            "https"
        } else {
            "http"
        },
        peer: (&head.peer.ip, head.peer.port.as_deref()),
    };
    let (mut response, req, environ) = match hooks.before(&info) {
        Ok(req) => {
            let slot = hooks.has_post().then(EnvironSlot::default);
            let response = call_app(conn, head, body, body_len, slot.clone()).await;
            (response, Some(req), slot)
        }
        Err(traceback) => (internal_error(&AppFailure { traceback }), None, None),
    };
    if let (true, Some(req)) = (hooks.has_post(), req) {
        let hooks = Rc::clone(hooks);
        let status = response.status();
        let headers = response.headers().clone();
        let body = std::mem::replace(response.body_mut(), ResponseBody::empty());
        *response.body_mut() = body.on_done(Box::new(move |sent| {
            let environ = environ.and_then(|slot| slot.lock().ok()?.take());
            hooks.after(&req, environ, status, &headers, sent);
        }));
    }
    response
}

/// What happens once a response is out: its access log line, its metrics.
struct Done {
    log: Option<Rc<AccessLog>>,
    metrics: Option<Rc<super::metrics::RequestMetrics>>,
}

impl Done {
    /// Wrap the body so that both happen once it is sent (or dropped), with the bytes
    /// actually sent and the full duration, as gunicorn measures them.
    fn when_sent(
        self,
        peer: &Peer,
        head: RequestHead,
        response: &mut Response<ResponseBody>,
        received: (SystemTime, Instant),
    ) {
        let status = response.status().as_u16();
        let log = self
            .log
            .map(|log| log_when_done(log, peer, head, response.headers(), status, received));
        let metrics = self.metrics;
        let body = std::mem::replace(response.body_mut(), ResponseBody::empty());
        *response.body_mut() = body.on_done(Box::new(move |sent| {
            if let Some(log) = log {
                log(sent);
            }
            if let Some(metrics) = metrics {
                metrics.record(status, received.1.elapsed());
            }
        }));
    }
}

/// What writes the access log line once the body is out (gunicorn logs at the end too,
/// with the bytes actually sent and the full duration).
fn log_when_done(
    log: Rc<AccessLog>,
    peer: &Peer,
    head: RequestHead,
    headers: &HeaderMap,
    status: u16,
    (start, began): (SystemTime, Instant),
) -> impl FnOnce(u64) + use<> {
    let response_headers = if log.format().uses_response_headers() {
        headers.clone()
    } else {
        HeaderMap::new()
    };
    let peer = peer.clone();
    move |sent| {
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
    }
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

/// Read the body ahead where that is cheap and safe, then call the app inline or on an
/// app thread.
async fn call_app(
    conn: &Conn,
    head: &RequestHead,
    body: Incoming,
    body_len: Option<u64>,
    environ_out: Option<EnvironSlot>,
) -> Response<ResponseBody> {
    let expects_continue = head
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let worker = &conn.worker;
    // A small body, or the start of a chunked one, is read before the app runs: the app
    // then never sees a body whose framing turns out broken (400 instead), and a
    // one-thread worker can call it inline. `100-continue` bodies wait for the app.
    let source = if body_len == Some(0) {
        BodySource::Whole(Bytes::new())
    } else if !expects_continue && body_len.is_none_or(|n| n <= INLINE_BODY_MAX) {
        match read_ahead(body, worker.body_timeout, worker.limits.body).await {
            Ok(source) => source,
            Err((status, why)) => {
                return refuse(&conn.peer, status, conn.fault.get().copied().unwrap_or(why));
            }
        }
    } else {
        BodySource::Started(Bytes::new(), body)
    };
    match source {
        source if worker.gevent.is_some() => super::gevent::call(conn, head, source).await,
        BodySource::Whole(bytes) if worker.inline => {
            call_inline(conn, head, bytes, environ_out).await
        }
        source => call_on_pool(conn, head, source, environ_out).await,
    }
}

/// A request body as the app will get it.
pub(super) enum BodySource {
    /// All of it, in memory.
    Whole(Bytes),
    /// What was read ahead, and the rest still on the connection.
    Started(Bytes, Incoming),
}

/// Read the body until it ends (whole) or grows past [`INLINE_BODY_MAX`] (started).
async fn read_ahead(
    mut body: Incoming,
    timeout: Duration,
    limit: u64,
) -> Result<BodySource, (StatusCode, &'static str)> {
    let mut read = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "request body timed out")),
            Ok(None) => return Ok(BodySource::Whole(read.freeze())),
            Ok(Some(Err(_))) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "incomplete or malformed request body",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            if limit > 0 && read.len() as u64 > limit {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, "request body too large"));
            }
            if read.len() as u64 > INLINE_BODY_MAX {
                return Ok(BodySource::Started(read.freeze(), body));
            }
        }
    }
}

async fn call_inline(
    conn: &Conn,
    head: &RequestHead,
    bytes: Bytes,
    environ_out: Option<EnvironSlot>,
) -> Response<ResponseBody> {
    let Some(slot) = conn.worker.deadlines.acquire(&conn.socket).await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "worker stopping");
    };
    let outcome = Python::attach(|py| {
        let input = Bound::new(py, Input::buffered(bytes)).map_err(|e| failure(py, &e))?;
        let environ = conn
            .environ
            .build(py, head, input.into_any())
            .map_err(|e| failure(py, &e))?;
        keep_environ(environ_out.as_ref(), &environ);
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
pub(super) fn answered(
    slot: AppSlot,
    response: impl FnOnce(AppSlot) -> Response<ResponseBody>,
) -> Response<ResponseBody> {
    if slot.answer() {
        response(slot)
    } else {
        error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
    }
}

/// Leave the environ where post_request will find it.
fn keep_environ(slot: Option<&EnvironSlot>, environ: &Bound<'_, pyo3::types::PyDict>) {
    if let Some(slot) = slot
        && let Ok(mut slot) = slot.lock()
    {
        *slot = Some(environ.clone().into_any().unbind());
    }
}

async fn call_on_pool(
    conn: &Conn,
    head: &RequestHead,
    body: BodySource,
    environ_out: Option<EnvironSlot>,
) -> Response<ResponseBody> {
    let Some(slot) = conn.worker.deadlines.acquire(&conn.socket).await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "worker stopping");
    };
    let (started_tx, started_rx) = oneshot::channel();
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(STREAM_QUEUE_CHUNKS);
    let app = Arc::clone(&conn.worker.app);
    let environ = Arc::clone(&conn.environ);
    let runtime = conn.worker.runtime.clone();
    let body_timeout = conn.worker.body_timeout;
    let body_limit = conn.worker.limits.body;
    let job_head = head.clone();
    conn.worker.pool.submit(Box::new(move || {
        let input = match body {
            BodySource::Whole(bytes) => Input::buffered(bytes),
            BodySource::Started(read, rest) => {
                Input::streaming(read, rest, runtime, body_timeout, body_limit)
            }
        };
        run_on_pool(
            &app,
            &environ,
            job_head,
            input,
            (started_tx, chunk_tx),
            environ_out,
        )
    }));
    match started_rx.await {
        Ok(Ok(start)) => started_response(head, slot, start, chunk_rx),
        Ok(Err(failure)) => answered(slot, |_| internal_error(&failure)),
        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "app thread lost"),
    }
}

/// What an app thread reports once the response can start.
/// How an app call began, off the I/O thread (an app thread, or a gevent greenlet): the
/// response head, the first chunks, and whether more follow on the chunk channel.
pub(super) struct AppStart {
    pub declared: Declared,
    pub chunks: Vec<Bytes>,
    /// More chunks follow on the channel.
    pub streaming: bool,
    pub closer: Option<AppIter>,
}

pub(super) type StartedMsg = Result<AppStart, AppFailure>;

impl AppStart {
    /// What an app call that began reports to the I/O side, and the rest of its iterable
    /// for the caller to walk.
    pub(super) fn of(started: Started) -> (AppStart, Option<AppIter>) {
        let Started {
            declared,
            chunks,
            rest,
            closer,
        } = started;
        let start = AppStart {
            declared,
            chunks,
            streaming: rest.is_some(),
            closer,
        };
        (start, rest)
    }
}

/// The response of an app call that began: its head, and a body from the first chunks
/// plus, when the app streams, the chunk channel; the app slot is held until it is sent.
pub(super) fn started_response(
    head: &RequestHead,
    slot: AppSlot,
    start: AppStart,
    chunk_rx: mpsc::Receiver<Chunk>,
) -> Response<ResponseBody> {
    let AppStart {
        declared,
        chunks,
        streaming,
        closer,
    } = start;
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

/// On an app thread: call the app, report its start, then walk the rest of the iterable,
/// waiting for the client (without the GIL) whenever the queue is full.
fn run_on_pool(
    app: &Py<PyAny>,
    environ: &EnvironBuilder,
    head: RequestHead,
    input: Input,
    (started_tx, chunk_tx): (oneshot::Sender<StartedMsg>, mpsc::Sender<Chunk>),
    environ_out: Option<EnvironSlot>,
) {
    let outcome = Python::attach(|py| {
        let input = Bound::new(py, input).map_err(|e| failure(py, &e))?;
        let env = environ
            .build(py, &head, input.into_any())
            .map_err(|e| failure(py, &e))?;
        keep_environ(environ_out.as_ref(), &env);
        response::start(py, app, env)
    });
    let mut rest = match outcome {
        Ok(started) => {
            let (start, rest) = AppStart::of(started);
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

pub(super) fn internal_error(failure: &AppFailure) -> Response<ResponseBody> {
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

/// A refusal of unitcorn's own: logged like gunicorn's "Invalid request", answered with
/// `Connection: close` (the app is not called).
fn refuse(peer: &Peer, status: StatusCode, why: &str) -> Response<ResponseBody> {
    tracing::info!("Invalid request from ip={}: {why}", peer.ip);
    error_response(status, status.canonical_reason().unwrap_or(why))
}

/// Why a parsed request must not reach the app, if it must not: gunicorn's limits
/// (`limit_request_line`, `limit_request_field_size`; hyper itself enforces
/// `limit_request_fields` and answers 431), its method policy, RFC 9112's Host and
/// request-target rules, CONNECT, and `limit_request_body` for a declared length. The
/// raw-byte checks are in `strict.rs`.
fn refusal(
    limits: &Limits,
    head: &RequestHead,
    body_len: Option<u64>,
) -> Option<(StatusCode, &'static str)> {
    if limits.request_line > 0 {
        let target = head.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
        // "METHOD SP request-target SP HTTP/1.1"
        let line = head.method.as_str().len() + 1 + target + 1 + 8;
        if line > limits.request_line {
            return Some((StatusCode::URI_TOO_LONG, "request line too long"));
        }
    }
    if limits.field_size > 0 {
        // gunicorn counts the whole line: `name: value` and its CRLF.
        let too_large = head
            .headers
            .iter()
            .any(|(name, value)| name.as_str().len() + 4 + value.len() > limits.field_size);
        if too_large {
            return Some((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header field too large",
            ));
        }
    }
    // RFC 9112 3.2, RFC 3986 2: the target is printable ASCII, the rest percent-encoded.
    let target = head.uri.path_and_query().map_or("", |pq| pq.as_str());
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Some((
            StatusCode::BAD_REQUEST,
            "request target not printable ASCII",
        ));
    }
    if !limits.any_method && !conventional_method(&head.method) {
        return Some((StatusCode::BAD_REQUEST, "unconventional method"));
    }
    // RFC 9112 3.2: one Host, and a valid one; an HTTP/1.1 request without Host is
    // refused (HTTP/1.0 clients may predate it). Two of them may route differently
    // downstream.
    let mut hosts = head.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Some((StatusCode::BAD_REQUEST, "repeated Host header")),
        (None, _) if head.version != Version::HTTP_10 => {
            return Some((StatusCode::BAD_REQUEST, "missing Host header"));
        }
        (Some(host), None) if !valid_host(host.as_bytes()) => {
            return Some((StatusCode::BAD_REQUEST, "invalid Host header"));
        }
        _ => {}
    }
    // No tunnels: a CONNECT would hand the app a socket it has no way to use.
    if head.method == Method::CONNECT {
        return Some((StatusCode::NOT_IMPLEMENTED, "CONNECT not supported"));
    }
    if let Some(authority) = head.uri.authority() {
        // RFC 9112 3.2.3: the authority form is CONNECT's only.
        if head.uri.scheme().is_none() {
            return Some((
                StatusCode::BAD_REQUEST,
                "authority-form target without CONNECT",
            ));
        }
        // RFC 9110 4.2.4: userinfo in an http(s) URI is an error; the authority becomes
        // the Host, so it must pass as one.
        if !valid_host(authority.as_str().as_bytes()) {
            return Some((StatusCode::BAD_REQUEST, "invalid request target authority"));
        }
    }
    if limits.body > 0 && body_len.is_some_and(|n| n > limits.body) {
        return Some((StatusCode::PAYLOAD_TOO_LARGE, "request body too large"));
    }
    None
}

/// RFC 9110 7.2: `uri-host [ ":" port ]`, the host an IP-literal or a reg-name (an
/// IPv4 address is a reg-name too), the port digits.
fn valid_host(host: &[u8]) -> bool {
    let port = |p: &[u8]| p.iter().all(u8::is_ascii_digit);
    if let Some(literal) = host.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let ip_literal = std::str::from_utf8(&literal[..end])
            .is_ok_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok() || ipv_future(ip));
        return ip_literal
            && match &literal[end + 1..] {
                [] => true,
                [b':', rest @ ..] => port(rest),
                _ => false,
            };
    }
    let (name, rest) = match host.iter().position(|&b| b == b':') {
        Some(colon) => (&host[..colon], Some(&host[colon + 1..])),
        None => (host, None),
    };
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                if !name
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
                continue;
            }
            b if unreserved_or_sub_delim(b) => {}
            _ => return false,
        }
        i += 1;
    }
    rest.is_none_or(port)
}

/// RFC 3986 3.2.2: `"v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn ipv_future(ip: &str) -> bool {
    let Some((version, rest)) = ip
        .strip_prefix(['v', 'V'])
        .and_then(|ip| ip.split_once('.'))
    else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b == b':' || unreserved_or_sub_delim(b))
}

fn unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// RFC 9112 3.2.2: for an absolute-form target the Host is the target's authority,
/// whatever Host header came with it; the app and the access log see that one.
fn host_from_absolute_target(head: &mut RequestHead) {
    if let Some(authority) = head.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        head.headers.insert(HOST, host);
    }
}

/// The client offered a protocol to switch to (RFC 9110 7.8; an HTTP/1.0 request's
/// Upgrade is to be ignored).
fn asked_to_upgrade(head: &RequestHead) -> bool {
    head.version == Version::HTTP_11
        && head.headers.contains_key(UPGRADE)
        && head.headers.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// gunicorn's default method policy: 3 to 20 characters, no lowercase letter, no '#'
/// (hyper has already checked it is an RFC 9110 token).
fn conventional_method(method: &Method) -> bool {
    let standard = [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    if standard.contains(method) {
        return true;
    }
    let name = method.as_str().as_bytes();
    (3..=20).contains(&name.len()) && !name.iter().any(|&b| b.is_ascii_lowercase() || b == b'#')
}

/// `casefold_http_method`: the app sees the method uppercased.
fn casefold(method: &mut Method) {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase())
        && let Ok(upper) = Method::from_bytes(method.as_str().to_ascii_uppercase().as_bytes())
    {
        *method = upper;
    }
}

/// A connection ended in an error. hyper answered a head it could not parse itself
/// (400, 414 or 431, then closed): log it as a refused request (error log at info, and an
/// access log line with the status). Anything else (client gone, body cut, idle timeout)
/// only at debug level.
pub fn connection_ended(
    worker: &Worker,
    peer: &Peer,
    err: &hyper::Error,
    fault: Option<super::strict::Fault>,
) {
    if !err.is_parse() || err.is_parse_version_h2() {
        tracing::debug!(
            "connection from {} ended: {}",
            peer.ip,
            fault.map_or_else(|| err.to_string(), str::to_owned)
        );
        return;
    }
    let status: u16 = if !err.is_parse_too_large() {
        400
    } else if err.to_string().contains("URI") {
        414
    } else {
        431
    };
    let why = fault.map_or_else(|| err.to_string(), str::to_owned);
    tracing::info!("Invalid request from ip={}: {why}", peer.ip);
    if let Some(log) = &worker.access_log {
        let environ = [("REMOTE_PORT", peer.port.as_deref().unwrap_or(""))];
        let none = HeaderMap::new();
        let record = AccessRecord {
            remote_addr: &peer.ip,
            method: "-",
            path: "-",
            query: "",
            protocol: "-",
            status,
            body_bytes: 0,
            request_headers: &none,
            response_headers: &none,
            start: SystemTime::now(),
            duration: Duration::ZERO,
            pid: std::process::id(),
            environ: &environ,
        };
        if let Err(e) = log.log(&record) {
            tracing::warn!("cannot write the access log: {e}");
        }
    }
}
