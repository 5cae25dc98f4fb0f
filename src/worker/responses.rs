//! The responses every worker class finishes with: the app's declared head made into
//! hyper's response (`finish`), and unitcorn's own answers: a 500 for an app that failed
//! before its response started, a refusal of a bad request, a 504 when the deadline
//! answered first.
//!
//! It decides nothing about the app's headers (`response_head.rs` checked them) nor about
//! the body's bytes (`body.rs` enforces its Content-Length).

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use hyper::body::Body;

use super::body::ResponseBody;
use super::deadlines::AppSlot;
use super::response_head::Declared;
use super::wsgi::environ::{Peer, RequestHead};
use super::wsgi::response::AppFailure;

/// The response for what the app declared; no body where HTTP allows none.
pub fn finish(
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
    let mut close = declared.close;
    if !bodiless && let Some((len, declared)) = body.overrun() {
        tracing::error!(
            "Error handling request {}: the app's response body ({len} bytes) is longer \
             than its Content-Length ({declared} bytes); only {declared} bytes are sent and \
             the connection is closed",
            head.uri.path()
        );
        close = true;
    }
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
    if close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

pub fn internal_error(failure: &AppFailure) -> Response<ResponseBody> {
    tracing::error!("Error handling request\n{}", failure.traceback.trim_end());
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

/// A response of unitcorn's own; the connection is closed after it.
pub fn error_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
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
pub fn refuse(peer: &Peer, status: StatusCode, why: &str) -> Response<ResponseBody> {
    tracing::info!("Invalid request from ip={}: {why}", peer.ip);
    error_response(status, status.canonical_reason().unwrap_or(why))
}

/// The response, unless the deadline answered 504 for this call already (the connection
/// is closed then, and the worker about to be replaced).
pub fn answered(
    slot: AppSlot,
    response: impl FnOnce(AppSlot) -> Response<ResponseBody>,
) -> Response<ResponseBody> {
    if slot.answer() {
        response(slot)
    } else {
        error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
    }
}
