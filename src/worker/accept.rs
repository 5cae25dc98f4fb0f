//! Accepting connections on an inherited listener, balanced across workers, and handing
//! each to hyper.
//!
//! Workers that share one listener can end up unbalanced: whichever wakes first drains a
//! burst of connects and keeps them (keep-alive) while its peers idle. So a worker that
//! already holds clearly more connections than the least loaded peer leaves pending
//! connections a moment to that peer, then takes what is still queued itself.
//!
//! Under load the accept task is one task among many busy connections, so each turn it
//! gets drains the queue (up to a batch) instead of taking one connection: a burst of
//! new clients must not wait behind the requests of the old ones.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::forwarded::AllowList;
use super::hangup::{Hangup, HangupIo};
use super::idle_clock;
use super::proxy_protocol::{self, Prefixed};
use super::service::{self, Conn, Worker};
use super::strict::{self, StrictIo};
use super::wsgi::environ::{EnvironBuilder, Peer};
use crate::listeners::{Kind, Listener};
use crate::scoreboard::Scoreboard;

/// How long a busier worker leaves pending connections to a less loaded peer before it
/// takes them itself (the peer may be busy in the app).
const DEFER_FOR: Duration = Duration::from_millis(1);
/// Connections accepted in one turn of the accept task at most.
const ACCEPT_BATCH: usize = 64;
/// Pause after a failing accept (EMFILE…), instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(super) struct AcceptCtx {
    pub worker: Rc<Worker>,
    pub environ: Arc<EnvironBuilder>,
    pub http: Rc<http1::Builder>,
    /// The request-head checks hyper leaves out, and `header_timeout`.
    pub strict: strict::Policy,
    /// How long a stopping worker keeps an idle connection open for its next request.
    pub stop_linger: Duration,
    /// `worker_connections`: at the cap the worker stops accepting.
    pub connections: Arc<Semaphore>,
    pub scoreboard: Arc<Scoreboard>,
    pub slot: usize,
    /// Turns true when the worker stops gracefully.
    pub stopping: watch::Receiver<bool>,
    /// `proxy_protocol`, when on.
    pub proxy: Option<Rc<ProxyPolicy>>,
    /// Failed accepts of every listener of this worker, logged with a count.
    pub accept_errors: Rc<AcceptErrors>,
}

/// Who sends PROXY headers, and which versions.
pub(super) struct ProxyPolicy {
    pub mode: proxy_protocol::Mode,
    pub allowed: AllowList,
}

impl AcceptCtx {
    /// More connections than the least loaded peer.
    fn busier_than_peers(&self) -> bool {
        let mine = self
            .scoreboard
            .slot(self.slot)
            .connections
            .load(Ordering::Relaxed);
        self.scoreboard
            .fewest_connections_except(self.slot)
            .is_some_and(|fewest| mine > fewest)
    }
}

/// Failed accepts, logged once per interval with their count: out of descriptors
/// (EMFILE, ENFILE) a busy worker fails thousands of times a minute, and one line each
/// would flood the log while telling nothing more.
#[derive(Default)]
pub(super) struct AcceptErrors {
    state: std::cell::RefCell<AcceptErrorState>,
}

#[derive(Default)]
struct AcceptErrorState {
    since_logged: u64,
    last_logged: Option<std::time::Instant>,
}

/// At most one line per this interval.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// The answer to a malformed PROXY header, before the connection is closed.
const BAD_PROXY_HEADER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n";

impl AcceptErrors {
    fn failed(&self, label: &str, error: &io::Error) {
        let mut state = self.state.borrow_mut();
        state.since_logged += 1;
        let now = std::time::Instant::now();
        if state
            .last_logged
            .is_some_and(|at| now.duration_since(at) < ACCEPT_ERROR_LOG_EVERY)
        {
            return;
        }
        let count = std::mem::take(&mut state.since_logged);
        state.last_logged = Some(now);
        let hint = match error.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => {
                ": out of file descriptors; the connections wait in the listen queue \
                 (raise LimitNOFILE= or ulimit -n, or lower worker_connections)"
            }
            _ => "",
        };
        tracing::warn!(
            "accept failed on {label}: {error}{hint} ({count} time(s) since the last such line, \
             at most one line per {} s)",
            ACCEPT_ERROR_LOG_EVERY.as_secs()
        );
    }
}

