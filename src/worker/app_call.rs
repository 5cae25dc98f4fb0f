//! The app-call core of a WSGI request, one for every place the app runs: build the
//! environ, call the app up to its first chunk ([`begin`]), walk the rest of its
//! iterable ([`walk`]), close it. Inline (the I/O thread, one app thread), on a pool
//! thread (`--threads`, a streamed body) and in a greenlet (gevent) all run it; they
//! differ only in how a chunk reaches the connection.
//!
//! Off the I/O thread the call is handed over the same way everywhere ([`hand_off_to`]):
//! a deadline slot, a oneshot for how the call began, and where the chunks that follow
//! wait for the client. A sync or gthread call (inline or on a pool thread) walks its
//! iterable ahead of the client into a spool (`spool.rs`), which frees its app slot when
//! the iterable is done; a greenlet sends its chunks on a bounded channel and holds its
//! slot until the client has them (it waits on the hub, not on a thread). ASGI apps are
//! not called here (their app-call is the asyncio task of `asgi/http.rs`); the response
//! head they give meets the same check (`response_head.rs`) and the same finish
//! (`responses.rs`).

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::{mpsc, oneshot};

use super::body::{Chunk, ResponseBody};
use super::deadlines::AppSlot;
use super::request_body::{Held, ReadFailure, Spooled};
use super::response_head::Declared;
use super::responses::{answered, error_response, finish, internal_error};
use super::service::Conn;
use super::spool::{Producer, Spool, SpoolLimits};
use super::wsgi::environ::{EnvironBuilder, RequestHead};
use super::wsgi::input::Input;
use super::wsgi::response::{self, AppFailure, AppIter, FileTail, Started};

/// Chunks a greenlet may get ahead of a slow client before it waits.
pub const STREAM_QUEUE_CHUNKS: usize = 8;

/// Where an app call leaves its environ for post_request (set only when that hook is).
pub type EnvironSlot = Arc<std::sync::Mutex<Option<Py<PyAny>>>>;

/// Build the environ of `head` around `input`, call the app and run it up to its first
/// non-empty chunk.
pub fn begin(
    py: Python<'_>,
    app: &Py<PyAny>,
    environ: &EnvironBuilder,
    head: &RequestHead,
    input: Input,
    environ_out: Option<&EnvironSlot>,
) -> Result<Started, AppFailure> {
    let failure = |e: PyErr| AppFailure {
        traceback: crate::python::format_exception(py, &e),
    };
    let input = Bound::new(py, input).map_err(failure)?;
    let env = environ.build(py, head, input.into_any()).map_err(failure)?;
    keep_environ(environ_out, &env);
    response::start(py, app, env)
}

/// Leave the environ where post_request will find it.
fn keep_environ(slot: Option<&EnvironSlot>, environ: &Bound<'_, PyDict>) {
    if let Some(slot) = slot
        && let Ok(mut slot) = slot.lock()
    {
        *slot = Some(environ.clone().into_any().unbind());
    }
}

/// Off the I/O thread: report how the call began. The rest of the iterable is returned
/// for the caller to walk, unless the call is over (no rest, a failure, the client gone:
/// dropping the rest closes it).
pub fn report(
    outcome: Result<Started, AppFailure>,
    started_tx: oneshot::Sender<StartedMsg>,
) -> Option<AppIter> {
    match outcome {
        Ok(started) => {
            let (start, rest) = AppStart::of(started);
            started_tx.send(Ok(start)).ok()?;
            rest
        }
        Err(failure) => {
            let _ = started_tx.send(Err(failure));
            None
        }
    }
}

