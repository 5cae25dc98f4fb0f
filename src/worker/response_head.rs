//! The response head check, one rule for every worker class: the status an app gives
//! (WSGI `start_response`, ASGI `http.response.start`) and each of its headers pass
//! through here on their way to a [`Declared`] head.
//!
//! - A status is a three-digit code from 100 to 999.
//! - Header names are RFC 9110 tokens; values are bytes without control characters
//!   (no response splitting).
//! - Hop-by-hop headers belong to the server (PEP 3333 forbids them to apps; framing is
//!   ours to decide, as in gunicorn): `Connection`, `Keep-Alive`, `Proxy-Connection`,
//!   `Transfer-Encoding`, `TE`, `Trailer(s)`, `Upgrade`, `Proxy-Authenticate`,
//!   `Proxy-Authorization` are dropped. `Connection: close` is kept as the app's wish to
//!   close the connection after the response.
//! - `Content-Length` must be one decimal number; it is what `body.rs` then holds the
//!   body to.
//!
//! It does not see the body, nor turn a refusal into a response: the protocol side raises
//! the error in the app (which then fails with a 500, or catches it).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// What the app declared: the head the response will have.
#[derive(Debug, Clone)]
pub struct Declared {
    pub status: StatusCode,
    /// The app's reason phrase when it differs from the standard one.
    pub reason: Option<Bytes>,
    pub headers: HeaderMap,
    /// The app's own Content-Length, which `body.rs` enforces.
    pub content_length: Option<u64>,
    /// The app sent `Connection: close`.
    pub close: bool,
}

/// Which part of the head broke the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadErrorKind {
    Status,
    HeaderName,
    HeaderValue,
    ContentLength,
}

/// A head the app may not send; its Display names the app's mistake.
#[derive(Debug, Clone)]
pub struct HeadError {
    kind: HeadErrorKind,
    /// The offending text, quoted in the message.
    what: String,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            HeadErrorKind::Status => write!(f, "invalid status {}", self.what),
            HeadErrorKind::HeaderName => write!(f, "invalid header name {}", self.what),
            HeadErrorKind::HeaderValue => write!(f, "invalid value for header {}", self.what),
            HeadErrorKind::ContentLength => write!(f, "invalid Content-Length {}", self.what),
        }
    }
}

impl std::error::Error for HeadError {}

fn error(kind: HeadErrorKind, what: String) -> HeadError {
    HeadError { kind, what }
}

/// The status code an app gave, if it is one.
pub fn status(code: u16) -> Result<StatusCode, HeadError> {
    StatusCode::from_u16(code)
        .ok()
        .filter(|c| c.as_u16() >= 100)
        .ok_or_else(|| error(HeadErrorKind::Status, code.to_string()))
}

/// A WSGI status line (`"200 OK"`): the code and, when it differs from the standard one,
/// the reason phrase.
pub fn status_line(line: &str) -> Result<(StatusCode, Option<Bytes>), HeadError> {
    let (code, reason) = line.split_once(' ').unwrap_or((line, ""));
    let code = code
        .parse::<u16>()
        .ok()
        .and_then(|c| status(c).ok())
        .ok_or_else(|| error(HeadErrorKind::Status, format!("{line:?}")))?;
    let reason = match code.canonical_reason() {
        Some(canonical) if canonical == reason => None,
        _ if reason.is_empty() => None,
        _ => Some(Bytes::copy_from_slice(reason.as_bytes())),
    };
    Ok((code, reason))
}

/// The headers of one response, as the app gives them one by one.
#[derive(Default)]
pub struct HeadCheck {
    headers: HeaderMap,
    content_length: Option<u64>,
    close: bool,
}

impl HeadCheck {
    /// Check one header; a hop-by-hop one is dropped (after noting `Connection: close`).
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), HeadError> {
        let shown = || String::from_utf8_lossy(name).into_owned();
        let name = HeaderName::from_bytes(name)
            .map_err(|_| error(HeadErrorKind::HeaderName, format!("{:?}", shown())))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| {
            let value = String::from_utf8_lossy(value);
            error(
                HeadErrorKind::HeaderValue,
                format!("{:?}: {value:?}", shown()),
            )
        })?;
        match name.as_str() {
            "content-length" => {
                let n = std::str::from_utf8(value.as_bytes())
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        let value = String::from_utf8_lossy(value.as_bytes());
                        error(HeadErrorKind::ContentLength, format!("{value:?}"))
                    })?;
                self.content_length = Some(n);
            }
            "connection" => {
                self.close |= value
                    .as_bytes()
                    .split(|&b| b == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
                return Ok(());
            }
            name if is_hop_by_hop(name) => return Ok(()),
            _ => {}
        }
        self.headers.append(name, value);
        Ok(())
    }

    pub fn declared(self, status: StatusCode, reason: Option<Bytes>) -> Declared {
        Declared {
            status,
            reason,
            headers: self.headers,
            content_length: self.content_length,
            close: self.close,
        }
    }
}

/// RFC 9110 7.6.1 and PEP 3333 (`wsgiref.util.is_hop_by_hop`), plus `Proxy-Connection`
/// and `Trailer` (unitcorn sends no trailers); `name` is lowercase.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_close_is_kept() {
        let mut check = HeadCheck::default();
        for (name, value) in [
            ("Connection", "close"),
            ("Transfer-Encoding", "chunked"),
            ("Keep-Alive", "timeout=5"),
            ("Upgrade", "h2c"),
            ("TE", "trailers"),
            ("X-Kept", "yes"),
        ] {
            check.push(name.as_bytes(), value.as_bytes()).unwrap();
        }
        let declared = check.declared(StatusCode::OK, None);
        assert!(declared.close);
        assert_eq!(declared.headers.len(), 1);
        assert_eq!(declared.headers["x-kept"], "yes");
    }

    #[test]
    fn a_bad_content_length_or_status_is_refused() {
        let mut check = HeadCheck::default();
        let err = check.push(b"Content-Length", b"12abc").unwrap_err();
        assert_eq!(err.kind, HeadErrorKind::ContentLength);
        assert_eq!(err.to_string(), "invalid Content-Length \"12abc\"");
        assert!(check.push(b"Bad Name", b"x").is_err());
        assert!(check.push(b"X-Split", b"a\r\nb").is_err());
        assert_eq!(status(99).unwrap_err().kind, HeadErrorKind::Status);
        assert!(status_line("abc").is_err());
        let (code, reason) = status_line("299 Fine").unwrap();
        assert_eq!(
            (code.as_u16(), reason.as_deref()),
            (299, Some(&b"Fine"[..]))
        );
    }
}
