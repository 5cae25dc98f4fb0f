//! What hyper's HTTP/1.1 parser lets through and gunicorn 23+ refuses, checked on the raw
//! bytes of the connection before hyper sees them.
//!
//! httparse takes a bare LF as a line end, and hyper drops what it judges redundant
//! before the service could see it: a second, identical Content-Length, or the
//! Content-Length of a request that also has Transfer-Encoding (hyper then trusts the
//! chunking, a proxy in front may have trusted the length: request smuggling). So every
//! byte read from the client goes through [`Scanner`], which follows the message framing
//! (request heads, Content-Length bodies, chunked bodies and their trailers) to know
//! where each head starts, and checks each head line as it passes.
//!
//! A refused head never reaches hyper whole: the byte where the fault was found (always
//! at or before the head's last LF) is replaced by a NUL and nothing after it is
//! delivered. httparse refuses a NUL anywhere in a head, so hyper itself answers `400 Bad
//! Request` with `Connection: close`, in order after any pipelined response before it.
//! A fault in a body's chunk framing ends the stream just before the faulty byte instead:
//! hyper then fails the body as cut short (the worker answers 400 before calling the app,
//! or the app's `wsgi.input` raises) and closes the connection after the response. (A
//! failed read would make hyper drop the connection without any response.) The scanner is only ever stricter than hyper, never laxer, so
//! the two cannot disagree on where a message ends without the connection being closed.
//!
//! The same wrapper bounds how long a client may take over one head (`header_timeout`),
//! counted from its first byte: a head sent byte by byte must not hold a connection for
//! the keep-alive time of every byte. It tells the connection's idle clock
//! (`idle_clock.rs`, `keepalive`) when a head begins and ends, which stops that clock.
//!
//! And it closes a connection dropped in the middle of a request gently (RFC 9112 9.6):
//! a socket closed with unread bytes in it is reset, and a reset destroys the refusal
//! hyper just wrote before the client reads it. So such a stream is handed to a task that
//! shuts down its sending side and drains what the client still sends, for a bounded time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::idle_clock::Heads;

/// What the connection's policy allows beyond RFC 9112's strict grammar.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Join obsolete folded header lines instead of refusing them.
    pub permit_folding: bool,
    /// Longest a request head may take from its first byte.
    pub header_timeout: Duration,
}

/// Where the scanner is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages: the next byte starts a request (or an empty line before one).
    Idle,
    /// In a request head.
    Head,
    /// This many Content-Length body bytes to pass.
    Body(u64),
    /// Chunked body: in a chunk-size line, `digits` read so far, value `size`.
    ChunkSize {
        digits: u8,
        size: u64,
    },
    /// Chunked body: whitespace after the size, which only a `;` may follow.
    ChunkBws {
        size: u64,
    },
    /// Chunked body: in extensions, up to CR.
    ChunkExt {
        size: u64,
    },
    /// Chunked body: CR seen at the end of a chunk-size line.
    ChunkSizeLf {
        size: u64,
    },
    /// Chunked body: this many chunk data bytes to pass.
    ChunkData(u64),
    /// Chunked body: the CRLF after a chunk's data.
    ChunkDataCr,
    ChunkDataLf,
    /// Chunked body: trailer lines after the last chunk, up to an empty line.
    Trailer,
    /// After a CONNECT head: what follows is not HTTP (the connection closes after it).
    Tunnel,
}

/// The framing one head announced, built as its lines pass.
#[derive(Debug, Default)]
struct HeadFacts {
    /// Lines of this head done so far (0: still in the request line).
    lines: u32,
    /// Its target is longer than hyper takes.
    long_target: bool,
    http10: bool,
    connect: bool,
    content_length: Option<u64>,
    /// A Transfer-Encoding line was seen (its codings must end with chunked).
    transfer_encoding: bool,
    chunked: bool,
    content_type: bool,
    /// The last header line was Content-Length or Transfer-Encoding (a fold of it is
    /// refused even when folding is permitted).
    last_was_framing: bool,
}

/// Why a message is refused: for the error log.
pub type Fault = &'static str;

