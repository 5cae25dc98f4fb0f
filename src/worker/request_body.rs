//! Request body intake, one policy for every worker class: what is read before the app
//! runs, and the limits every read of the body is held to — `limit_request_body` (413
//! before the app, an error in the app's read after) and the client's pace,
//! `body_timeout` and `body_min_rate` (408 before the app, an error in the app's read
//! after).
//!
//! A WSGI app is called once its body has arrived ([`spool`]): in memory up to
//! `body_buffer_size`, past it in an unlinked temporary file (`spool_file.rs`) up to
//! `body_spool_size`. So a client that sends its body slowly holds a connection, never an
//! app thread: a one-thread worker serves the others meanwhile. An ASGI app awaits its
//! body without holding a thread: it gets a small body whole and a larger one as it
//! arrives ([`intake`]).
//!
//! [`BodyReader`] is the one reader of the client's body bytes: intake's, and then
//! `wsgi.input`'s on a pool thread (blocking on the runtime), a greenlet's input (waiting
//! on the hub) and an ASGI request's body pump. It does not know how a reader waits, nor
//! how the app is told: its callers do.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::EXPECT;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::ResponseBody;
use super::responses::{error_response, refuse};
use super::spool_file::SpoolFile;
use super::wsgi::environ::{Peer, RequestHead};

/// How fast a client must send its body.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// `body_timeout`: the longest wait for the next bytes, and the most the client may
    /// fall behind `min_rate`.
    pub idle: Duration,
    /// `body_min_rate`, bytes/s; 0: none.
    pub min_rate: u64,
}

/// What every request body of a worker is held to.
#[derive(Debug, Clone)]
pub struct BodyPolicy {
    pub pace: Pace,
    /// `limit_request_body`; 0: none.
    pub limit: u64,
    /// `body_buffer_size`: read whole into memory before the app, up to this.
    pub in_memory: u64,
    /// `body_spool_size`: a WSGI body read before the app up to this (0: nothing spooled).
    pub spool: u64,
    /// Where spooled bodies go (`tmp_upload_dir`, or the system's temporary directory).
    pub spool_dir: PathBuf,
}

/// A request body as an ASGI app gets it.
pub enum BodySource {
    /// All of it, in memory.
    Whole(Bytes),
    /// What was read ahead, and the reader of the rest.
    Started(Bytes, BodyReader),
}

/// What of a WSGI request body was read before the app is called.
pub enum Held {
    Memory(Bytes),
    /// Spooled past `body_buffer_size`, read back from its start.
    File(std::fs::File),
}

/// A WSGI request body as the app gets it.
pub struct Spooled {
    pub held: Held,
    /// The reader of the rest, when the body did not all arrive before the call (past
    /// `body_spool_size`, or sent after `Expect: 100-continue`).
    pub rest: Option<BodyReader>,
}

/// Why the body could not be read.
#[derive(Debug)]
pub enum IntakeError {
    /// No data for `body_timeout`.
    Idle(Duration),
    /// Further behind `body_min_rate` (bytes/s) than `body_timeout` allows.
    TooSlow(u64),
    /// More bytes than `limit_request_body`.
    TooLarge(u64),
    /// The connection broke, or the chunked framing did.
    Broken(hyper::Error),
    /// The spool file could not be made or written (the server's fault, not the client's).
    Spool(PathBuf, std::io::Error),
}

impl IntakeError {
    /// The answer when this happens before the app runs, and the reason logged with it.
    pub fn refusal(&self) -> (StatusCode, &'static str) {
        match self {
            IntakeError::Idle(_) | IntakeError::TooSlow(_) => {
                (StatusCode::REQUEST_TIMEOUT, "request body timed out")
            }
            IntakeError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            IntakeError::Broken(_) => (
                StatusCode::BAD_REQUEST,
                "incomplete or malformed request body",
            ),
            IntakeError::Spool(..) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot spool the request body",
            ),
        }
    }

    /// The response for a body that failed before the app ran, logged: a client's fault
    /// as a refused request (`fault`: what the byte checks of strict.rs saw), the
    /// server's at error level.
    pub fn refused(&self, peer: &Peer, fault: Option<&str>) -> Response<ResponseBody> {
        let (status, why) = self.refusal();
        if let IntakeError::Spool(..) = self {
            tracing::error!("Error handling request: {self}");
            return error_response(status, status.canonical_reason().unwrap_or(why));
        }
        match fault {
            Some(fault) => refuse(peer, status, fault),
            None => refuse(peer, status, &format!("{why}: {self}")),
        }
    }
}

impl std::fmt::Display for IntakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntakeError::Idle(t) => write!(
                f,
                "the client sent no request body data for {}s (body_timeout)",
                t.as_secs()
            ),
            IntakeError::TooSlow(rate) => write!(
                f,
                "the client sent its request body slower than body_min_rate ({rate} bytes/s)"
            ),
            IntakeError::TooLarge(limit) => write!(
                f,
                "the request body is larger than limit_request_body ({limit} bytes)"
            ),
            IntakeError::Broken(err) => write!(f, "could not read the request body: {err}"),
            IntakeError::Spool(dir, err) => write!(
                f,
                "cannot spool a request body to a temporary file in {} (tmp_upload_dir): {err}",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for IntakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IntakeError::Broken(err) => Some(err),
            IntakeError::Spool(_, err) => Some(err),
            _ => None,
        }
    }
}

