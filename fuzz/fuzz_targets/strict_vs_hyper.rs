//! Differential: whatever the strict scanner (src/worker/strict.rs) accepts, hyper's
//! HTTP/1.1 server reads as the same requests a plain reading of RFC 9112's grammar gives.
//!
//! The scanner only checks: it does not parse requests for the app, hyper does. It lets
//! through what hyper will refuse (hyper then answers 400 and closes), so the danger is
//! not a refusal but a disagreement on where a message ends or what it says (request
//! smuggling, a header the app never sees). So, for a stream the scanner passes whole:
//!
//! - the model here reads it as the scanner's framing does: at most one empty line before
//!   a request line; `METHOD SP target SP HTTP/1.x`; field lines `name ":" OWS value OWS`
//!   (obs-folds, when folding is on, joined as gunicorn joins them: the value and the
//!   continuation trimmed, one space between); then a body of Content-Length bytes, or
//!   chunked (hex size, `;extensions` ignored, data, CRLF; trailer fields after the last
//!   chunk), or none; it stops after a CONNECT head (a tunnel, unscanned);
//! - real hyper (`hyper::server::conn::http1`, as the worker builds it) serves the bytes
//!   the scanner delivers (rewritten in place by fold joining) over `tokio::io::duplex`
//!   in a current-thread runtime, the client half-closing after the last byte, with a
//!   service that records each request and reads its body whole;
//! - "the same": hyper serves at most the requests whose heads the model reads whole (a
//!   line without a colon is no field to the model: hyper must refuse it), and each request
//!   hyper hands the service is the model's request of the same rank: the same method
//!   (bytes), the same target (hyper's `Uri` equals the model's target bytes parsed as a
//!   `Uri`, so hyper took the same bytes as the target), the same version, the same
//!   header fields (per lower-cased name, the same values in order, as bytes), and the same
//!   body bytes with the same framing (none, a length, or chunked), and for chunked bodies
//!   the same trailer fields when hyper reports trailers. A body hyper fails (cut short or
//!   malformed to it) ends the comparison there: hyper refused it, the connection closes.
//!   A CONNECT is compared by its head only, and must be the last request served.
//!
//! Input: the byte stream (seeds are gunicorn's request corpus). Both folding policies run.
#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unitcorn::fuzz_api::{Scanner, Verdict};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// One request as read by the model or as hyper handed it over.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    method: Bytes,
    target: Bytes,
    version: Version,
    /// (lower-cased name, value) in order.
    headers: Vec<(Bytes, Bytes)>,
    framing: Framing,
    body: Bytes,
    trailers: Vec<(Bytes, Bytes)>,
    /// The body (and trailers) read to their end: for the model, all its bytes were
    /// there; for hyper, the body did not fail.
    whole: bool,
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Reads CRLF-ended lines from `buf` at `*pos`.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = &buf[*pos..];
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *pos += end + 2;
    Some(&rest[..end])
}

fn fields(lines: &[Vec<u8>], folding: bool) -> Vec<(Bytes, Bytes)> {
    let mut out: Vec<(Bytes, Bytes)> = Vec::new();
    // The line before was a field (a fold continues only a field).
    let mut after_field = false;
    for l in lines {
        if folding && matches!(l.first(), Some(b' ' | b'\t')) {
            if let Some(last) = out.last_mut().filter(|_| after_field) {
                let mut joined = trim_ows(&last.1).to_vec();
                joined.push(b' ');
                joined.extend_from_slice(trim_ows(l));
                last.1 = Bytes::copy_from_slice(trim_ows(&joined));
            }
            continue;
        }
        // A line without a colon is no field (the scanner leaves it to hyper to refuse).
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            after_field = false;
            continue;
        };
        after_field = true;
        let value = &l[colon + 1..];
        out.push((
            l[..colon].to_ascii_lowercase().into(),
            Bytes::copy_from_slice(trim_ows(value)),
        ));
    }
    out
}

