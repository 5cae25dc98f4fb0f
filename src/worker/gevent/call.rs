//! The tokio side of a gevent request: take a deadline entry, queue the request for the
//! hub, and turn what its greenlet reports into the response hyper writes.
//!
//! Nothing here takes the GIL: the head, chunks and channel ends are plain Rust values.

use std::sync::Arc;

use http::{Response, StatusCode};
use tokio::sync::{mpsc, oneshot};

use super::bridge::Job;
use super::request::RequestJob;
use crate::worker::body::{Chunk, ResponseBody};
use crate::worker::service::{
    BodySource, Conn, answered, error_response, internal_error, started_response,
};
use crate::worker::wsgi::environ::RequestHead;

/// Chunks a greenlet may get ahead of a slow client before it waits.
const STREAM_QUEUE_CHUNKS: usize = 8;

pub(in crate::worker) async fn call(
    conn: &Conn,
    head: &RequestHead,
    body: BodySource,
) -> Response<ResponseBody> {
    let worker = &conn.worker;
    let Some(bridge) = &worker.gevent else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "no gevent hub");
    };
    let Some(slot) = worker.deadlines.acquire(&conn.socket).await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "worker stopping");
    };
    let (started_tx, started_rx) = oneshot::channel();
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(STREAM_QUEUE_CHUNKS);
    let job = RequestJob {
        id: bridge.register(slot.index()),
        head: head.clone(),
        body,
        environ: Arc::clone(&conn.environ),
        started: started_tx,
        chunks: chunk_tx,
        runtime: worker.runtime.clone(),
        bridge: Arc::clone(bridge),
        body_timeout: worker.body_timeout,
        body_limit: worker.limits.body,
    };
    bridge.push(Job::Start(Box::new(job)));
    match started_rx.await {
        Ok(Ok(start)) => started_response(head, slot, start, chunk_rx),
        Ok(Err(failure)) => answered(slot, |_| internal_error(&failure)),
        // The greenlet ended without a word: killed past its deadline (answered 504
        // already), or the hub is gone.
        Err(_) => answered(slot, |_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "request greenlet lost")
        }),
    }
}