/// How a body read by the app failed, for the I/O side to answer with when the app then
/// fails before its response starts (the client's 408, 413 or 400, not the app's 500).
pub type ReadFailure = Arc<OnceLock<Failure>>;

/// A failed read, as it would have been refused before the app.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub why: String,
}

impl Failure {
    /// The refusal, logged as a refused request (`fault`: what the byte checks of
    /// strict.rs saw).
    pub fn refused(&self, peer: &Peer, fault: Option<&str>) -> Response<ResponseBody> {
        refuse(peer, self.status, fault.unwrap_or(&self.why))
    }
}

/// The client's pace, as a leaky bucket of seconds: a wait spends them, each byte earns
/// `1 / min_rate` s of them, and the bucket holds `idle` at most. Empty, the client is
/// too slow. Only the time spent waiting for the client counts, never the app's.
#[derive(Debug)]
struct Pacer {
    pace: Pace,
    credit: Duration,
}

impl Pacer {
    fn new(pace: Pace) -> Self {
        Pacer {
            pace,
            credit: pace.idle,
        }
    }

    /// How long the next wait may last.
    fn allowed(&self) -> Duration {
        match self.pace.min_rate {
            0 => self.pace.idle,
            _ => self.credit,
        }
    }

    fn waited(&mut self, waited: Duration, bytes: usize) {
        let rate = self.pace.min_rate;
        if rate == 0 {
            return;
        }
        let earned = (bytes as u64)
            .checked_mul(1_000_000_000)
            .map_or(u64::MAX, |n| n / rate);
        let earned = Duration::from_nanos(earned);
        self.credit = (self.credit.saturating_sub(waited) + earned).min(self.pace.idle);
    }

    /// Why a wait of `allowed` ran out: no data at all for `idle`, or too slow.
    fn out_of_time(&self, allowed: Duration) -> IntakeError {
        if allowed >= self.pace.idle {
            IntakeError::Idle(self.pace.idle)
        } else {
            IntakeError::TooSlow(self.pace.min_rate)
        }
    }
}

/// The rest of a body, read frame by frame at the client's [`Pace`], all of it within
/// `limit` bytes (0: no limit).
pub struct BodyReader {
    body: Incoming,
    pacer: Pacer,
    limit: u64,
    received: u64,
    /// Made only when the body is handed to an app (see [`ReadFailure`]).
    failed: Option<ReadFailure>,
}

impl BodyReader {
    pub fn new(body: Incoming, pace: Pace, limit: u64) -> Self {
        BodyReader {
            body,
            pacer: Pacer::new(pace),
            limit,
            received: 0,
            failed: None,
        }
    }

    /// Where a failed read will be recorded.
    pub fn failure_watch(&mut self) -> ReadFailure {
        Arc::clone(self.failed.get_or_insert_with(Default::default))
    }

    /// The next non-empty chunk, `None` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<Bytes>, IntakeError> {
        let read = self.read().await;
        if let (Err(err), Some(failed)) = (&read, &self.failed) {
            let (status, why) = err.refusal();
            let _ = failed.set(Failure {
                status,
                why: format!("{why}: {err}"),
            });
        }
        read
    }

    async fn read(&mut self) -> Result<Option<Bytes>, IntakeError> {
        loop {
            let allowed = self.pacer.allowed();
            let began = Instant::now();
            let frame = tokio::time::timeout(allowed, self.body.frame())
                .await
                .map_err(|_| self.pacer.out_of_time(allowed))?;
            let Some(frame) = frame else { return Ok(None) };
            let Ok(data) = frame.map_err(IntakeError::Broken)?.into_data() else {
                self.pacer.waited(began.elapsed(), 0);
                continue;
            };
            self.pacer.waited(began.elapsed(), data.len());
            if data.is_empty() {
                continue;
            }
            self.received += data.len() as u64;
            if self.limit > 0 && self.received > self.limit {
                return Err(IntakeError::TooLarge(self.limit));
            }
            return Ok(Some(data));
        }
    }
}

