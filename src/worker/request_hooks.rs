//! gunicorn's request hooks around an app call, the same in every worker class:
//! `pre_request(worker, req)` before it, and `post_request(worker, req, environ, resp)`
//! once the response is out. A pre_request that raises is a 500 without the app, as in
//! gunicorn.
//!
//! `environ` is the WSGI environ the app got. An ASGI app gets a scope, not an environ:
//! its post_request is given the WSGI environ the same request would have had (built
//! from the same parsed head as the scope, `wsgi.input` empty), so that hooks written
//! for gunicorn read `PATH_INFO`, `REQUEST_METHOD`… the same way in every class. With
//! hooks set, an ASGI request takes the GIL on the I/O thread for them (only then).
//!
//! It does not build `req` and `resp` (`python/hooks.rs` does), nor call the app.

use std::rc::Rc;

use bytes::Bytes;
use http::{Response, Version};
use pyo3::prelude::*;

use super::app_call::EnvironSlot;
use super::body::ResponseBody;
use super::responses::internal_error;
use super::service::{Call, call_app};
use super::wsgi::input::Input;
use super::wsgi::response::AppFailure;
use crate::python::hooks::{RequestHooks, RequestInfo};

/// The app call between gunicorn's `pre_request(worker, req)` and, once the response is
/// out, `post_request(worker, req, environ, resp)`. A pre_request that raises is a 500
/// without the app, as in gunicorn.
pub async fn around(hooks: &Rc<RequestHooks>, call: Call<'_>) -> Response<ResponseBody> {
    let (conn, head) = (call.conn, call.head);
    let uri = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let info = RequestInfo {
        method: head.method.as_str(),
        uri,
        path: head.uri.path(),
        query: head.uri.query().unwrap_or(""),
        version: if head.version == Version::HTTP_10 {
            (1, 0)
        } else {
            (1, 1)
        },
        headers: &head.headers,
        scheme: if head.forwarded.https {
            "https"
        } else {
            "http"
        },
        peer: (&head.peer.ip, head.peer.port.as_deref()),
    };
    let (mut response, req, environ) = match hooks.before(&info) {
        Ok(req) => {
            let slot = hooks.has_post().then(EnvironSlot::default);
            if let Some(slot) = &slot
                && conn.worker.asgi.is_some()
            {
                asgi_environ(call.conn, call.head, slot);
            }
            let response = call_app(call, slot.clone()).await;
            (response, Some(req), slot)
        }
        Err(traceback) => (internal_error(&AppFailure { traceback }), None, None),
    };
    if let (true, Some(req)) = (hooks.has_post(), req) {
        let hooks = Rc::clone(hooks);
        let status = response.status();
        let headers = response.headers().clone();
        let body = std::mem::replace(response.body_mut(), ResponseBody::empty());
        *response.body_mut() = body.on_done(Box::new(move |sent| {
            let environ = environ.and_then(|slot| slot.lock().ok()?.take());
            hooks.after(&req, environ, status, &headers, sent);
        }));
    }
    response
}

/// The environ post_request gets for an ASGI request (see the module doc).
fn asgi_environ(
    conn: &super::service::Conn,
    head: &super::wsgi::environ::RequestHead,
    slot: &EnvironSlot,
) {
    let built = Python::attach(|py| -> PyResult<Py<PyAny>> {
        let input = Bound::new(py, Input::buffered(Bytes::new()))?;
        Ok(conn
            .environ
            .build(py, head, input.into_any())?
            .into_any()
            .unbind())
    });
    match built {
        Ok(environ) => {
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(environ);
            }
        }
        Err(e) => tracing::error!("cannot build the environ for post_request: {e}"),
    }
}
