//! Request body intake, one policy for every worker class: what is read before the app
//! runs (read-ahead), and the two limits every read of the body is held to —
//! `limit_request_body` (413 before the app, an error in the app's read after) and the
//! body timeout (408 before the app, an error in the app's read after).
//!
//! [`intake`] decides the read-ahead; [`BodyReader`] is the one reader of the rest, used
//! by `wsgi.input` on a pool thread (blocking on the runtime), by a greenlet's input
//! (waiting on the hub) and by an ASGI request's body pump. It does not know how a
//! reader waits, nor how the app is told: its callers do.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::EXPECT;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::wsgi::environ::RequestHead;

/// The read-ahead size: a body whose declared length is at most this is read whole
/// before the app is called (in every worker class), and so are the first bytes of a
/// chunked body up to this when the protocol wants it ([`Chunked::ReadAhead`]). The app
/// then never sees a body whose framing turns out broken (400 instead), a one-thread WSGI
/// worker can call it inline, and an ASGI app's first `receive()` answers at once.
/// Larger or `Expect: 100-continue` bodies are read as the app asks.
pub const READ_AHEAD_MAX: u64 = 64 * 1024;

/// What is read ahead of a chunked body, whose length is unknown until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Up to [`READ_AHEAD_MAX`] (WSGI: a one-thread worker calls the app inline, and
    /// `wsgi.input` of a small body never waits).
    ReadAhead,
    /// Nothing: it reaches the app as it arrives (ASGI: each `http.request` message
    /// carries what the client sent so far, the way asyncio servers stream).
    Stream,
}

/// A request body as the app will get it.
pub enum BodySource {
    /// All of it, in memory.
    Whole(Bytes),
    /// What was read ahead, and the reader of the rest.
    Started(Bytes, BodyReader),
}

/// Why the body could not be read.
#[derive(Debug)]
pub enum IntakeError {
    /// No data for the body timeout.
    TimedOut(Duration),
    /// More bytes than `limit_request_body`.
    TooLarge(u64),
    /// The connection broke, or the chunked framing did.
    Broken(hyper::Error),
}

impl IntakeError {
    /// The answer when this happens before the app runs, and the reason logged with it.
    pub fn refusal(&self) -> (StatusCode, &'static str) {
        match self {
            IntakeError::TimedOut(_) => (StatusCode::REQUEST_TIMEOUT, "request body timed out"),
            IntakeError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            IntakeError::Broken(_) => (
                StatusCode::BAD_REQUEST,
                "incomplete or malformed request body",
            ),
        }
    }
}

impl std::fmt::Display for IntakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntakeError::TimedOut(t) => write!(
                f,
                "the client sent no request body data for {}s",
                t.as_secs()
            ),
            IntakeError::TooLarge(limit) => write!(
                f,
                "the request body is larger than limit_request_body ({limit} bytes)"
            ),
            IntakeError::Broken(err) => write!(f, "could not read the request body: {err}"),
        }
    }
}

impl std::error::Error for IntakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IntakeError::Broken(err) => Some(err),
            _ => None,
        }
    }
}

/// The rest of a body, read frame by frame, each read within `timeout`, all of it within
/// `limit` bytes (0: no limit).
pub struct BodyReader {
    body: Incoming,
    timeout: Duration,
    limit: u64,
    received: u64,
}

impl BodyReader {
    pub fn new(body: Incoming, timeout: Duration, limit: u64) -> Self {
        BodyReader {
            body,
            timeout,
            limit,
            received: 0,
        }
    }

    /// The next non-empty chunk, `None` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<Bytes>, IntakeError> {
        loop {
            let frame = tokio::time::timeout(self.timeout, self.body.frame())
                .await
                .map_err(|_| IntakeError::TimedOut(self.timeout))?;
            let Some(frame) = frame else { return Ok(None) };
            let Ok(data) = frame.map_err(IntakeError::Broken)?.into_data() else {
                continue;
            };
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

/// Take the body in: read it ahead when that is cheap and safe (see [`READ_AHEAD_MAX`]).
/// `Err` is the refusal for a body that failed before the app ran.
pub async fn intake(
    head: &RequestHead,
    body: Incoming,
    body_len: Option<u64>,
    chunked: Chunked,
    (timeout, limit): (Duration, u64),
) -> Result<BodySource, IntakeError> {
    let reader = BodyReader::new(body, timeout, limit);
    if body_len == Some(0) {
        return Ok(BodySource::Whole(Bytes::new()));
    }
    let streams = match body_len {
        Some(n) => n > READ_AHEAD_MAX,
        None => chunked == Chunked::Stream,
    };
    if streams || expects_continue(head) {
        return Ok(BodySource::Started(Bytes::new(), reader));
    }
    read_ahead(reader).await
}

/// Read until the body ends (whole) or grows past [`READ_AHEAD_MAX`] (started). A body
/// of one chunk, the common case, is not copied.
async fn read_ahead(mut reader: BodyReader) -> Result<BodySource, IntakeError> {
    let mut single: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    loop {
        let Some(data) = reader.next().await? else {
            return Ok(BodySource::Whole(single.unwrap_or_else(|| joined.freeze())));
        };
        let read = match single.take() {
            None if joined.is_empty() => {
                let n = data.len();
                single = Some(data);
                n
            }
            first => {
                if let Some(first) = first {
                    joined.extend_from_slice(&first);
                }
                joined.extend_from_slice(&data);
                joined.len()
            }
        };
        if read as u64 > READ_AHEAD_MAX {
            let read = single.unwrap_or_else(|| joined.freeze());
            return Ok(BodySource::Started(read, reader));
        }
    }
}