/// The client asked to be told to send its body (`Expect: 100-continue`): hyper answers
/// 100 when the body is first read, so only the app may read it.
fn expects_continue(head: &RequestHead) -> bool {
    head.headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// An ASGI request's body: a declared length up to `body_buffer_size` read whole, so
/// that the app's first `receive()` answers at once and never sees a body cut short;
/// anything else as it arrives (each `http.request` carries what the client sent so far,
/// the way asyncio servers stream). `Err` is the refusal of a body that failed before
/// the app ran.
pub async fn intake(
    head: &RequestHead,
    body: Incoming,
    body_len: Option<u64>,
    policy: &BodyPolicy,
) -> Result<BodySource, IntakeError> {
    let mut reader = BodyReader::new(body, policy.pace, policy.limit);
    match body_len {
        Some(0) => Ok(BodySource::Whole(Bytes::new())),
        Some(n) if n <= policy.in_memory && !expects_continue(head) => {
            let mut whole = Gather::default();
            while let Some(data) = reader.next().await? {
                whole.push(data);
            }
            Ok(BodySource::Whole(whole.freeze()))
        }
        _ => Ok(BodySource::Started(Bytes::new(), reader)),
    }
}

/// A WSGI request's body, read before the app is called: whole in memory up to
/// `body_buffer_size`, then in a temporary file up to `body_spool_size`; past that (or
/// after `Expect: 100-continue`) the app reads the rest as it arrives. The app never sees
/// a body that turns out cut short or badly framed (400 instead). Without spooling, a
/// declared length past `body_buffer_size` reaches the app at once, as in gunicorn.
/// `Err` is the refusal of a body that failed before the app ran.
pub async fn spool(
    head: &RequestHead,
    body: Incoming,
    body_len: Option<u64>,
    policy: &BodyPolicy,
) -> Result<Spooled, IntakeError> {
    let mut reader = BodyReader::new(body, policy.pace, policy.limit);
    let started = |held, reader| Ok(Spooled { held, rest: reader });
    if body_len == Some(0) {
        return started(Held::Memory(Bytes::new()), None);
    }
    let spools = policy.spool > policy.in_memory;
    let streams = !spools && body_len.is_some_and(|n| n > policy.in_memory);
    if streams || expects_continue(head) {
        return started(Held::Memory(Bytes::new()), Some(reader));
    }
    let mut memory = Gather::default();
    while memory.len() <= policy.in_memory {
        match reader.next().await? {
            Some(data) => memory.push(data),
            None => return started(Held::Memory(memory.freeze()), None),
        }
    }
    if !spools {
        return started(Held::Memory(memory.freeze()), Some(reader));
    }
    let spool_error = |e| IntakeError::Spool(policy.spool_dir.clone(), e);
    let mut file = SpoolFile::create(&policy.spool_dir).map_err(spool_error)?;
    file.write(memory.freeze()).await.map_err(spool_error)?;
    while file.len() < policy.spool {
        match reader.next().await? {
            Some(data) => file.write(data).await.map_err(spool_error)?,
            None => {
                let file = file.finish().await.map_err(spool_error)?;
                return started(Held::File(file), None);
            }
        }
    }
    let file = file.finish().await.map_err(spool_error)?;
    started(Held::File(file), Some(reader))
}

/// Chunks joined into one; a body of one chunk, the common case, is not copied.
#[derive(Default)]
struct Gather {
    single: Option<Bytes>,
    joined: BytesMut,
}

impl Gather {
    fn push(&mut self, data: Bytes) {
        match self.single.take() {
            None if self.joined.is_empty() => self.single = Some(data),
            first => {
                if let Some(first) = first {
                    self.joined.extend_from_slice(&first);
                }
                self.joined.extend_from_slice(&data);
            }
        }
    }

    fn len(&self) -> u64 {
        self.single.as_ref().map_or(self.joined.len(), Bytes::len) as u64
    }

    fn freeze(self) -> Bytes {
        self.single.unwrap_or_else(|| self.joined.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(idle: u64, min_rate: u64) -> Pacer {
        Pacer::new(Pace {
            idle: Duration::from_secs(idle),
            min_rate,
        })
    }

    #[test]
    fn without_a_rate_every_wait_may_last_the_body_timeout() {
        let mut p = pacer(10, 0);
        p.waited(Duration::from_secs(9), 1);
        assert_eq!(p.allowed(), Duration::from_secs(10));
        assert!(matches!(p.out_of_time(p.allowed()), IntakeError::Idle(_)));
    }

    #[test]
    fn a_trickle_drains_the_bucket_within_the_body_timeout() {
        // One byte every 2 s against 500 bytes/s: each byte earns 2 ms.
        let mut p = pacer(10, 500);
        let mut waited = Duration::ZERO;
        while p.allowed() > Duration::from_secs(2) {
            p.waited(Duration::from_secs(2), 1);
            waited += Duration::from_secs(2);
        }
        assert!(waited <= Duration::from_secs(10), "{waited:?}");
        assert!(matches!(
            p.out_of_time(p.allowed()),
            IntakeError::TooSlow(500)
        ));
    }

    #[test]
    fn a_fast_client_earns_no_more_than_the_body_timeout() {
        let mut p = pacer(10, 500);
        p.waited(Duration::from_millis(1), 10 << 20);
        assert_eq!(p.allowed(), Duration::from_secs(10));
        // At the rate exactly, it keeps its credit.
        p.waited(Duration::from_secs(1), 500);
        assert_eq!(p.allowed(), Duration::from_secs(10));
    }
}
