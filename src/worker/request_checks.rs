//! The checks a parsed request head must pass before any app sees it: gunicorn's limits
//! and method policy, RFC 9112's Host and request-target rules, CONNECT, a declared body
//! past `limit_request_body`; and the head rewrites that follow (casefolding the method,
//! the Host of an absolute-form target).
//!
//! It reads only the parsed head: the raw-byte checks are in `strict.rs`, the body's own
//! limits (a body that grows past the limit, a stalled body) in `request_body.rs`. It
//! answers nothing itself: `responses::refuse` does.

use http::header::{CONNECTION, HOST, HeaderValue, UPGRADE};
use http::{Method, StatusCode, Version};

use super::wsgi::environ::RequestHead;

/// gunicorn's request limits, and what else a request must pass before the app sees it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line; 0 = no limit of our own.
    pub request_line: usize,
    pub field_size: usize,
    /// `limit_request_body`; 0 = none.
    pub body: u64,
    /// `permit_unconventional_http_method`: any token is a method.
    pub any_method: bool,
    /// `casefold_http_method`.
    pub casefold_method: bool,
}

/// Why a parsed request must not reach the app, if it must not: gunicorn's limits
/// (`limit_request_line`, `limit_request_field_size`; hyper itself enforces
/// `limit_request_fields` and answers 431), its method policy, RFC 9112's Host and
/// request-target rules, CONNECT, and `limit_request_body` for a declared length. The
/// raw-byte checks are in `strict.rs`.
pub fn refusal(
    limits: &Limits,
    head: &RequestHead,
    body_len: Option<u64>,
) -> Option<(StatusCode, &'static str)> {
    if limits.request_line > 0 {
        let target = head.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
        // "METHOD SP request-target SP HTTP/1.1"
        let line = head.method.as_str().len() + 1 + target + 1 + 8;
        if line > limits.request_line {
            return Some((StatusCode::URI_TOO_LONG, "request line too long"));
        }
    }
    if limits.field_size > 0 {
        // gunicorn counts the whole line: `name: value` and its CRLF.
        let too_large = head
            .headers
            .iter()
            .any(|(name, value)| name.as_str().len() + 4 + value.len() > limits.field_size);
        if too_large {
            return Some((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header field too large",
            ));
        }
    }
    // RFC 9112 3.2, RFC 3986 2: the target is printable ASCII, the rest percent-encoded.
    let target = head.uri.path_and_query().map_or("", |pq| pq.as_str());
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Some((
            StatusCode::BAD_REQUEST,
            "request target not printable ASCII",
        ));
    }
    if !limits.any_method && !conventional_method(&head.method) {
        return Some((StatusCode::BAD_REQUEST, "unconventional method"));
    }
    // RFC 9112 3.2: one Host, and a valid one; an HTTP/1.1 request without Host is
    // refused (HTTP/1.0 clients may predate it). Two of them may route differently
    // downstream.
    let mut hosts = head.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Some((StatusCode::BAD_REQUEST, "repeated Host header")),
        (None, _) if head.version != Version::HTTP_10 => {
            return Some((StatusCode::BAD_REQUEST, "missing Host header"));
        }
        (Some(host), None) if !valid_host(host.as_bytes()) => {
            return Some((StatusCode::BAD_REQUEST, "invalid Host header"));
        }
        _ => {}
    }
    // No tunnels: a CONNECT would hand the app a socket it has no way to use.
    if head.method == Method::CONNECT {
        return Some((StatusCode::NOT_IMPLEMENTED, "CONNECT not supported"));
    }
    if let Some(authority) = head.uri.authority() {
        // RFC 9112 3.2.3: the authority form is CONNECT's only.
        if head.uri.scheme().is_none() {
            return Some((
                StatusCode::BAD_REQUEST,
                "authority-form target without CONNECT",
            ));
        }
        // RFC 9110 4.2.4: userinfo in an http(s) URI is an error; the authority becomes
        // the Host, so it must pass as one.
        if !valid_host(authority.as_str().as_bytes()) {
            return Some((StatusCode::BAD_REQUEST, "invalid request target authority"));
        }
    }
    if limits.body > 0 && body_len.is_some_and(|n| n > limits.body) {
        return Some((StatusCode::PAYLOAD_TOO_LARGE, "request body too large"));
    }
    None
}

/// RFC 9110 7.2: `uri-host [ ":" port ]`, the host an IP-literal or a reg-name (an
/// IPv4 address is a reg-name too), the port digits.
fn valid_host(host: &[u8]) -> bool {
    let port = |p: &[u8]| p.iter().all(u8::is_ascii_digit);
    if let Some(literal) = host.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let ip_literal = std::str::from_utf8(&literal[..end])
            .is_ok_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok() || ipv_future(ip));
        return ip_literal
            && match &literal[end + 1..] {
                [] => true,
                [b':', rest @ ..] => port(rest),
                _ => false,
            };
    }
    let (name, rest) = match host.iter().position(|&b| b == b':') {
        Some(colon) => (&host[..colon], Some(&host[colon + 1..])),
        None => (host, None),
    };
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                if !name
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
                continue;
            }
            b if unreserved_or_sub_delim(b) => {}
            _ => return false,
        }
        i += 1;
    }
    rest.is_none_or(port)
}

/// RFC 3986 3.2.2: `"v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn ipv_future(ip: &str) -> bool {
    let Some((version, rest)) = ip
        .strip_prefix(['v', 'V'])
        .and_then(|ip| ip.split_once('.'))
    else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b == b':' || unreserved_or_sub_delim(b))
}

fn unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// RFC 9112 3.2.2: for an absolute-form target the Host is the target's authority,
/// whatever Host header came with it; the app and the access log see that one.
pub fn host_from_absolute_target(head: &mut RequestHead) {
    if let Some(authority) = head.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        head.headers.insert(HOST, host);
    }
}

/// The client offered a protocol to switch to (RFC 9110 7.8; an HTTP/1.0 request's
/// Upgrade is to be ignored).
pub fn asked_to_upgrade(head: &RequestHead) -> bool {
    head.version == Version::HTTP_11
        && head.headers.contains_key(UPGRADE)
        && head.headers.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// gunicorn's default method policy: 3 to 20 characters, no lowercase letter, no '#'
/// (hyper has already checked it is an RFC 9110 token).
fn conventional_method(method: &Method) -> bool {
    let standard = [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    if standard.contains(method) {
        return true;
    }
    let name = method.as_str().as_bytes();
    (3..=20).contains(&name.len()) && !name.iter().any(|&b| b.is_ascii_lowercase() || b == b'#')
}

/// `casefold_http_method`: the app sees the method uppercased.
pub fn casefold(method: &mut Method) {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase())
        && let Ok(upper) = Method::from_bytes(method.as_str().to_ascii_uppercase().as_bytes())
    {
        *method = upper;
    }
}

/// An HTTP/1.0 client that did not ask for keep-alive is closed after the response; say
/// so, as every response after which unitcorn closes does.
pub fn keeps_alive_by_default(head: &RequestHead) -> bool {
    head.version != Version::HTTP_10
        || head
            .headers
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"))
}