/// Accept until the worker stops; then take what is already queued, and return.
pub(super) async fn accept_loop(listener: Listener, ctx: AcceptCtx) -> Result<(), String> {
    let label = listener.to_string();
    let is_tcp = matches!(listener.kind, Kind::Tcp(_));
    // SAFETY: the AsyncFd owns the socket, so the fd stays open for as long as it is
    // registered with the runtime and is deregistered before it is closed (on drop).
    let socket =
        unsafe { AsyncFd::register_with_interest(Socket::from(listener.fd), Interest::READABLE) }
            .map_err(|e| format!("cannot watch {label}: {e}"))?;
    let mut stopping = ctx.stopping.clone();
    tokio::select! {
        result = accept_until_error(&socket, &label, is_tcp, &ctx) => return result,
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    // Connections already in the listen backlog come from clients that wait for an
    // answer: take them now (the master keeps the listener open until the workers are
    // gone). Returning then closes this worker's copy of the listener.
    // Past `worker_connections` too: a queued client is better answered late than reset.
    loop {
        let permit = Arc::clone(&ctx.connections).try_acquire_owned().ok();
        match socket.get_ref().accept() {
            Ok((stream, addr)) => {
                if let Err(e) = start_connection(&ctx, stream, addr, is_tcp, permit) {
                    tracing::warn!("cannot set up a connection on {label}: {e}");
                }
            }
            Err(_) => break,
        }
    }
    Ok(())
}

async fn accept_until_error(
    socket: &AsyncFd<Socket>,
    label: &str,
    is_tcp: bool,
    ctx: &AcceptCtx,
) -> Result<(), String> {
    loop {
        let mut ready = socket
            .readable()
            .await
            .map_err(|e| format!("cannot wait on {label}: {e}"))?;
        let deferred = ctx.busier_than_peers();
        if deferred {
            drop(ready);
            tokio::time::sleep(DEFER_FOR).await;
            ready = socket
                .readable()
                .await
                .map_err(|e| format!("cannot wait on {label}: {e}"))?;
        }
        for taken in 0..ACCEPT_BATCH {
            // Once ahead of a peer, leave the rest of the queue to it; after a deferral,
            // whatever the peers left in the queue is ours.
            if taken > 0 && !deferred && ctx.busier_than_peers() {
                break;
            }
            // At `worker_connections` the worker stops accepting, which leaves new
            // connections to the other workers.
            let Ok(permit) = Arc::clone(&ctx.connections).acquire_owned().await else {
                return Ok(());
            };
            match ready.try_io(|s| s.get_ref().accept()) {
                Ok(Ok((stream, addr))) => {
                    if let Err(e) = start_connection(ctx, stream, addr, is_tcp, Some(permit)) {
                        tracing::warn!("cannot set up a connection on {label}: {e}");
                    }
                }
                Ok(Err(e)) => {
                    ctx.accept_errors.failed(label, &e);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    break;
                }
                // The queue is empty (readiness cleared): wait for the next connection.
                Err(_would_block) => break,
            }
        }
        // Let the new connections read their requests (and a one-thread worker run the
        // app) before this worker competes for more.
        tokio::task::yield_now().await;
    }
}

fn start_connection(
    ctx: &AcceptCtx,
    stream: Socket,
    addr: socket2::SockAddr,
    is_tcp: bool,
    permit: Option<OwnedSemaphorePermit>,
) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    if is_tcp {
        stream.set_tcp_nodelay(true)?;
        let stream = HangupIo::new(TcpStream::from_std(stream.into())?);
        let hangup = stream.hangup();
        spawn_connection(ctx, stream, addr.as_socket(), hangup, permit);
    } else {
        let stream = HangupIo::new(UnixStream::from_std(stream.into())?);
        let hangup = stream.hangup();
        spawn_connection(ctx, stream, None, hangup, permit);
    }
    Ok(())
}

/// Counts the connection in the scoreboard for as long as it is open (an upgraded
/// WebSocket too: the stopping worker waits for it, hyper's own count ended with the
/// upgrade).
pub(super) struct Counted {
    scoreboard: Arc<Scoreboard>,
    slot: usize,
}

