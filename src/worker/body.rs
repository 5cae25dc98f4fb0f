//! The response body handed to hyper, for every worker class: the chunks the app produced,
//! then what a sync or gthread call left in its spool (`spool.rs`), or the chunks a
//! greenlet sends on a channel, or an ASGI app's sends; a `wsgi.file_wrapper` file is
//! read as hyper asks for it (`file_body.rs`).
//!
//! It enforces the app's own Content-Length, the same for every worker class: never more
//! bytes than declared, and a body that does not match ends the connection, logged as the
//! app's mistake. A short body ends in an error, so that hyper closes the connection
//! instead of desyncing it. A body given whole that is too long is cut to the declared
//! length (`responses::finish` has said `Connection: close` in its head); one that
//! overruns mid-stream ends in an error where it overruns.
//!
//! It does not produce chunks (`app_call.rs`, `asgi/http.rs` do) nor decide the head.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use pyo3::Python;
use tokio::sync::mpsc;

use super::deadlines::AppSlot;
use super::file_body::{FileBody, Truncated};
use super::spool::Spool;
use super::wsgi::response::{AppIter, FileTail};

/// Why a body ended early; hyper aborts the connection on it.
#[derive(Debug)]
pub struct BodyError(&'static str);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BodyError {}

/// A chunk from a pool thread, or the news that the app raised mid-stream.
pub type Chunk = Result<Bytes, ()>;

enum Source {
    Done,
    /// What the app's iterable produced ahead of the client (sync, gthread).
    Spool(Arc<Spool>),
    /// A greenlet walks the iterable and sends the chunks.
    Channel(mpsc::Receiver<Chunk>),
    /// Another producer (an ASGI app's `send`).
    Stream(ChunkStream),
}

/// Chunks from a producer that is neither an iterable nor a pool thread.
pub type ChunkStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Chunk>>>;

pub struct ResponseBody {
    queued: VecDeque<Bytes>,
    source: Source,
    /// Bytes the app's Content-Length still allows.
    remaining: Option<u64>,
    /// The app slot this response holds until its body is done.
    slot: Option<AppSlot>,
    /// A `wsgi.file_wrapper` file, sent after `queued`.
    file: Option<FileBody>,
    /// The iterable of `file`, to close once the body is out.
    closer: Option<AppIter>,
    /// Called once with the number of body bytes sent, when the body ends or is dropped.
    on_done: Option<Box<dyn FnOnce(u64)>>,
    sent: u64,
    /// A chunk went out since the source was last asked for more: before a short body's
    /// error, let hyper write it.
    flush_first: bool,
    /// The body was given whole: bytes past the Content-Length are cut, not an error
    /// (the head says the connection closes).
    whole: bool,
}

impl ResponseBody {
    pub fn empty() -> Self {
        Self::full(Vec::new(), None)
    }

    pub fn full(chunks: Vec<Bytes>, declared_len: Option<u64>) -> Self {
        let mut body = Self::new(chunks, Source::Done, declared_len);
        body.whole = true;
        body
    }

    /// A body given whole that is longer than its Content-Length: its length, and the
    /// declared one.
    pub fn overrun(&self) -> Option<(u64, u64)> {
        let declared = self.remaining?;
        if !self.whole {
            return None;
        }
        let len: u64 = self.queued.iter().map(|c| c.len() as u64).sum();
        (len > declared).then_some((len, declared))
    }

    fn new(chunks: Vec<Bytes>, source: Source, declared_len: Option<u64>) -> Self {
        ResponseBody {
            queued: chunks.into(),
            source,
            remaining: declared_len,
            slot: None,
            file: None,
            closer: None,
            on_done: None,
            sent: 0,
            flush_first: false,
            whole: false,
        }
    }

    pub fn spooled(spool: Arc<Spool>, declared_len: Option<u64>) -> Self {
        Self::new(Vec::new(), Source::Spool(spool), declared_len)
    }

    pub fn channel(
        chunks: Vec<Bytes>,
        rx: mpsc::Receiver<Chunk>,
        declared_len: Option<u64>,
    ) -> Self {
        Self::new(chunks, Source::Channel(rx), declared_len)
    }

    pub fn stream(stream: ChunkStream, declared_len: Option<u64>) -> Self {
        Self::new(Vec::new(), Source::Stream(stream), declared_len)
    }

    /// Send `tail`'s file after the chunks, and close its iterable once the body is out.
    pub fn then_file(mut self, tail: Option<FileTail>) -> Self {
        if let Some(FileTail { file, closer }) = tail {
            self.file = Some(file);
            self.closer = Some(closer);
        }
        self
    }

    /// The bytes left in the file, if there is one.
    fn file_left(&self) -> u64 {
        self.file.as_ref().map_or(0, FileBody::left)
    }

    pub fn hold(mut self, slot: AppSlot) -> Self {
        self.slot = Some(slot);
        self
    }

    /// Call `f` with the bytes sent once the body is done; after any callback given
    /// before (the access log and post_request both wait for the end).
    pub fn on_done(mut self, f: Box<dyn FnOnce(u64)>) -> Self {
        self.on_done = Some(match self.on_done.take() {
            Some(first) => Box::new(move |sent| {
                first(sent);
                f(sent);
            }),
            None => f,
        });
        self
    }

    /// Stop producing: close the app's iterable (its producer stops at its next chunk)
    /// and free the app slot.
    fn finish(&mut self) {
        if let Source::Spool(spool) = std::mem::replace(&mut self.source, Source::Done) {
            spool.reader_gone();
        }
        if let Some(mut iter) = self.closer.take() {
            Python::attach(|py| iter.close(py));
        }
        self.file = None;
        self.slot = None;
        if let Some(done) = self.on_done.take() {
            done(self.sent);
        }
    }

    /// Trim a chunk to what the declared Content-Length still allows; `Err` for a
    /// streamed chunk that overruns it.
    fn admit(&mut self, mut chunk: Bytes) -> Result<Option<Bytes>, BodyError> {
        if let Some(remaining) = self.remaining.as_mut() {
            if *remaining == 0 {
                return Ok(None);
            }
            if chunk.len() as u64 > *remaining {
                if !self.whole {
                    let declared = self.sent + *remaining;
                    tracing::error!(
                        "Error handling request: the app's response body is longer than \
                         its Content-Length ({declared} bytes); the connection is closed"
                    );
                    return Err(BodyError("the app sent more than its Content-Length"));
                }
                chunk.truncate(*remaining as usize);
            }
            *remaining -= chunk.len() as u64;
        }
        self.sent += chunk.len() as u64;
        Ok(Some(chunk))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            if this.remaining == Some(0) {
                // Everything declared is out: the rest of the iterable is never sent.
                this.finish();
                return Poll::Ready(None);
            }
            if let Some(chunk) = this.queued.pop_front() {
                match this.admit(chunk) {
                    Ok(Some(chunk)) => {
                        this.flush_first = true;
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        this.finish();
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            if let Some(file) = this.file.as_mut() {
                match file.next_chunk() {
                    Ok(Some(chunk)) => {
                        this.queued.push_back(chunk);
                        continue;
                    }
                    Ok(None) => this.file = None,
                    Err(why) => {
                        match why {
                            Ok(Truncated { sent, expected }) => tracing::error!(
                                "Error handling request: the file given to wsgi.file_wrapper \
                                 ended after {sent} of its {expected} bytes (truncated while \
                                 it was sent); the connection is closed"
                            ),
                            Err(e) => tracing::error!(
                                "Error handling request: cannot read the file given to \
                                 wsgi.file_wrapper: {e}; the connection is closed"
                            ),
                        }
                        this.finish();
                        return Poll::Ready(Some(Err(BodyError("the file could not be read"))));
                    }
                }
            }
            let next = match &mut this.source {
                Source::Done => None,
                Source::Spool(spool) => match ready!(spool.poll_next(cx)) {
                    Some(Err(())) => {
                        this.finish();
                        return Poll::Ready(Some(Err(BodyError("the app raised mid-response"))));
                    }
                    next => next.map(Result::unwrap_or_default),
                },
                // An app thread's or greenlet's channel, or an ASGI app's sends.
                Source::Stream(stream) => match ready!(stream.as_mut().poll_next(cx)) {
                    Some(Err(())) => {
                        this.finish();
                        return Poll::Ready(Some(Err(BodyError("the app failed mid-response"))));
                    }
                    next => next.map(Result::unwrap_or_default),
                },
                Source::Channel(rx) => match ready!(rx.poll_recv(cx)) {
                    Some(Err(())) => {
                        this.finish();
                        return Poll::Ready(Some(Err(BodyError("the app raised mid-response"))));
                    }
                    next => next.map(Result::unwrap_or_default),
                },
            };
            match next {
                Some(chunk) => this.queued.push_back(chunk),
                None => {
                    let short = this.remaining.filter(|&r| r > 0);
                    if short.is_some() && std::mem::take(&mut this.flush_first) {
                        // hyper drops what it holds on an error: let it write the bytes
                        // the app did send first (Pending with an immediate wake).
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.finish();
                    return Poll::Ready(match short {
                        // The app declared more than it sent: the client must not wait
                        // for bytes that never come, nor read the next response as body.
                        Some(missing) => {
                            tracing::error!(
                                "Error handling request: the app's response body ({} \
                                 bytes) is shorter than its Content-Length ({} bytes); \
                                 the connection is closed",
                                this.sent,
                                this.sent + missing
                            );
                            Some(Err(BodyError("the app sent less than its Content-Length")))
                        }
                        None => None,
                    });
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A body short of its Content-Length is not at its end: the next poll reports it.
        match self.remaining {
            Some(remaining) => remaining == 0,
            None => {
                matches!(self.source, Source::Done)
                    && self.queued.is_empty()
                    && self.file_left() == 0
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(remaining) = self.remaining {
            return SizeHint::with_exact(remaining);
        }
        match self.source {
            Source::Done => SizeHint::with_exact(
                self.queued.iter().map(|c| c.len() as u64).sum::<u64>() + self.file_left(),
            ),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish();
    }
}