/// The model: the requests of `buf` whose heads are complete, in order (the last one's
/// body may be cut short: then it is not `whole`).
fn model(buf: &[u8], folding: bool) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        if buf[pos..].starts_with(b"\r\n") {
            pos += 2;
        }
        let Some(request_line) = line(buf, &mut pos) else {
            return out;
        };
        let first_sp = request_line.iter().position(|&b| b == b' ');
        let last_sp = request_line.iter().rposition(|&b| b == b' ');
        let (Some(a), Some(b)) = (first_sp, last_sp) else {
            return out;
        };
        if a >= b {
            return out;
        }
        let method = Bytes::copy_from_slice(&request_line[..a]);
        let target = Bytes::copy_from_slice(&request_line[a + 1..b]);
        let version = match &request_line[b + 1..] {
            b"HTTP/1.0" => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let mut lines = Vec::new();
        loop {
            let Some(l) = line(buf, &mut pos) else {
                return out;
            };
            if l.is_empty() {
                break;
            }
            lines.push(l.to_vec());
        }
        let headers = fields(&lines, folding);
        let value_of = |name: &[u8]| {
            headers
                .iter()
                .find(|(n, _)| n.as_ref() == name)
                .map(|(_, v)| v.clone())
        };
        let chunked = value_of(b"transfer-encoding").is_some();
        let length = value_of(b"content-length")
            .map(|v| std::str::from_utf8(&v).unwrap().parse::<u64>().unwrap());
        let connect = method.as_ref() == b"CONNECT";
        let mut seen = Seen {
            method,
            target,
            version,
            headers,
            framing: Framing::None,
            body: Bytes::new(),
            trailers: Vec::new(),
            whole: false,
        };
        let mut body = Vec::new();
        if connect {
            seen.whole = true;
            out.push(seen);
            return out;
        }
        // Ends the model at a body cut short: that request is the last, not whole.
        macro_rules! cut_short {
            () => {{
                seen.body = body.into();
                out.push(seen);
                return out;
            }};
        }
        if chunked {
            seen.framing = Framing::Chunked;
            loop {
                let Some(size_line) = line(buf, &mut pos) else {
                    cut_short!()
                };
                let digits = size_line
                    .iter()
                    .position(|b| !b.is_ascii_hexdigit())
                    .unwrap_or(size_line.len());
                let size =
                    u64::from_str_radix(std::str::from_utf8(&size_line[..digits]).unwrap(), 16)
                        .unwrap();
                if size == 0 {
                    break;
                }
                if ((buf.len() - pos) as u64) < size + 2 {
                    cut_short!()
                }
                let size = size as usize;
                body.extend_from_slice(&buf[pos..pos + size]);
                pos += size + 2;
            }
            let mut trailer_lines = Vec::new();
            loop {
                let Some(l) = line(buf, &mut pos) else {
                    cut_short!()
                };
                if l.is_empty() {
                    break;
                }
                trailer_lines.push(l.to_vec());
            }
            seen.trailers = fields(&trailer_lines, false);
        } else if let Some(n) = length.filter(|&n| n > 0) {
            seen.framing = Framing::Length(n);
            if ((buf.len() - pos) as u64) < n {
                cut_short!()
            }
            body.extend_from_slice(&buf[pos..pos + n as usize]);
            pos += n as usize;
        } else if length == Some(0) {
            seen.framing = Framing::Length(0);
        }
        seen.body = body.into();
        seen.whole = true;
        out.push(seen);
    }
}