impl Counted {
    pub(super) fn new(scoreboard: &Arc<Scoreboard>, slot: usize) -> Self {
        scoreboard
            .slot(slot)
            .connections
            .fetch_add(1, Ordering::Relaxed);
        Counted {
            scoreboard: Arc::clone(scoreboard),
            slot,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.scoreboard
            .slot(self.slot)
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn spawn_connection<S>(
    ctx: &AcceptCtx,
    stream: S,
    addr: Option<std::net::SocketAddr>,
    hangup: Arc<Hangup>,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counted = Counted::new(&ctx.scoreboard, ctx.slot);
    let worker = Rc::clone(&ctx.worker);
    let environ = Arc::clone(&ctx.environ);
    let strict = ctx.strict;
    // A PROXY header is read only from the peers allowed to send one.
    let proxy = ctx
        .proxy
        .as_ref()
        .filter(|p| p.allowed.allows(addr))
        .map(|p| p.mode);
    let linger = ctx.stop_linger;
    let http = Rc::clone(&ctx.http);
    let mut stopping = ctx.stopping.clone();
    tokio::task::spawn_local(async move {
        let mut stream = stream;
        let (header, replay) = match proxy {
            Some(mode) => {
                let header = proxy_protocol::read_header(&mut stream, mode);
                match tokio::time::timeout(strict.header_timeout, header).await {
                    Ok(Ok(read)) => read,
                    Ok(Err(why)) => {
                        tracing::info!("Invalid request from ip={}: {why}", peer_ip(addr));
                        // gunicorn answers a bad PROXY line 400 too: the proxy (or whoever
                        // sent it) learns why the connection ends.
                        let refusal = stream.write_all(BAD_PROXY_HEADER);
                        if let Ok(Ok(())) =
                            tokio::time::timeout(strict.header_timeout, refusal).await
                        {
                            strict::linger(stream).await;
                        }
                        return;
                    }
                    Err(_) => {
                        tracing::info!(
                            "Invalid request from ip={}: no PROXY header in time",
                            peer_ip(addr)
                        );
                        return;
                    }
                }
            }
            None => (None, Vec::new()),
        };
        // The header's client is REMOTE_ADDR, for every request of the connection; trust
        // in forwarding headers stays with the socket's peer (the proxy).
        let peer = match header {
            Some(proxy_protocol::Header::Proxied {
                source,
                destination,
            }) => Peer {
                proxied_to: Some(destination),
                ..Peer::new(Some(source), worker.proxies.trusts(addr))
            },
            _ => Peer::new(addr, worker.proxies.trusts(addr)),
        };
        let log_peer = peer.clone();
        let stream = StrictIo::new(Prefixed::new(stream, replay), strict);
        let fault = stream.fault();
        let http = idle_clock::builder_for(&http, stream.heads());
        let conn = Rc::new(Conn {
            worker: Rc::clone(&worker),
            environ,
            hangup: Arc::clone(&hangup),
            peer,
            fault: Arc::clone(&fault),
        });
        let service = service_fn(move |req| service::handle(Rc::clone(&conn), req));
        // with_upgrades: an ASGI app's WebSocket takes the connection over.
        let serving = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(serving);
        let ended = tokio::select! {
            ended = serving.as_mut() => ended,
            // A response past its deadline: the client must not wait for the rest.
            () = hangup.closed() => Ok(()),
            _ = stopping.wait_for(|stop| *stop) => {
                // From now on every response says `Connection: close` and hyper closes
                // after it. Closing an idle connection now would race a request the
                // client may be sending on it (it would see a close, no answer): give
                // it a moment to come and be answered; then close what is still idle
                // (and finish what is in progress).
                tokio::select! {
                    ended = serving.as_mut() => ended,
                    _ = tokio::time::sleep(linger) => {
                        serving.as_mut().graceful_shutdown();
                        serving.await
                    }
                }
            }
        };
        // A connection error (client gone, bad request already answered by hyper) is the
        // client's business, not the operator's: logged at info at most.
        if let Err(err) = ended {
            service::connection_ended(&worker, &log_peer, &err, fault.get().copied());
        }
        drop((permit, counted));
    });
}

/// A peer's address for the error log (a unix-socket client has none).
fn peer_ip(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "unix".to_owned(), |a| a.ip().to_string())
}
