//! The tokio side of a gevent request: hand the call to the hub (`app_call::hand_off`,
//! the same hand-off as a pool thread's), as a [`RequestJob`] its greenlet runs.
//!
//! Nothing here takes the GIL: the head, chunks and channel ends are plain Rust values.

use std::sync::Arc;

use http::{Response, StatusCode};

use super::bridge::Job;
use super::request::RequestJob;
use crate::worker::app_call::{self, EnvironSlot, Handoff};
use crate::worker::body::ResponseBody;
use crate::worker::request_body::Spooled;
use crate::worker::responses::error_response;
use crate::worker::service::Conn;
use crate::worker::wsgi::environ::RequestHead;

pub(in crate::worker) async fn call(
    conn: &Conn,
    head: &RequestHead,
    mut body: Spooled,
    environ_out: Option<EnvironSlot>,
) -> Response<ResponseBody> {
    let worker = &conn.worker;
    let Some(bridge) = &worker.gevent else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "no gevent hub");
    };
    // A greenlet that ends without a word was killed past its deadline (answered 504
    // already), or the hub is gone.
    let read_failure = body.rest.as_mut().map(|reader| reader.failure_watch());
    app_call::hand_off(
        conn,
        head,
        "request greenlet lost",
        read_failure,
        |slot, handoff| {
            let Handoff { started, chunks } = handoff;
            let job = RequestJob {
                id: bridge.register(slot.index()),
                head: head.clone(),
                body,
                environ: Arc::clone(&conn.environ),
                environ_out,
                started,
                chunks,
                runtime: worker.runtime.clone(),
                bridge: Arc::clone(bridge),
            };
            bridge.push(Job::Start(Box::new(job)));
        },
    )
    .await
}
