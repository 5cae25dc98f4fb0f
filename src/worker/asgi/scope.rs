//! The ASGI `scope` of an HTTP request or a WebSocket (ASGI 3, HTTP spec 2.4).

use std::sync::Arc;

use http::Version;
use http::header::SEC_WEBSOCKET_PROTOCOL;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::{IntoPyObjectExt, intern};

use super::AppCtx;
use crate::worker::wsgi::environ::RequestHead;

/// What a request's scope is built from, moved to the loop thread.
pub struct ScopeSource {
    pub head: RequestHead,
    /// The listener's own address (TCP), `None` for a unix socket.
    pub server: Option<(Arc<str>, u16)>,
    /// A WebSocket's scope, not an HTTP request's.
    pub websocket: bool,
}

pub fn build<'py>(
    py: Python<'py>,
    ctx: &AppCtx,
    src: &ScopeSource,
) -> PyResult<Bound<'py, PyDict>> {
    let head = &src.head;
    let scope = PyDict::new(py);
    let https = head.forwarded.https;
    if src.websocket {
        scope.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
        let scheme = if https {
            intern!(py, "wss")
        } else {
            intern!(py, "ws")
        };
        scope.set_item(intern!(py, "scheme"), scheme)?;
        let protocols = PyList::empty(py);
        for value in head.headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
            if let Ok(value) = value.to_str() {
                for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    protocols.append(p)?;
                }
            }
        }
        scope.set_item(intern!(py, "subprotocols"), protocols)?;
    } else {
        scope.set_item(intern!(py, "type"), intern!(py, "http"))?;
        let scheme = if https {
            intern!(py, "https")
        } else {
            intern!(py, "http")
        };
        scope.set_item(intern!(py, "scheme"), scheme)?;
        scope.set_item(intern!(py, "method"), head.method.as_str())?;
    }
    scope.set_item(intern!(py, "asgi"), ctx.asgi_info.bind(py))?;
    let version = match head.version {
        Version::HTTP_10 => intern!(py, "1.0"),
        _ => intern!(py, "1.1"),
    };
    scope.set_item(intern!(py, "http_version"), version)?;

    let raw_path = head.uri.path();
    let root_path = head
        .forwarded
        .script_name
        .as_deref()
        .unwrap_or(&ctx.root_path);
    let decoded = percent_decode_utf8(raw_path);
    let path = full_path(root_path, decoded);
    scope.set_item(intern!(py, "path"), path)?;
    scope.set_item(
        intern!(py, "raw_path"),
        PyBytes::new(py, raw_path.as_bytes()),
    )?;
    scope.set_item(
        intern!(py, "query_string"),
        PyBytes::new(py, head.uri.query().unwrap_or("").as_bytes()),
    )?;
    scope.set_item(intern!(py, "root_path"), root_path)?;

    let headers = PyList::empty(py);
    for (name, value) in &head.headers {
        // As in the environ (and gunicorn's parser): a name with `_` could pose as a
        // dash-named one downstream.
        if name.as_str().contains('_') {
            continue;
        }
        let pair = PyTuple::new(
            py,
            [
                ctx.header_name(py, name).into_any(),
                PyBytes::new(py, value.as_bytes()).into_any(),
            ],
        )?;
        headers.append(pair)?;
    }
    scope.set_item(intern!(py, "headers"), headers)?;

    let client = match &head.peer.port {
        Some(port) => (&*head.peer.ip, port.parse::<u16>().unwrap_or(0)).into_bound_py_any(py)?,
        None => py.None().into_bound(py),
    };
    scope.set_item(intern!(py, "client"), client)?;
    let server = match &src.server {
        Some((host, port)) => (&**host, *port).into_bound_py_any(py)?,
        None => py.None().into_bound(py),
    };
    scope.set_item(intern!(py, "server"), server)?;
    if let Some(state) = &ctx.state {
        // A shallow copy per request, as the spec asks: the app may add to its own.
        scope.set_item(intern!(py, "state"), state.bind(py).copy()?)?;
    }
    Ok(scope)
}

/// `path`: the percent-decoded path as UTF-8 (what uvicorn gives; undecodable bytes
/// become U+FFFD).
fn percent_decode_utf8(path: &str) -> String {
    if !path.contains('%') {
        return path.to_owned();
    }
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// The scope's `path` includes `root_path` (ASGI spec 2.x): a proxy that kept the prefix
/// sent it already, one that stripped it did not.
fn full_path(root_path: &str, path: String) -> String {
    if root_path.is_empty() || path.starts_with(root_path) {
        path
    } else {
        format!("{}{}", root_path.trim_end_matches('/'), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_decoded_utf8_under_the_root_path() {
        assert_eq!(percent_decode_utf8("/caf%C3%A9"), "/café");
        assert_eq!(percent_decode_utf8("/a%20b"), "/a b");
        assert_eq!(full_path("", "/x".into()), "/x");
        assert_eq!(full_path("/api", "/x".into()), "/api/x");
        assert_eq!(full_path("/api", "/api/x".into()), "/api/x");
        assert_eq!(full_path("/api/", "/x".into()), "/api/x");
    }
}
