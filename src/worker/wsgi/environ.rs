//! The PEP 3333 `environ` dict of one request.
//!
//! Everything that is the same for every request on a listener is built once into a
//! template that each request copies (`dict.copy()` is one C call); only the request's own
//! keys are set per request. Header keys (`HTTP_USER_AGENT`…) are cached as Python strings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, Method, Uri, Version};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::{IntoPyObjectExt, intern};

use crate::worker::forwarded::Forwarded;

/// Where a request came from, as the environ reports it: formatted once per connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `REMOTE_ADDR`; empty for a unix-socket client.
    pub ip: Arc<str>,
    /// `REMOTE_PORT`; `None` for a unix-socket client.
    pub port: Option<Arc<str>>,
    /// A trusted proxy (`forwarded_allow_ips`): its forwarding headers count.
    pub trusted: bool,
    /// The address the client connected to, from a PROXY header: gunicorn's
    /// `PROXY_PROTOCOL`, `PROXY_ADDR` and `PROXY_PORT`.
    pub proxied_to: Option<SocketAddr>,
}

impl Peer {
    pub fn new(addr: Option<SocketAddr>, trusted: bool) -> Self {
        match addr {
            Some(addr) => Peer {
                ip: addr.ip().to_string().into(),
                port: Some(addr.port().to_string().into()),
                trusted,
                proxied_to: None,
            },
            None => Peer {
                ip: "".into(),
                port: None,
                trusted,
                proxied_to: None,
            },
        }
    }
}

/// The parts of a request the environ is built from.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub peer: Peer,
    /// What a trusted proxy said (scheme, mount point).
    pub forwarded: Forwarded,
}

/// Per-worker, per-listener state for building environs.
pub struct EnvironBuilder {
    template: Py<PyDict>,
    /// The listener's own address, for `SERVER_NAME`/`SERVER_PORT` when there is no Host.
    server_name: String,
    /// A unix-socket listener: `SERVER_NAME`/`SERVER_PORT` come from each request's Host.
    server_from_host: bool,
    /// The listener's address (TCP).
    server: Option<(Arc<str>, u16)>,
    script_name: String,
    header_keys: Mutex<HashMap<HeaderName, Py<PyString>>>,
}

impl EnvironBuilder {
    /// `statics` holds the keys shared by every request (`wsgi.*`, `SCRIPT_NAME`…). A TCP
    /// listener's address is its `SERVER_NAME`/`SERVER_PORT` (RFC 3875, gunicorn); a unix
    /// socket (`server_port` None) leaves them to the Host header.
    pub fn new(
        py: Python<'_>,
        statics: &Bound<'_, PyDict>,
        server_name: String,
        server_port: Option<String>,
        script_name: String,
    ) -> PyResult<Self> {
        let template = statics.copy()?;
        template.set_item(intern!(py, "SCRIPT_NAME"), script_name.as_str())?;
        if let Some(port) = &server_port {
            template.set_item(intern!(py, "SERVER_NAME"), server_name.as_str())?;
            template.set_item(intern!(py, "SERVER_PORT"), port.as_str())?;
        }
        let server = server_port
            .as_deref()
            .and_then(|p| p.parse().ok())
            .map(|port| (Arc::from(server_name.as_str()), port));
        Ok(EnvironBuilder {
            template: template.unbind(),
            server_name,
            server_from_host: server_port.is_none(),
            server,
            script_name,
            header_keys: Mutex::new(HashMap::new()),
        })
    }

    /// The listener's address (TCP), for an ASGI scope's `server`.
    pub fn server(&self) -> Option<(Arc<str>, u16)> {
        self.server.clone()
    }