fn pairs(map: &HeaderMap) -> Vec<(Bytes, Bytes)> {
    map.iter()
        .map(|(n, v)| {
            (
                Bytes::copy_from_slice(n.as_str().as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect()
}

/// Per name, the values in order: HeaderMap groups by name, so compare in that shape.
fn grouped(fields: &[(Bytes, Bytes)]) -> Vec<(Bytes, Vec<Bytes>)> {
    let mut out: Vec<(Bytes, Vec<Bytes>)> = Vec::new();
    for (n, v) in fields {
        match out.iter_mut().find(|(name, _)| name == n) {
            Some((_, values)) => values.push(v.clone()),
            None => out.push((n.clone(), vec![v.clone()])),
        }
    }
    out.sort();
    out
}

/// What hyper served, in order.
async fn serve(stream: Vec<u8>) -> Vec<Seen> {
    let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
    let (client, server) = tokio::io::duplex(1 << 20);
    let record = Rc::clone(&seen);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let record = Rc::clone(&record);
        async move {
            let (head, body) = req.into_parts();
            let framing = if head.headers.contains_key(http::header::TRANSFER_ENCODING) {
                Framing::Chunked
            } else {
                match hyper::body::Body::size_hint(&body).exact() {
                    Some(0) if !head.headers.contains_key(http::header::CONTENT_LENGTH) => {
                        Framing::None
                    }
                    Some(n) => Framing::Length(n),
                    None => Framing::Chunked,
                }
            };
            let (body, trailers, whole) = match body.collect().await {
                Ok(collected) => {
                    let trailers = collected.trailers().map(pairs).unwrap_or_default();
                    (collected.to_bytes(), trailers, true)
                }
                Err(_) => (Bytes::new(), Vec::new(), false),
            };
            record.borrow_mut().push(Seen {
                method: Bytes::copy_from_slice(head.method.as_str().as_bytes()),
                target: head.uri.to_string().into(),
                version: head.version,
                headers: pairs(&head.headers),
                framing,
                body,
                trailers,
                whole,
            });
            let mut response = Response::new(Empty::<Bytes>::new());
            if head.method == Method::CONNECT {
                // The worker's answer (request_checks.rs): 501, and the connection closes.
                *response.status_mut() = StatusCode::NOT_IMPLEMENTED;
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, "close".parse().unwrap());
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut http = http1::Builder::new();
    // As src/worker/mod.rs `http_builder` has it, at the default limits.
    http.keep_alive(true)
        .max_headers(100)
        .max_buf_size(8190 + 100 * (8190 + 2))
        .title_case_headers(true);
    let conn = http.serve_connection(TokioIo::new(server), service);
    let talk = async move {
        let mut client = client;
        client.write_all(&stream).await.unwrap();
        client.shutdown().await.unwrap();
        let mut sink = Vec::new();
        let _ = client.read_to_end(&mut sink).await;
    };
    let run = async { tokio::join!(conn, talk) };
    // hyper's own verdict (a refusal is an error) does not matter: what it served does.
    let (_served, ()) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("hyper and the client did not finish");
    Rc::try_unwrap(seen).unwrap().into_inner()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

fn check(data: &[u8], folding: bool) {
    let mut delivered = data.to_vec();
    if Scanner::new(folding).scan(&mut delivered) != Verdict::Pass {
        return;
    }
    let expected = model(data, folding);
    let served = runtime().block_on(serve(delivered));
    assert!(
        served.len() <= expected.len(),
        "hyper served {} requests, the model reads {}: {served:#?}\nmodel: {expected:#?}",
        served.len(),
        expected.len()
    );
    for (i, (got, want)) in served.iter().zip(&expected).enumerate() {
        let target_uri = Uri::try_from(want.target.as_ref()).ok();
        let got_uri = Uri::try_from(got.target.as_ref()).ok();
        let mut same = got.method == want.method
            && target_uri.is_some()
            && got_uri == target_uri
            && got.version == want.version
            && grouped(&got.headers) == grouped(&want.headers);
        // After a CONNECT head the bytes are a tunnel's, unscanned: hyper may read a body
        // there, but the worker's 501 closes the connection, so nothing after it is served
        // (the model ends at the CONNECT, and the count above holds hyper to that).
        let tunnel = want.method.as_ref() == b"CONNECT";
        same &= tunnel || got.framing == want.framing;
        if got.whole && !tunnel {
            // hyper took a body as whole only where all of it was there.
            same &= want.whole && got.body == want.body;
            if !got.trailers.is_empty() {
                same &= grouped(&got.trailers) == grouped(&want.trailers);
            }
        }
        assert!(
            same,
            "request {i} (folding {folding}): hyper read {got:#?},\nthe model reads {want:#?}"
        );
        // A body hyper fails (cut short, or malformed to it) closes the connection.
        if !got.whole {
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, false);
    if data
        .windows(2)
        .any(|w| w[0] == b'\n' && matches!(w[1], b' ' | b'\t'))
    {
        check(data, true);
    }
});
