//! The access log's format: gunicorn's `access_log_format` compiled once into segments, and
//! printed back in gunicorn's syntax.
//!
//! Not here: writing a record with a compiled format (`access_log`).
//!
//! The atoms are gunicorn's (`gunicorn/glogging.py`, `Logger.atoms`). One deliberate
//! difference: an unknown atom is an error when the format is compiled (gunicorn prints `-`),
//! and the error names the atom or the byte where the format goes wrong.

use std::ffi::OsString;
use std::fmt;

use http::header::{self, HeaderName};

use super::error::{Error, Format};

/// gunicorn's default `access_log_format` (Apache's combined log format).
pub const DEFAULT_ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// A parsed `access_log_format`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessFormat {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(Box<[u8]>),
    /// `h`
    RemoteAddr,
    /// `l`: always `-` (no identd).
    Dash,
    /// `u`: the user name of Basic authentication.
    User,
    /// `t`: the local time the response ended.
    Time,
    /// `r`: `GET /path?query HTTP/1.1`
    RequestLine,
    /// `m`
    Method,
    /// `U`: the percent-decoded path.
    UrlPath,
    /// `q`
    Query,
    /// `H`
    Protocol,
    /// `s`
    Status,
    /// `B`
    BodyBytes,
    /// `b`: `-` for an empty body (CLF).
    BodyBytesClf,
    /// `T`
    Seconds,
    /// `M`
    Millis,
    /// `D`
    Micros,
    /// `L`: `0.000123`
    DecimalSeconds,
    /// `p`: `<1234>`
    Pid,
    /// The raw request target, `/path?query` (`{RAW_URI}e`).
    RawUri,
    /// `f`: the Referer header as WSGI's environ has it.
    Referer,
    /// `a`: the User-Agent header as WSGI's environ has it.
    UserAgent,
    /// A request header as WSGI's environ has it: repeated headers joined with `,` (`f`, `a`,
    /// `{HTTP_*}e`).
    RequestHeaderJoined(HeaderName),
    /// `{name}i`: the last value of a request header. `None`: not a valid header name, so
    /// never present.
    RequestHeader(Option<HeaderName>),
    /// `{name}o`: the last value of a response header.
    ResponseHeader(Option<HeaderName>),
    /// `{name}e`: the record's `environ`, then the process environment.
    Env {
        name: Box<str>,
        upper: OsString,
    },
}

impl AccessFormat {
    /// Compiles a gunicorn `access_log_format` (Python `%`-formatting with a mapping): atoms
    /// `%(name)s`, `%%` for a percent sign. The integer atoms `T`, `M`, `D`, `B` also take
    /// `%(name)d`. The error names the atom or the position that is wrong.
    pub fn parse(format: &str) -> Result<AccessFormat, Error> {
        let bytes = format.as_bytes();
        let mut segments = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                literal.push(bytes[i]);
                i += 1;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'%') => {
                    literal.push(b'%');
                    i += 2;
                }
                Some(b'(') => {
                    let close = matching_paren(bytes, i + 1)
                        .ok_or_else(|| Error::access_format(Format::Unclosed { at: i }))?;
                    let name = &format[i + 2..close];
                    let atom = atom(name)?;
                    match (bytes.get(close + 1), &atom) {
                        (Some(b's'), _) => {}
                        (
                            Some(b'd' | b'i'),
                            Segment::Seconds
                            | Segment::Millis
                            | Segment::Micros
                            | Segment::BodyBytes,
                        ) => {}
                        _ => {
                            return Err(Error::access_format(Format::Conversion {
                                atom: name.to_owned(),
                                at: i,
                            }));
                        }
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal).into()));
                    }
                    segments.push(atom);
                    i = close + 2;
                }
                _ => {
                    return Err(Error::access_format(Format::LonePercent { at: i }));
                }
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal.into()));
        }
        Ok(AccessFormat { segments })
    }

    /// Whether the format reads response headers, i.e. whether the worker must keep them for
    /// the record after hyper has taken the response.
    pub fn uses_response_headers(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::ResponseHeader(_)))
    }

    /// The compiled segments, for the writer (`access_log`).
    pub(super) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl Default for AccessFormat {
    fn default() -> AccessFormat {
        AccessFormat::parse(DEFAULT_ACCESS_LOG_FORMAT).expect("the default format parses")
    }
}

impl fmt::Display for AccessFormat {
    /// The format back in gunicorn's syntax (for `--print-config` and messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            let atom = match segment {
                Segment::Literal(text) => {
                    f.write_str(&String::from_utf8_lossy(text).replace('%', "%%"))?;
                    continue;
                }
                Segment::RemoteAddr => "h",
                Segment::Dash => "l",
                Segment::User => "u",
                Segment::Time => "t",
                Segment::RequestLine => "r",
                Segment::Method => "m",
                Segment::UrlPath => "U",
                Segment::Query => "q",
                Segment::Protocol => "H",
                Segment::Status => "s",
                Segment::BodyBytes => "B",
                Segment::BodyBytesClf => "b",
                Segment::Seconds => "T",
                Segment::Millis => "M",
                Segment::Micros => "D",
                Segment::DecimalSeconds => "L",
                Segment::Pid => "p",
                Segment::Referer => "f",
                Segment::UserAgent => "a",
                Segment::RawUri => "{RAW_URI}e",
                Segment::RequestHeaderJoined(name) => {
                    write!(f, "%({{HTTP_{}}}e)s", env_header_name(name))?;
                    continue;
                }
                Segment::RequestHeader(name) | Segment::ResponseHeader(name) => {
                    let suffix = match segment {
                        Segment::RequestHeader(_) => 'i',
                        _ => 'o',
                    };
                    let name = name.as_ref().map_or("?", HeaderName::as_str);
                    write!(f, "%({{{name}}}{suffix})s")?;
                    continue;
                }
                Segment::Env { name, .. } => {
                    write!(f, "%({{{name}}}e)s")?;
                    continue;
                }
            };
            write!(f, "%({atom})s")?;
        }
        Ok(())
    }
}