/// A head whose target is longer than hyper takes: hyper answers it 414 itself. Recorded
/// as the connection's fault (in hyper's words) so that its log line can say 414 without
/// reading hyper's error text, which is not to be parsed.
pub const URI_TOO_LONG: Fault = "URI too long";

/// hyper's limit on a request target (`MAX_URI_LEN` in hyper's h1 role).
const HYPER_MAX_TARGET: usize = u16::MAX as usize - 1;

/// The first fault of a connection (or [`URI_TOO_LONG`]), for the log line when it ends. Shared and `Send`: an
/// upgraded connection (WebSocket) moves the stream to hyper's `Upgraded`, which is.
pub type FaultSeen = std::sync::Arc<std::sync::OnceLock<Fault>>;

/// What one scan of newly read bytes found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// The head is refused at this index of the scanned bytes.
    RefuseHead(usize, Fault),
    /// A body's framing is broken at this index of the scanned bytes.
    BreakBody(usize, Fault),
}

/// Follows the framing of the request stream and checks each head line.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    permit_folding: bool,
    head: HeadFacts,
    /// The part of the current head (or trailer) line read so far, when a line spans
    /// reads; empty otherwise.
    partial: Vec<u8>,
    /// Empty lines seen since the last message (RFC 9112 2.2 tolerates one).
    empty_lines: u8,
    /// Where the current header line (with its folds) starts in the bytes being scanned;
    /// None when it started in an earlier read.
    field_start: Option<usize>,
    /// A whole head with a target longer than hyper takes went by: hyper refuses it.
    long_target_head: bool,
}

impl Scanner {
    pub fn new(permit_folding: bool) -> Self {
        Scanner {
            state: State::Idle,
            permit_folding,
            head: HeadFacts::default(),
            partial: Vec::new(),
            empty_lines: 0,
            field_start: None,
            long_target_head: false,
        }
    }

    /// In the middle of a request head (its first byte read, its end not yet).
    pub fn in_head(&self) -> bool {
        self.state == State::Head || (self.state == State::Idle && !self.partial.is_empty())
    }

    /// Scan bytes just read, in order. May rewrite them in place (unfolding).
    pub fn scan(&mut self, buf: &mut [u8]) -> Verdict {
        let mut pos = 0;
        self.field_start = None;
        while pos < buf.len() {
            match self.state {
                State::Idle | State::Head | State::Trailer => {
                    let Some(lf) = find_lf(&buf[pos..]).map(|i| pos + i) else {
                        self.partial.extend_from_slice(&buf[pos..]);
                        return Verdict::Pass;
                    };
                    if let Err(fault) = self.line_end(buf, pos, lf) {
                        return if self.state == State::Trailer {
                            Verdict::BreakBody(lf, fault)
                        } else {
                            Verdict::RefuseHead(lf, fault)
                        };
                    }
                    pos = lf + 1;
                }
                State::Body(left) => {
                    let take = left.min((buf.len() - pos) as u64);
                    pos += take as usize;
                    self.state = if take == left {
                        State::Idle
                    } else {
                        State::Body(left - take)
                    };
                }
                State::ChunkData(left) => {
                    let take = left.min((buf.len() - pos) as u64);
                    pos += take as usize;
                    self.state = if take == left {
                        State::ChunkDataCr
                    } else {
                        State::ChunkData(left - take)
                    };
                }
                State::Tunnel => return Verdict::Pass,
                _ => {
                    if let Err(fault) = self.chunk_byte(buf[pos]) {
                        return Verdict::BreakBody(pos, fault);
                    }
                    pos += 1;
                }
            }
        }
        Verdict::Pass
    }

