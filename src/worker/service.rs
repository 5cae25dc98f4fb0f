//! The dispatcher of one request: from hyper's parsed head to the response hyper writes.
//! It counts the request, runs the head checks (`request_checks.rs`), takes the body in
//! (`request_body.rs`), and sends the call to where this worker runs its app: inline or
//! on a pool thread (`app_call.rs`), in a greenlet (`gevent/`), or on the asyncio loop
//! (`asgi/`), between the request hooks when the config sets them (`request_hooks.rs`).
//!
//! It builds no response of its own (`responses.rs` does) and never touches Python: the
//! places the app runs do.

use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use http::header::{CONNECTION, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;
use pyo3::prelude::*;

use super::app_call::{self, EnvironSlot};
use super::body::ResponseBody;
use super::deadlines::Deadlines;
use super::forwarded::Proxies;
use super::pool::AppPool;
use super::request_body::{self, BodyPolicy, Spooled};
use super::request_checks::{
    Limits, asked_to_upgrade, casefold, host_from_absolute_target, keeps_alive_by_default, refusal,
};
use super::responses::{error_response, refuse};
use super::spool::SpoolLimits;
use super::wsgi::environ::{EnvironBuilder, Peer, RequestHead};
use super::{request_hooks, request_log};
use crate::logging::AccessLog;
use crate::python::hooks::RequestHooks;
use crate::scoreboard::Scoreboard;

pub use super::request_log::connection_ended;

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
    /// What a sync or gthread response may hold for a slow client (memory, then disk).
    pub spool: Arc<SpoolLimits>,
    pub limits: Limits,
    /// What a request body is held to, and how much of it is read before the app.
    pub body: BodyPolicy,
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

/// What a connection adds: the listener's environ template, the peer.
pub struct Conn {
    pub worker: Rc<Worker>,
    /// The connection as the deadline watcher reaches it.
    pub hangup: Arc<super::hangup::Hangup>,
    pub environ: Arc<EnvironBuilder>,
    pub peer: Peer,
    /// Why the connection's byte checks cut the stream, if they did (strict.rs).
    pub fault: super::strict::FaultSeen,
}

/// Serve one request hyper parsed: count it, check it, call the app where this worker
/// runs it, and arrange the access log line for when the response is out.
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
            let call = Call {
                conn: &conn,
                head: &head,
                body,
                body_len,
                upgrade,
            };
            match &conn.worker.request_hooks {
                None => call_app(call, None).await,
                Some(hooks) => request_hooks::around(hooks, call).await,
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
        let done = request_log::Done {
            log: conn.worker.access_log.clone(),
            metrics: conn.worker.metrics.clone(),
        };
        done.when_sent(&conn.peer, head, &mut response, received);
    }
    Ok(response)
}

/// One app call as the dispatcher hands it on.
pub struct Call<'a> {
    pub conn: &'a Conn,
    pub head: &'a RequestHead,
    pub body: Incoming,
    pub body_len: Option<u64>,
    /// hyper's upgrade handle (an ASGI WebSocket).
    pub upgrade: Option<OnUpgrade>,
}

/// Take the body in, then call the app where this worker runs it. `environ_out`: where
/// post_request will find the environ.
pub async fn call_app(call: Call<'_>, environ_out: Option<EnvironSlot>) -> Response<ResponseBody> {
    let Call {
        conn,
        head,
        body,
        body_len,
        upgrade,
    } = call;
    let worker = &conn.worker;
    let fault = || conn.fault.get().copied();
    // An ASGI request's environ for post_request is the hooks' (request_hooks.rs).
    if let Some(asgi) = &worker.asgi {
        let source = match request_body::intake(head, body, body_len, &worker.body).await {
            Ok(source) => source,
            Err(err) => return err.refused(&conn.peer, fault()),
        };
        return asgi.call(conn, head, source, upgrade).await;
    }
    let body = match request_body::spool(head, body, body_len, &worker.body).await {
        Ok(body) => body,
        Err(err) => return err.refused(&conn.peer, fault()),
    };
    match body {
        body if worker.gevent.is_some() => super::gevent::call(conn, head, body, environ_out).await,
        Spooled { held, rest: None } if worker.inline => {
            app_call::inline(conn, head, held, environ_out).await
        }
        body => app_call::on_pool(conn, head, body, environ_out).await,
    }
}