/// Walk the rest of the iterable into `push`, then close it. `push` gets each chunk, or
/// `Err(())` when the app raised (the response must end in an error, not look complete),
/// and returns false when the client is gone. The GIL is held only for the app's `next()`.
pub fn walk<E>(mut rest: AppIter, mut push: impl FnMut(Chunk) -> Result<bool, E>) -> Result<(), E> {
    let walked = loop {
        let (item, last) = match Python::attach(|py| rest.next_or_log(py)) {
            Ok(Some(chunk)) => (Ok(chunk), false),
            Ok(None) => break Ok(()),
            Err(()) => (Err(()), true),
        };
        match push(item) {
            Ok(true) if !last => {}
            Ok(_) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    Python::attach(|py| rest.close(py));
    walked
}

/// How an app call began, off the I/O thread (an app thread, or a gevent greenlet): the
/// response head, the first chunks, and whether more follow on the chunk channel.
pub struct AppStart {
    pub declared: Declared,
    pub chunks: Vec<Bytes>,
    /// More chunks follow on the channel.
    pub streaming: bool,
    /// A `wsgi.file_wrapper` file sent after `chunks`.
    pub file: Option<FileTail>,
}

pub type StartedMsg = Result<AppStart, AppFailure>;

impl AppStart {
    /// What an app call that began reports to the I/O side, and the rest of its iterable
    /// for the caller to walk.
    fn of(started: Started) -> (AppStart, Option<AppIter>) {
        let Started {
            declared,
            chunks,
            rest,
            file,
        } = started;
        let start = AppStart {
            declared,
            chunks,
            streaming: rest.is_some(),
            file,
        };
        (start, rest)
    }
}

/// The two ends a greenlet reports through.
pub struct Handoff {
    pub started: oneshot::Sender<StartedMsg>,
    pub chunks: mpsc::Sender<Chunk>,
}

/// Where the chunks after the first wait for the client.
enum Rest {
    /// A greenlet's bounded channel: its app slot is held until the client has them.
    Channel(mpsc::Receiver<Chunk>),
    /// An app thread's spool: its app slot is freed when the iterable is done.
    Spool(Arc<Spool>),
}

/// Hand a call to a greenlet: [`hand_off_to`] with a bounded channel for its chunks.
/// `submit` starts the call with the [`Handoff`] ends; `lost` names what ended without a
/// word (a greenlet killed past its deadline); `read_failure` as for [`hand_off_to`].
pub async fn hand_off(
    conn: &Conn,
    head: &RequestHead,
    lost: &'static str,
    read_failure: Option<ReadFailure>,
    submit: impl FnOnce(&AppSlot, Handoff),
) -> Response<ResponseBody> {
    let (chunks, chunk_rx) = mpsc::channel::<Chunk>(STREAM_QUEUE_CHUNKS);
    hand_off_to(
        conn,
        head,
        lost,
        read_failure,
        Rest::Channel(chunk_rx),
        |slot, started| submit(slot, Handoff { started, chunks }),
    )
    .await
}

/// Hand a call to another thread or a greenlet: take an app slot (its deadline), let
/// `submit` start the call, and turn what it reports into the response, its chunks after
/// the first read from `rest`. `read_failure`: where the app's reads of the request body
/// record a failure (a body too large, too slow, cut short), which an app that then fails
/// before its response gets answered with instead of a 500: the client's fault, as it
/// would have been refused before the call.
async fn hand_off_to(
    conn: &Conn,
    head: &RequestHead,
    lost: &'static str,
    read_failure: Option<ReadFailure>,
    rest: Rest,
    submit: impl FnOnce(&AppSlot, oneshot::Sender<StartedMsg>),
) -> Response<ResponseBody> {
    let Some(slot) = conn.worker.deadlines.acquire(&conn.hangup, false).await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "worker stopping");
    };
    let (started, mut started_rx) = oneshot::channel();
    submit(&slot, started);
    let began = tokio::select! {
        biased;
        () = slot.expired() => None,
        began = &mut started_rx => Some(began),
    };
    let Some(began) = began else {
        // Past the deadline: the 504 now, the slot (the call, as the master sees it)
        // until the app call ends.
        slot.keep_until(started_rx);
        return error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout");
    };
    match began {
        Ok(Ok(start)) => started_response(head, slot, start, rest),
        Ok(Err(failure)) => answered(slot, |_| {
            match read_failure.as_ref().and_then(|f| f.get()) {
                Some(body_failed) => {
                    tracing::debug!(
                        "the app failed after its request body did\n{}",
                        failure.traceback.trim_end()
                    );
                    body_failed.refused(&conn.peer, conn.fault.get().copied())
                }
                None => internal_error(&failure),
            }
        }),
        Err(_) => answered(slot, |_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, lost)
        }),
    }
}

/// The response of an app call that began: its head, and a body from the first chunks
/// plus, when the app streams, what waits in `rest`.
fn started_response(
    head: &RequestHead,
    slot: AppSlot,
    start: AppStart,
    rest: Rest,
) -> Response<ResponseBody> {
    let AppStart {
        declared,
        chunks,
        streaming,
        file,
    } = start;
    let len = declared.content_length;
    match rest {
        _ if !streaming => begun(head, slot, declared, ResponseBody::full(chunks, len), file),
        Rest::Channel(chunk_rx) => {
            let body = ResponseBody::channel(chunks, chunk_rx, len);
            begun(head, slot, declared, body, file)
        }
        Rest::Spool(spool) => spooled(head, slot, declared, spool, file),
    }
}

/// The response of a call that began, the app slot held until its body is sent (or the
/// 504, when the deadline answered first).
fn begun(
    head: &RequestHead,
    slot: AppSlot,
    declared: Declared,
    body: ResponseBody,
    file: Option<FileTail>,
) -> Response<ResponseBody> {
    answered(slot, |slot| {
        finish(head, declared, body.then_file(file).hold(slot))
    })
}

/// The response of a call whose body is read from `spool`, which holds the app slot until
/// the producer is done, not until the client is.
fn spooled(
    head: &RequestHead,
    slot: AppSlot,
    declared: Declared,
    spool: Arc<Spool>,
    file: Option<FileTail>,
) -> Response<ResponseBody> {
    let body = ResponseBody::spooled(Arc::clone(&spool), declared.content_length);
    answered(slot, |slot| {
        spool.hold(slot);
        finish(head, declared, body.then_file(file))
    })
}