    /// One byte of chunk framing (outside chunk data).
    fn chunk_byte(&mut self, b: u8) -> Result<(), Fault> {
        self.state = match (self.state, b) {
            (State::ChunkSize { digits, size }, _) if b.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err("chunk size too large");
                }
                let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                State::ChunkSize {
                    digits: digits + 1,
                    size: size << 4 | digit,
                }
            }
            (State::ChunkSize { digits: 0, .. }, _) => return Err("chunk size is not hex"),
            (State::ChunkSize { size, .. }, b'\r') => State::ChunkSizeLf { size },
            (State::ChunkSize { size, .. }, b';') => State::ChunkExt { size },
            // RFC 9112 7.1.1: whitespace (BWS) only before an extension's `;`.
            (State::ChunkSize { size, .. }, b' ' | b'\t') => State::ChunkBws { size },
            (State::ChunkSize { .. }, _) => return Err("chunk size is not hex"),
            (State::ChunkBws { size }, b' ' | b'\t') => State::ChunkBws { size },
            (State::ChunkBws { size }, b';') => State::ChunkExt { size },
            (State::ChunkBws { .. }, _) => {
                return Err("whitespace after a chunk size without an extension");
            }
            (State::ChunkExt { size }, b'\r') => State::ChunkSizeLf { size },
            (State::ChunkExt { .. }, b'\n') => return Err("bare LF in a chunk size line"),
            (State::ChunkExt { size }, _) => State::ChunkExt { size },
            (State::ChunkSizeLf { size: 0 }, b'\n') => State::Trailer,
            (State::ChunkSizeLf { size }, b'\n') => State::ChunkData(size),
            (State::ChunkSizeLf { .. }, _) => return Err("CR without LF in a chunk size line"),
            (State::ChunkDataCr, b'\r') => State::ChunkDataLf,
            (State::ChunkDataLf, b'\n') => State::ChunkSize { digits: 0, size: 0 },
            (State::ChunkDataCr | State::ChunkDataLf, _) => {
                return Err("chunk data not followed by CRLF");
            }
            (state, _) => state,
        };
        Ok(())
    }

    /// A head or trailer line ends at `buf[lf]`; it started at `buf[start]` (after any
    /// partial line kept from earlier reads).
    fn line_end(&mut self, buf: &mut [u8], start: usize, lf: usize) -> Result<(), Fault> {
        let spanned = !self.partial.is_empty();
        let line_owned;
        let line: &[u8] = if !spanned {
            &buf[start..lf]
        } else {
            self.partial.extend_from_slice(&buf[start..lf]);
            line_owned = std::mem::take(&mut self.partial);
            &line_owned
        };
        let Some((&b'\r', line)) = line.split_last() else {
            return Err("bare LF as a line end");
        };
        if self.state == State::Trailer {
            if line.is_empty() {
                self.state = State::Idle;
                self.empty_lines = 0;
            } else if forbidden_in_trailers(line) {
                return Err("a field not allowed in trailers (RFC 9110 6.5.1)");
            }
            return Ok(());
        }
        if self.state == State::Idle {
            // RFC 9112 2.2: an empty line before a request line may be ignored; gunicorn
            // ignores one, and so does unitcorn (more is a client out of step).
            if line.is_empty() {
                self.empty_lines += 1;
                if self.empty_lines > 1 {
                    return Err("more than one empty line before a request line");
                }
                return Ok(());
            }
            self.state = State::Head;
            self.head = HeadFacts::default();
        }
        let head = &mut self.head;
        head.lines += 1;
        if head.lines == 1 {
            // httparse refuses other versions too, but the HTTP/2 preface it answers
            // with a bare close; cut here, it gets gunicorn's 400 like the rest.
            if !(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")) {
                return Err("unsupported HTTP version");
            }
            head.http10 = line.ends_with(b" HTTP/1.0");
            let method = line.iter().position(|&b| b == b' ').unwrap_or(0);
            head.long_target =
                line.len().saturating_sub(method + b" HTTP/1.1".len() + 1) > HYPER_MAX_TARGET;
            head.connect = line.starts_with(b"CONNECT ");
            // RFC 9112 3.2.4: the asterisk form is for a server-wide OPTIONS only.
            if line.split(|&b| b == b' ').nth(1) == Some(b"*") && !line.starts_with(b"OPTIONS ") {
                return Err("asterisk-form target without OPTIONS");
            }
            return Ok(());
        }
        if line.is_empty() {
            self.empty_lines = 0;
            self.long_target_head |= head.long_target;
            // RFC 9112 6.3: a request whose codings do not end in chunked has no length.
            if head.transfer_encoding && !head.chunked {
                return Err("Transfer-Encoding not ending in chunked");
            }
            self.state = if head.connect {
                State::Tunnel
            } else if head.chunked {
                State::ChunkSize { digits: 0, size: 0 }
            } else {
                match head.content_length {
                    Some(0) | None => State::Idle,
                    Some(n) => State::Body(n),
                }
            };
            return Ok(());
        }
        if matches!(line[0], b' ' | b'\t') {
            if !self.permit_folding {
                return Err("obsolete line folding");
            }
            if head.last_was_framing {
                return Err("folded Content-Length or Transfer-Encoding");
            }
            // (field_start is still the previous head's last field here: joining to it
            // would merge this request into that one.)
            if head.lines == 2 {
                return Err("obsolete line folding after the request line");
            }
            // Join the line to the previous one as gunicorn does: the pieces trimmed,
            // one space between them. The previous line must be in this read (hyper has
            // it already otherwise); the bytes the join frees become trailing spaces,
            // which httparse trims from a field value.
            let Some(field_start) = self.field_start.filter(|_| start >= 2 && !spanned) else {
                return Err("obsolete line folding across reads");
            };
            join_fold(buf, field_start, start, lf);
            return Ok(());
        }
        self.field_start = (!spanned).then_some(start);
        head.last_was_framing = false;
        // Lines without a colon and names with spaces are hyper's to refuse.
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Ok(());
        };
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            head.last_was_framing = true;
            if head.content_length.is_some() {
                return Err("repeated Content-Length");
            }
            if head.chunked {
                return Err("both Content-Length and Transfer-Encoding");
            }
            head.content_length = Some(parse_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.last_was_framing = true;
            if head.content_length.is_some() {
                return Err("both Content-Length and Transfer-Encoding");
            }
            if head.http10 {
                return Err("Transfer-Encoding in an HTTP/1.0 request");
            }
            head.transfer_encoding = true;
            // gunicorn's rule: content codings (passed to the app as they are) may come
            // before chunked, chunked exactly once and last.
            for coding in value.split(|&b| b == b',').map(trim_ows) {
                if head.chunked {
                    return Err("a transfer coding after chunked");
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    head.chunked = true;
                } else if !KNOWN_CODINGS.iter().any(|k| coding.eq_ignore_ascii_case(k)) {
                    return Err("unsupported transfer coding");
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-type") {
            // RFC 9110 5.3: a singleton field; two cannot be merged into one meaning.
            if head.content_type {
                return Err("repeated Content-Type");
            }
            head.content_type = true;
        }
        Ok(())
    }
}

