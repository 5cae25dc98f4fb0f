//! What a request leaves behind once its response is out: the access log line and the
//! StatsD metrics, with the bytes actually sent and the full duration (as gunicorn
//! measures them); and the log of a connection that ended in an error.
//!
//! It does not decide the response; it only watches it go.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, Response};

use super::body::ResponseBody;
use super::service::Worker;
use super::wsgi::environ::{Peer, RequestHead};
use crate::logging::{AccessLog, AccessRecord};

/// What happens once a response is out: its access log line, its metrics.
pub struct Done {
    pub log: Option<Rc<AccessLog>>,
    pub metrics: Option<Rc<super::metrics::RequestMetrics>>,
}

impl Done {
    /// Wrap the body so that both happen once it is sent (or dropped), with the bytes
    /// actually sent and the full duration, as gunicorn measures them.
    pub fn when_sent(
        self,
        peer: &Peer,
        head: RequestHead,
        response: &mut Response<ResponseBody>,
        received: (SystemTime, Instant),
    ) {
        let status = response.status().as_u16();
        let log = self
            .log
            .map(|log| log_when_done(log, peer, head, response.headers(), status, received));
        let metrics = self.metrics;
        let body = std::mem::replace(response.body_mut(), ResponseBody::empty());
        *response.body_mut() = body.on_done(Box::new(move |sent| {
            if let Some(log) = log {
                log(sent);
            }
            if let Some(metrics) = metrics {
                metrics.record(status, received.1.elapsed());
            }
        }));
    }
}

/// What writes the access log line once the body is out (gunicorn logs at the end too,
/// with the bytes actually sent and the full duration).
fn log_when_done(
    log: Rc<AccessLog>,
    peer: &Peer,
    head: RequestHead,
    headers: &HeaderMap,
    status: u16,
    (start, began): (SystemTime, Instant),
) -> impl FnOnce(u64) + use<> {
    let response_headers = if log.format().uses_response_headers() {
        headers.clone()
    } else {
        HeaderMap::new()
    };
    let peer = peer.clone();
    move |sent| {
        let environ = [("REMOTE_PORT", peer.port.as_deref().unwrap_or(""))];
        let record = AccessRecord {
            remote_addr: &peer.ip,
            method: head.method.as_str(),
            path: head.uri.path(),
            query: head.uri.query().unwrap_or(""),
            protocol: super::wsgi::environ::protocol(head.version),
            status,
            body_bytes: sent,
            request_headers: &head.headers,
            response_headers: &response_headers,
            start,
            duration: began.elapsed(),
            pid: std::process::id(),
            environ: &environ,
        };
        if let Err(e) = log.log(&record) {
            tracing::warn!("cannot write the access log: {e}");
        }
    }
}

/// A connection ended in an error. hyper answered a head it could not parse itself
/// (400, 414 or 431, then closed): log it as a refused request (error log at info, and an
/// access log line with the status). Anything else (client gone, body cut, idle timeout)
/// only at debug level.
pub fn connection_ended(
    worker: &Worker,
    peer: &Peer,
    err: &hyper::Error,
    fault: Option<super::strict::Fault>,
) {
    if !err.is_parse() || err.is_parse_version_h2() {
        tracing::debug!(
            "connection from {} ended: {}",
            peer.ip,
            fault.map_or_else(|| err.to_string(), str::to_owned)
        );
        return;
    }
    // hyper's too-large error is one for both: strict.rs tells which from the bytes.
    let status: u16 = if !err.is_parse_too_large() {
        400
    } else if fault == Some(super::strict::URI_TOO_LONG) {
        414
    } else {
        431
    };
    let why = fault.map_or_else(|| err.to_string(), str::to_owned);
    tracing::info!("Invalid request from ip={}: {why}", peer.ip);
    if let Some(log) = &worker.access_log {
        let environ = [("REMOTE_PORT", peer.port.as_deref().unwrap_or(""))];
        let none = HeaderMap::new();
        let record = AccessRecord {
            remote_addr: &peer.ip,
            method: "-",
            path: "-",
            query: "",
            protocol: "-",
            status,
            body_bytes: 0,
            request_headers: &none,
            response_headers: &none,
            start: SystemTime::now(),
            duration: Duration::ZERO,
            pid: std::process::id(),
            environ: &environ,
        };
        if let Err(e) = log.log(&record) {
            tracing::warn!("cannot write the access log: {e}");
        }
    }
}