/// `x-forwarded-for` → `X_FORWARDED_FOR`.
fn env_header_name(name: &HeaderName) -> String {
    name.as_str().to_ascii_uppercase().replace('-', "_")
}

/// Index of the `)` closing the `(` at `open`, counting nested parentheses as Python does.
fn matching_paren(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The segment for the atom `name` (what is between `%(` and `)`).
fn atom(name: &str) -> Result<Segment, Error> {
    let segment = match name {
        "h" => Segment::RemoteAddr,
        "l" => Segment::Dash,
        "u" => Segment::User,
        "t" => Segment::Time,
        "r" => Segment::RequestLine,
        "m" => Segment::Method,
        "U" => Segment::UrlPath,
        "q" => Segment::Query,
        "H" => Segment::Protocol,
        "s" => Segment::Status,
        "B" => Segment::BodyBytes,
        "b" => Segment::BodyBytesClf,
        "f" => Segment::Referer,
        "a" => Segment::UserAgent,
        "T" => Segment::Seconds,
        "M" => Segment::Millis,
        "D" => Segment::Micros,
        "L" => Segment::DecimalSeconds,
        "p" => Segment::Pid,
        _ => return braced_atom(name),
    };
    Ok(segment)
}

/// `{name}i`, `{name}o`, `{name}e`. gunicorn lowercases the whole key before looking it up, so
/// the name and the suffix are both case-insensitive.
fn braced_atom(atom: &str) -> Result<Segment, Error> {
    let unknown = || {
        Error::access_format(Format::UnknownAtom {
            atom: atom.to_owned(),
        })
    };
    let (name, suffix) = atom
        .strip_prefix('{')
        .and_then(|rest| rest.rsplit_once('}'))
        .ok_or_else(unknown)?;
    let header = || HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok();
    match suffix {
        "i" | "I" => Ok(Segment::RequestHeader(header())),
        "o" | "O" => Ok(Segment::ResponseHeader(header())),
        "e" | "E" => Ok(env_atom(name)),
        _ => Err(unknown()),
    }
}

/// `{name}e`. gunicorn reads the WSGI environ; the entries that come from the request itself
/// are served from the record, the rest from `AccessRecord::environ` and then the process
/// environment.
fn env_atom(name: &str) -> Segment {
    let upper = name.to_ascii_uppercase();
    let from_header =
        |h: &str| HeaderName::from_bytes(h.to_ascii_lowercase().replace('_', "-").as_bytes()).ok();
    match upper.as_str() {
        "REMOTE_ADDR" => Segment::RemoteAddr,
        "REQUEST_METHOD" => Segment::Method,
        "PATH_INFO" => Segment::UrlPath,
        "QUERY_STRING" => Segment::Query,
        "SERVER_PROTOCOL" => Segment::Protocol,
        "RAW_URI" => Segment::RawUri,
        "CONTENT_TYPE" => Segment::RequestHeaderJoined(header::CONTENT_TYPE),
        "CONTENT_LENGTH" => Segment::RequestHeaderJoined(header::CONTENT_LENGTH),
        h => match h.strip_prefix("HTTP_").and_then(from_header) {
            Some(header) => Segment::RequestHeaderJoined(header),
            None => Segment::Env {
                name: name.into(),
                upper: upper.into(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_problem() {
        let message = |format: &str| {
            let err = AccessFormat::parse(format).unwrap_err();
            assert!(err.is_format(), "{err:?}");
            err.to_string()
        };
        let err = message("%(h)s %(zz)s");
        assert!(err.contains("unknown atom %(zz)s"), "{err}");
        let err = message("%({x}z)s");
        assert!(err.contains("unknown atom %({x}z)s"), "{err}");
        let err = message("%(h");
        assert!(err.contains("never closed"), "{err}");
        let err = message("50% off");
        assert!(err.contains("lone \"%\" at byte 2"), "{err}");
        let err = message("%(h)");
        assert!(err.contains("%(h)s"), "{err}");
        let err = message("%(h)d");
        assert!(err.contains("must be written %(h)s"), "{err}");
        let err = message("%(h)-15s");
        assert!(err.contains("%(h)s"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for f in [
            DEFAULT_ACCESS_LOG_FORMAT,
            "%(h)s %({x-real-ip}i)s %({x-id}o)s %({REMOTE_PORT}e)s 100%% %(L)s %(p)s",
        ] {
            let parsed = AccessFormat::parse(f).unwrap();
            assert_eq!(parsed.to_string(), f);
            assert_eq!(AccessFormat::parse(&parsed.to_string()).unwrap(), parsed);
        }
    }

    #[test]
    fn uses_response_headers_only_with_o_atoms() {
        assert!(!AccessFormat::default().uses_response_headers());
        assert!(
            AccessFormat::parse("%({etag}o)s")
                .unwrap()
                .uses_response_headers()
        );
    }
}