/// Codings gunicorn accepts before `chunked` (`identity` is no longer registered, but
/// harmless: it changes nothing).
const KNOWN_CODINGS: [&[u8]; 4] = [b"gzip", b"deflate", b"compress", b"identity"];

/// RFC 9110 6.5.1: fields a trailer must not carry (framing, routing, authentication,
/// as gunicorn lists them); a client sending one is trying to be read two ways.
fn forbidden_in_trailers(line: &[u8]) -> bool {
    const FORBIDDEN: [&[u8]; 6] = [
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"trailer",
        b"authorization",
        b"te",
    ];
    let name = line.split(|&b| b == b':').next().unwrap_or(line);
    FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// Join the folded line `buf[start..lf]` (CR at `lf - 1`) to the field line that starts at
/// `field_start` and ends with the CRLF just before `start`: the field's value without its
/// trailing whitespace, one space, the fold without its surrounding whitespace, then
/// spaces up to the fold's CR.
fn join_fold(buf: &mut [u8], field_start: usize, start: usize, lf: usize) {
    let value_end = field_start + trim_end_ows(&buf[field_start..start - 2]).len();
    let cont = trim_ows(&buf[start..lf - 1]);
    let (from, len) = (
        lf - 1 - cont.len() - trailing_ows(&buf[start..lf - 1]),
        cont.len(),
    );
    buf[value_end] = b' ';
    buf.copy_within(from..from + len, value_end + 1);
    buf[value_end + 1 + len..lf - 1].fill(b' ');
}

fn trim_end_ows(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn trailing_ows(v: &[u8]) -> usize {
    v.len() - trim_end_ows(v).len()
}

fn find_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Optional whitespace around a field value (RFC 9110 5.6.3).
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A Content-Length value: digits only (no sign, no list), as RFC 9110 8.6 has it.
fn parse_length(value: &[u8]) -> Result<u64, Fault> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err("invalid Content-Length");
    }
    Ok(value
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

const HEAD_END: &[u8] = b"\r\n\r\n";

/// How long, and how much, a connection dropped mid-request is drained before it closes.
const LINGER_FOR: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024;

/// The client stream as hyper reads it: scanned by a [`Scanner`], and cut off when a
/// head takes longer than the policy's `header_timeout`.
pub struct StrictIo<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// None once handed to the lingering close.
    inner: Option<S>,
    scanner: Scanner,
    header_timeout: Duration,
    /// Armed while a head is in progress across reads; made on first use only, so a
    /// head that arrives in one read costs no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Told when `armed` changes: a head began, or ended.
    heads: Heads,
    /// A fault was found: from then on hyper reads end of stream.
    refused: bool,
    /// What the fault was, once, for the connection's error log line.
    fault_seen: FaultSeen,
    /// A `101 Switching Protocols` went out: the client's bytes are another protocol's
    /// (WebSocket frames) and pass unscanned.
    tunnel: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> StrictIo<S> {
    pub fn new(inner: S, policy: Policy) -> Self {
        StrictIo {
            inner: Some(inner),
            scanner: Scanner::new(policy.permit_folding),
            header_timeout: policy.header_timeout,
            deadline: None,
            armed: false,
            heads: Heads::default(),
            refused: false,
            fault_seen: Default::default(),
            tunnel: false,
        }
    }

    /// Where the connection learns why it was refused (if it was).
    pub fn fault(&self) -> FaultSeen {
        std::sync::Arc::clone(&self.fault_seen)
    }

    /// What the connection's idle clock watches.
    pub fn heads(&self) -> Heads {
        self.heads.clone()
    }

    fn arm(&mut self) {
        let at = Instant::now() + self.header_timeout;
        match &mut self.deadline {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = true;
        self.heads.began();
    }

    fn disarm(&mut self) {
        if std::mem::take(&mut self.armed) {
            self.heads.ended();
        }
    }

    /// hyper writes a response head in one piece, status line first: a 101 ends HTTP on
    /// this connection (a client sends its frames only once it has read the 101).
    fn watch_for_switch(&mut self, written: &[u8]) {
        if !self.tunnel && written.starts_with(b"HTTP/1.1 101 ") {
            self.tunnel = true;
            self.disarm();
        }
    }

    fn refuse(&mut self, fault: Fault) {
        self.refused = true;
        let _ = self.fault_seen.set(fault);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for StrictIo<S> {
    fn drop(&mut self) {
        // Idle between messages, the client has nothing in flight: a plain close is clean.
        let mid_request =
            self.refused || self.scanner.state != State::Idle || self.scanner.in_head();
        if self.tunnel || !mid_request {
            return;
        }
        if let (Some(inner), Ok(runtime)) =
            (self.inner.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(linger(inner));
        }
    }
}

/// Shut down the sending side (the client reads the answer, then EOF), then read and
/// discard until the client closes too, or for at most [`LINGER_FOR`] / [`LINGER_BYTES`].
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let drain = async {
        // (hyper may have shut it down already: the drain matters either way)
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(LINGER_FOR, drain).await;
}

/// A stream handed to the lingering close reads as ended and takes no writes.
fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for StrictIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refused {
            return Poll::Ready(Ok(()));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if this.tunnel {
            return Pin::new(inner).poll_read(cx, buf);
        }
        let start = buf.filled().len();
        match Pin::new(inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            Poll::Pending => {
                if this.armed
                    && let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    this.disarm();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not finish its request head within header_timeout",
                    )));
                }
                return Poll::Pending;
            }
            other => return other,
        }
        let new = &mut buf.filled_mut()[start..];
        if new.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match this.scanner.scan(new) {
            Verdict::Pass if this.scanner.long_target_head => {
                let _ = this.fault_seen.set(URI_TOO_LONG);
            }
            Verdict::Pass => {}
            Verdict::RefuseHead(at, fault) => {
                new[at] = 0;
                buf.set_filled(start + at + 1);
                // hyper parses a head it holds part of again only once it sees a head's
                // end: without one it would read on, find the end of the stream and close
                // unanswered. The NUL comes first, so the parse still fails there.
                if buf.remaining() >= HEAD_END.len() {
                    buf.put_slice(HEAD_END);
                }
                this.refuse(fault);
                return Poll::Ready(Ok(()));
            }
            Verdict::BreakBody(at, fault) => {
                buf.set_filled(start + at);
                this.refuse(fault);
                return Poll::Ready(Ok(()));
            }
        }
        match (this.scanner.in_head(), this.armed) {
            (true, false) => this.arm(),
            (false, true) => this.disarm(),
            _ => {}
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for StrictIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.watch_for_switch(buf);
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.watch_for_switch(first);
        }
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scan `input` split at every `split` bytes; the verdicts of each piece.
    fn scan_in_pieces(input: &[u8], split: usize, folding: bool) -> (Vec<u8>, Verdict) {
        let mut scanner = Scanner::new(folding);
        let mut out = Vec::new();
        for piece in input.chunks(split.max(1)) {
            let mut piece = piece.to_vec();
            let verdict = scanner.scan(&mut piece);
            match verdict {
                Verdict::Pass => out.extend_from_slice(&piece),
                Verdict::RefuseHead(at, _) => {
                    let at = out.len() + at;
                    return (out, Verdict::RefuseHead(at, "")); // position in the whole input
                }
                other => return (out, other),
            }
        }
        (out, Verdict::Pass)
    }

    /// The same verdict whether the bytes come in one read or byte by byte.
    fn verdict(input: &[u8]) -> Verdict {
        let (_, whole) = scan_in_pieces(input, input.len(), false);
        for split in [1, 2, 3, 7] {
            let (_, pieces) = scan_in_pieces(input, split, false);
            assert_eq!(
                std::mem::discriminant(&pieces),
                std::mem::discriminant(&whole),
                "split {split}: {input:?}"
            );
        }
        whole
    }

    fn refused(input: &[u8]) -> bool {
        matches!(verdict(input), Verdict::RefuseHead(..))
    }

    #[test]
    fn a_whole_head_with_a_target_longer_than_hyper_takes_is_noted() {
        let head = |target_len: usize, end: &str| {
            let mut head = format!(
                "GET /{} HTTP/1.1\r\nHost: x\r\n",
                "a".repeat(target_len - 1)
            );
            head.push_str(end);
            head.into_bytes()
        };
        for (target_len, end, noted) in [
            (HYPER_MAX_TARGET, "\r\n", false),
            (HYPER_MAX_TARGET + 1, "\r\n", true),
            // Not whole: hyper refuses it for its size (431), not its target.
            (HYPER_MAX_TARGET + 1, "X-More: y\r\n", false),
        ] {
            let mut scanner = Scanner::new(false);
            let mut bytes = head(target_len, end);
            assert_eq!(scanner.scan(&mut bytes), Verdict::Pass);
            assert_eq!(
                scanner.long_target_head, noted,
                "target of {target_len} bytes"
            );
        }
    }

    #[test]
    fn well_formed_requests_pass() {
        let requests: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab\ncdGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nab\ncd\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding:  Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 \t;x\r\nabc\r\n0 ;y\r\n\r\n",
            b"GET / HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
            // gunicorn's rule: content codings before chunked, in one line or several.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for r in requests {
            assert_eq!(
                verdict(r),
                Verdict::Pass,
                "{:?}",
                String::from_utf8_lossy(r)
            );
        }
    }

    #[test]
    fn bare_lf_is_refused_in_heads_not_bodies() {
        assert!(refused(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nHost: a\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nHost: a\r\n\n"));
        assert!(refused(b"\nGET / HTTP/1.1\r\n\r\n"));
        assert!(refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.2\r\n\r\n"));
        // The second request's head is checked after the first one's body.
        assert!(refused(
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\n\nGET / HTTP/1.1\nHost: a\r\n\r\n"
        ));
    }

    #[test]
    fn the_refusal_points_at_the_line_end_that_failed() {
        let input = b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n";
        let (_, v) = scan_in_pieces(input, input.len(), false);
        assert_eq!(v, Verdict::RefuseHead(23, ""));
        assert_eq!(input[23], b'\n');
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for r in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: foo, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(refused(r), "{:?}", String::from_utf8_lossy(r));
        }
    }

    #[test]
    fn gunicorns_head_rules_are_refused() {
        for r in [
            &b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Type: a\r\ncontent-type: b\r\n\r\n",
        ] {
            assert!(refused(r), "{:?}", String::from_utf8_lossy(r));
        }
    }

    #[test]
    fn framing_fields_in_trailers_break_the_body() {
        for trailer in [
            "Content-Length: 5",
            "host: a",
            "Transfer-Encoding: chunked",
            "TE: x",
        ] {
            let input = format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{trailer}\r\n\r\n"
            );
            assert!(
                matches!(verdict(input.as_bytes()), Verdict::BreakBody(..)),
                "{trailer}"
            );
        }
        let fine = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r\n\r\n";
        assert_eq!(verdict(fine), Verdict::Pass);
    }

    #[test]
    fn folding_is_refused_unless_permitted() {
        let folded = b"GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n";
        assert!(refused(folded));
        let mut buf = folded.to_vec();
        assert_eq!(Scanner::new(true).scan(&mut buf), Verdict::Pass);
        // gunicorn's join: the pieces trimmed, one space; the rest trailing spaces.
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\nX-A: one two  \r\n\r\n");
        let mut buf = b"GET / HTTP/1.1\r\nX-A: one \t\r\n\t two \r\n   three\r\n\r\n".to_vec();
        assert_eq!(Scanner::new(true).scan(&mut buf), Verdict::Pass);
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text.trim_end_matches("\r\n\r\n").trim_end(),
            "GET / HTTP/1.1\r\nX-A: one two three"
        );
        let mut framing = b"POST / HTTP/1.1\r\nContent-Length:\r\n 3\r\n\r\n".to_vec();
        assert!(matches!(
            Scanner::new(true).scan(&mut framing),
            Verdict::RefuseHead(..)
        ));
    }

    #[test]
    fn a_fold_after_the_request_line_is_refused() {
        // Found by fuzz/'s strict_scanner target: the fold was joined to the last field of
        // the request before it in the same read, its spaces overwriting that head's end
        // and this request line: hyper saw one request where the client sent two.
        let mut pipeline =
            b"GET /a HTTP/1.1\r\nX-A: one\r\n\r\nGET /b HTTP/1.1\r\n two\r\n\r\n".to_vec();
        let unchanged = pipeline.clone();
        let verdict = Scanner::new(true).scan(&mut pipeline);
        assert!(
            matches!(verdict, Verdict::RefuseHead(at, _) if at >= 29),
            "{verdict:?}"
        );
        assert_eq!(
            pipeline[..29],
            unchanged[..29],
            "the first request is left as sent"
        );
        let mut alone = b"GET / HTTP/1.1\r\n two\r\n\r\n".to_vec();
        assert!(matches!(
            Scanner::new(true).scan(&mut alone),
            Verdict::RefuseHead(..)
        ));
    }

    #[test]
    fn broken_chunk_framing_breaks_the_body() {
        for body in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\r\n0\r\nT: 1\n\r\n",
            b"ffffffffffffffffff\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0 \r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
        ] {
            let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            input.extend_from_slice(body);
            assert!(
                matches!(verdict(&input), Verdict::BreakBody(..)),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn in_head_tracks_a_head_spanning_reads() {
        let mut s = Scanner::new(false);
        assert!(!s.in_head());
        assert_eq!(s.scan(&mut b"GE".to_vec()), Verdict::Pass);
        assert!(s.in_head());
        assert_eq!(
            s.scan(&mut b"T / HTTP/1.1\r\nHost: a\r\n".to_vec()),
            Verdict::Pass
        );
        assert!(s.in_head());
        assert_eq!(s.scan(&mut b"\r\n".to_vec()), Verdict::Pass);
        assert!(!s.in_head());
    }
}