/// A body given whole goes out as it is when it fits in `response_buffer_size`, or is a
/// file the worker reads itself (`file`); anything else goes through a spool.
fn needs_spool(limits: &SpoolLimits, started: &Started) -> bool {
    started.rest.is_some() || (started.file.is_none() && !limits.fits(&started.chunks))
}

/// On the I/O thread: put the first chunks and the rest of the iterable into the spool,
/// one `next()` at a time, letting hyper write between them (a generator may sleep
/// between yields, and a chunk must not wait for the next one).
async fn produce(producer: Producer, chunks: Vec<Bytes>, rest: Option<AppIter>) {
    for chunk in chunks {
        if !producer.push(chunk).await {
            return;
        }
    }
    let Some(mut rest) = rest else {
        producer.end(Ok(()));
        return;
    };
    let outcome = loop {
        tokio::task::yield_now().await;
        match Python::attach(|py| rest.next_or_log(py)) {
            Ok(Some(chunk)) => {
                if !producer.push(chunk).await {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(()) => break Err(()),
        }
    };
    Python::attach(|py| rest.close(py));
    producer.end(outcome);
}

/// On an app thread: the same, waiting for room without the GIL.
fn produce_blocking(producer: Producer, chunks: Vec<Bytes>, rest: Option<AppIter>) {
    for chunk in chunks {
        if !producer.push_blocking(chunk) {
            return;
        }
    }
    let mut outcome = Ok(());
    if let Some(rest) = rest {
        let _ = walk(rest, |item| {
            Ok::<_, std::convert::Infallible>(match item {
                Ok(chunk) => producer.push_blocking(chunk),
                Err(()) => {
                    outcome = Err(());
                    false
                }
            })
        });
    }
    producer.end(outcome);
}

/// The app on the I/O thread (one app thread, a body held whole): no hand-off; what its
/// iterable yields goes through a spool unless it is held whole already.
pub async fn inline(
    conn: &Conn,
    head: &RequestHead,
    body: Held,
    environ_out: Option<EnvironSlot>,
) -> Response<ResponseBody> {
    let Some(slot) = conn.worker.deadlines.acquire(&conn.hangup, true).await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "worker stopping");
    };
    let outcome = Python::attach(|py| {
        let input = Input::complete(body);
        begin(
            py,
            &conn.worker.app,
            &conn.environ,
            head,
            input,
            environ_out.as_ref(),
        )
    });
    match outcome {
        Ok(started) if needs_spool(&conn.worker.spool, &started) => {
            let Started {
                declared,
                chunks,
                rest,
                file,
            } = started;
            let spool = Spool::new(Arc::clone(&conn.worker.spool));
            tokio::task::spawn_local(produce(Producer::new(&spool), chunks, rest));
            spooled(head, slot, declared, spool, file)
        }
        Ok(started) => {
            let len = started.declared.content_length;
            let body = ResponseBody::full(started.chunks, len);
            begun(head, slot, started.declared, body, started.file)
        }
        Err(failure) => answered(slot, |_| internal_error(&failure)),
    }
}

/// The app on a pool thread, which waits for the client (without the GIL) whenever the
/// response's spool is full.
pub async fn on_pool(
    conn: &Conn,
    head: &RequestHead,
    mut body: Spooled,
    environ_out: Option<EnvironSlot>,
) -> Response<ResponseBody> {
    let read_failure = body.rest.as_mut().map(|reader| reader.failure_watch());
    let spool = Spool::new(Arc::clone(&conn.worker.spool));
    let rest = Rest::Spool(Arc::clone(&spool));
    hand_off_to(
        conn,
        head,
        "app thread lost",
        read_failure,
        rest,
        |_, started_tx| {
            let app = Arc::clone(&conn.worker.app);
            let environ = Arc::clone(&conn.environ);
            let runtime = conn.worker.runtime.clone();
            let limits = Arc::clone(&conn.worker.spool);
            let head = head.clone();
            conn.worker.pool.submit(Box::new(move || {
                let input = Input::of(body, &runtime);
                let outcome = Python::attach(|py| {
                    begin(py, &app, &environ, &head, input, environ_out.as_ref())
                });
                match outcome {
                    Ok(started) if needs_spool(&limits, &started) => {
                        let producer = Producer::new(&spool);
                        // The head first: the client reads nothing before it.
                        let (mut start, rest) = AppStart::of(started);
                        let chunks = std::mem::take(&mut start.chunks);
                        start.streaming = true;
                        if started_tx.send(Ok(start)).is_ok() {
                            produce_blocking(producer, chunks, rest);
                        }
                    }
                    outcome => {
                        let _ = report(outcome, started_tx);
                    }
                }
            }));
        },
    )
    .await
}