    /// The environ for `head`; `input` becomes `wsgi.input`.
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        head: &RequestHead,
        input: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        env.set_item(intern!(py, "wsgi.input"), input)?;
        env.set_item(intern!(py, "REQUEST_METHOD"), head.method.as_str())?;
        env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol(head.version))?;

        if head.forwarded.https {
            env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
        }
        let script_name = match &head.forwarded.script_name {
            Some(name) => {
                env.set_item(intern!(py, "SCRIPT_NAME"), name.as_str())?;
                name.as_str()
            }
            None => self.script_name.as_str(),
        };
        let path = head.uri.path();
        let path_info = match &head.forwarded.path_info {
            Some(path_info) => path_info.clone(),
            None => percent_decode_latin1(path),
        };
        let path_info = match path_info.strip_prefix(script_name) {
            Some(rest) if !script_name.is_empty() => rest.to_owned(),
            _ => path_info,
        };
        env.set_item(intern!(py, "PATH_INFO"), path_info)?;
        env.set_item(intern!(py, "QUERY_STRING"), head.uri.query().unwrap_or(""))?;
        // RAW_URI is the target as sent; an absolute-form one keeps its scheme and host.
        if head.uri.scheme().is_some() {
            env.set_item(intern!(py, "RAW_URI"), head.uri.to_string())?;
        } else {
            let raw_uri = head.uri.path_and_query().map_or(path, |pq| pq.as_str());
            env.set_item(intern!(py, "RAW_URI"), raw_uri)?;
        }

        env.set_item(intern!(py, "REMOTE_ADDR"), &*head.peer.ip)?;
        if let Some(port) = &head.peer.port {
            env.set_item(intern!(py, "REMOTE_PORT"), &**port)?;
        }
        if let Some(to) = head.peer.proxied_to {
            let protocol = if to.is_ipv4() { "TCP4" } else { "TCP6" };
            env.set_item(intern!(py, "PROXY_PROTOCOL"), protocol)?;
            env.set_item(intern!(py, "PROXY_ADDR"), to.ip().to_string())?;
            env.set_item(intern!(py, "PROXY_PORT"), to.port().to_string())?;
        }

        if self.server_from_host {
            // A unix socket has no port: like gunicorn, take SERVER_* from the Host header.
            let (name, port) = match head.headers.get(HOST).and_then(|h| h.to_str().ok()) {
                Some(host) => split_host(host),
                None => (self.server_name.as_str(), ""),
            };
            env.set_item(intern!(py, "SERVER_NAME"), name)?;
            env.set_item(intern!(py, "SERVER_PORT"), port)?;
        }

        self.set_headers(py, &env, &head.headers)?;
        Ok(env)
    }

    fn set_headers(
        &self,
        py: Python<'_>,
        env: &Bound<'_, PyDict>,
        headers: &HeaderMap,
    ) -> PyResult<()> {
        for name in headers.keys() {
            // A header named with `_` could pose as a dash-named one once mapped to
            // HTTP_*; gunicorn drops them, and so do we.
            if name.as_str().contains('_') {
                continue;
            }
            let mut values = headers.get_all(name).iter();
            let Some(first) = values.next() else { continue };
            let value: Bound<'_, PyAny> = match values.next() {
                None => latin1(py, first.as_bytes())?,
                Some(second) => {
                    let mut joined = first.as_bytes().to_vec();
                    for v in std::iter::once(second).chain(values) {
                        joined.push(b',');
                        joined.extend_from_slice(v.as_bytes());
                    }
                    latin1(py, &joined)?
                }
            };
            if name == CONTENT_TYPE {
                env.set_item(intern!(py, "CONTENT_TYPE"), value)?;
            } else if name == CONTENT_LENGTH {
                env.set_item(intern!(py, "CONTENT_LENGTH"), value)?;
            } else {
                let key = self.header_key(py, name);
                env.set_item(key, value)?;
            }
        }
        Ok(())
    }

    fn header_key<'py>(&self, py: Python<'py>, name: &HeaderName) -> Bound<'py, PyString> {
        // Clients send few distinct header names; the cap keeps a hostile client from
        // growing the cache without bound.
        const MAX_CACHED_KEYS: usize = 256;
        // Only app threads holding the GIL get here, so the lock is never contended.
        let mut cache = self.header_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = cache.get(name) {
            return key.bind(py).clone();
        }
        let mut key = String::with_capacity(5 + name.as_str().len());
        key.push_str("HTTP_");
        key.extend(name.as_str().chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        let key = PyString::intern(py, &key);
        if cache.len() < MAX_CACHED_KEYS {
            cache.insert(name.clone(), key.clone().unbind());
        }
        key
    }
}

/// `SERVER_PROTOCOL`, and the access log's `%(H)s`.
pub(crate) fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// `host[:port]` or `[v6]:port` from a Host header.
fn split_host(host: &str) -> (&str, &str) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((addr, after)) = rest.split_once(']')
    {
        return (addr, after.strip_prefix(':').unwrap_or("80"));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port),
        _ => (host, "80"),
    }
}

/// A header value as the `str` PEP 3333 asks for: each byte one latin-1 code point.
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if bytes.is_ascii() {
        let s = std::str::from_utf8(bytes).expect("ASCII is UTF-8");
        return PyString::new(py, s).into_bound_py_any(py);
    }
    let s: String = bytes.iter().map(|&b| b as char).collect();
    PyString::new(py, &s).into_bound_py_any(py)
}

/// `PATH_INFO`: the path percent-decoded, each resulting byte one latin-1 code point.
pub(crate) fn percent_decode_latin1(path: &str) -> String {
    if !path.contains('%') {
        return path.to_owned();
    }
    percent_encoding::percent_decode_str(path)
        .map(|b| b as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_info_is_latin1_of_the_decoded_bytes() {
        assert_eq!(percent_decode_latin1("/caf%C3%A9"), "/caf\u{c3}\u{a9}");
        assert_eq!(percent_decode_latin1("/a%20b"), "/a b");
        assert_eq!(percent_decode_latin1("/plain"), "/plain");
    }

    #[test]
    fn host_header_splits_into_name_and_port() {
        assert_eq!(split_host("example.com:8080"), ("example.com", "8080"));
        assert_eq!(split_host("example.com"), ("example.com", "80"));
        assert_eq!(split_host("[::1]:8000"), ("::1", "8000"));
        assert_eq!(split_host("[::1]"), ("::1", "80"));
    }
}
