//! The access log: one line a request, written with a compiled `access_log_format`
//! (`access_format`) in one `write(2)`, or one journal entry.
//!
//! Not here: compiling the format (`access_format`), deciding whether to log (the worker calls
//! `AccessLog::log` only when an access log is configured) and measuring the request (the
//! worker fills an `AccessRecord`).
//!
//! The values are written as gunicorn writes them (`gunicorn/glogging.py`), with its quirks
//! kept so that existing log parsers keep working: text values have `"` escaped as `\"`, a
//! missing header is `-`, `%(U)s` is the percent-decoded path (WSGI's `PATH_INFO`) while
//! `%(r)s` shows the raw one, `%(t)s` is the local time the response ended (when gunicorn
//! formats the line), `%(b)s` is `-` for an empty body (Apache's CLF, as gunicorn documents
//! it). One deliberate difference: control characters in values are written as `\xNN` so no
//! request can forge a log line.

use std::cell::RefCell;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use http::header::{self, HeaderMap, HeaderName};

use super::access_format::{AccessFormat, Segment};
use super::clock;
use super::error::{Error, Log};
use super::journald::{self, AccessEntry, AccessJournal};
use super::sink::Sink;

/// What the worker knows about one finished request, borrowed for the time of `log`.
///
/// Headers are borrowed as the `HeaderMap`s the worker already has, so logging copies nothing.
/// hyper takes the response's map when it sends the response, so a worker whose format
/// `uses_response_headers` keeps a clone of it (cheap: header values are reference-counted
/// `Bytes`); otherwise it passes an empty map (`HeaderMap::new()` does not allocate).
#[derive(Clone, Copy, Debug)]
pub struct AccessRecord<'a> {
    /// The client address as WSGI's `REMOTE_ADDR` has it (`%(h)s`).
    pub remote_addr: &'a str,
    /// `GET` (`%(m)s`).
    pub method: &'a str,
    /// The request target's path, raw as in the request line (`/a%20b`), without the query.
    pub path: &'a str,
    /// The query string without its `?`, raw; empty when there is none (`%(q)s`).
    pub query: &'a str,
    /// `HTTP/1.1` (`%(H)s`).
    pub protocol: &'a str,
    /// The response status (`%(s)s`).
    pub status: u16,
    /// Response body bytes sent, headers excluded (`%(B)s`, `%(b)s`).
    pub body_bytes: u64,
    /// The request's headers (`%({name}i)s`, `%(f)s`, `%(a)s`, `%(u)s`).
    pub request_headers: &'a HeaderMap,
    /// The response's headers (`%({name}o)s`).
    pub response_headers: &'a HeaderMap,
    /// When the request started; `%(t)s` prints `start + duration`.
    pub start: SystemTime,
    /// How long it took, up to the end of the response (`%(T)s`, `%(M)s`, `%(D)s`, `%(L)s`).
    pub duration: Duration,
    /// The process that served it (`%(p)s`).
    pub pid: u32,
    /// WSGI environ entries the record has no field for (`REMOTE_PORT`, `SERVER_NAME`,
    /// `SCRIPT_NAME`, `wsgi.url_scheme`...), searched first by `%({name}e)s`.
    pub environ: &'a [(&'a str, &'a str)],
}

/// The writer's half of `AccessFormat`: a record through the compiled segments.
impl AccessFormat {
    /// Appends the line for `rec` to `out`, without the newline.
    pub fn format(&self, rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
        for segment in self.segments() {
            match segment {
                Segment::Literal(text) => out.extend_from_slice(text),
                Segment::RemoteAddr => push_text(out, rec.remote_addr.as_bytes()),
                Segment::Dash => out.push(b'-'),
                Segment::User => match basic_auth_user(rec.request_headers) {
                    Some(user) => push_text(out, &user),
                    None => out.push(b'-'),
                },
                Segment::Time => {
                    let secs = clock::unix_secs(rec.start + rec.duration);
                    out.extend_from_slice(&clock::stamps(secs).access);
                }
                Segment::RequestLine => {
                    push_text(out, rec.method.as_bytes());
                    out.push(b' ');
                    push_raw_uri(out, rec);
                    out.push(b' ');
                    push_text(out, rec.protocol.as_bytes());
                }
                Segment::Method => push_text(out, rec.method.as_bytes()),
                Segment::UrlPath => push_decoded_path(out, rec.path),
                Segment::Query => push_text(out, rec.query.as_bytes()),
                Segment::Protocol => push_text(out, rec.protocol.as_bytes()),
                Segment::Status => push_u64(out, u64::from(rec.status)),
                Segment::BodyBytes => push_u64(out, rec.body_bytes),
                Segment::BodyBytesClf => match rec.body_bytes {
                    0 => out.push(b'-'),
                    n => push_u64(out, n),
                },
                Segment::Seconds => push_u64(out, rec.duration.as_secs()),
                Segment::Millis => push_u64(
                    out,
                    u64::try_from(rec.duration.as_millis()).unwrap_or(u64::MAX),
                ),
                Segment::Micros => push_u64(
                    out,
                    u64::try_from(rec.duration.as_micros()).unwrap_or(u64::MAX),
                ),
                Segment::DecimalSeconds => {
                    push_u64(out, rec.duration.as_secs());
                    out.push(b'.');
                    // Six digits, zero-padded ("%d.%06d").
                    let mut buf = itoa::Buffer::new();
                    let micros = buf.format(rec.duration.subsec_micros());
                    out.extend(std::iter::repeat_n(b'0', 6 - micros.len()));
                    out.extend_from_slice(micros.as_bytes());
                }
                Segment::Pid => {
                    out.push(b'<');
                    push_u64(out, u64::from(rec.pid));
                    out.push(b'>');
                }
                Segment::RawUri => push_raw_uri(out, rec),
                Segment::Referer => push_joined(out, rec.request_headers, &header::REFERER),
                Segment::UserAgent => push_joined(out, rec.request_headers, &header::USER_AGENT),
                Segment::RequestHeaderJoined(name) => push_joined(out, rec.request_headers, name),
                Segment::RequestHeader(name) => push_last(out, rec.request_headers, name),
                Segment::ResponseHeader(name) => push_last(out, rec.response_headers, name),
                Segment::Env { name, upper } => push_env(out, rec, name, upper),
            }
        }
    }
}

/// `path?query` as in the request line.
fn push_raw_uri(out: &mut Vec<u8>, rec: &AccessRecord<'_>) {
    push_text(out, rec.path.as_bytes());
    if !rec.query.is_empty() {
        out.push(b'?');
        push_text(out, rec.query.as_bytes());
    }
}

/// All the values of header `name` joined with `,`, as gunicorn's environ has them.
fn push_joined(out: &mut Vec<u8>, headers: &HeaderMap, name: &HeaderName) {
    let mut values = headers.get_all(name).iter();
    match values.next() {
        Some(first) => {
            push_text(out, first.as_bytes());
            for v in values {
                out.push(b',');
                push_text(out, v.as_bytes());
            }
        }
        None => out.push(b'-'),
    }
}

/// The last value of header `name`, as a Python dict built from the header list keeps it.
fn push_last(out: &mut Vec<u8>, headers: &HeaderMap, name: &Option<HeaderName>) {
    match name
        .as_ref()
        .and_then(|n| headers.get_all(n).iter().next_back())
    {
        Some(value) => push_text(out, value.as_bytes()),
        None => out.push(b'-'),
    }
}

fn push_env(out: &mut Vec<u8>, rec: &AccessRecord<'_>, name: &str, upper: &OsString) {
    if let Some((_, v)) = rec
        .environ
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        return push_text(out, v.as_bytes());
    }
    // Read at each line: the app may change its environment. Exact name first, then upper case
    // (gunicorn matches environ keys case-insensitively; the OS does not).
    match std::env::var_os(name).or_else(|| std::env::var_os(upper)) {
        Some(v) => push_text(out, v.as_bytes()),
        None => out.push(b'-'),
    }
}

/// A percent-decoded path (WSGI's `PATH_INFO`); `%` escapes that are not valid stay as they are.
fn push_decoded_path(out: &mut Vec<u8>, path: &str) {
    if !path.contains('%') {
        return push_text(out, path.as_bytes());
    }
    for b in percent_encoding::percent_decode_str(path) {
        push_escaped_byte(out, b);
    }
}

/// Text as gunicorn writes it: `"` as `\"`; plus control bytes as `\xNN` so a value cannot end
/// the line or forge another.
fn push_text(out: &mut Vec<u8>, text: &[u8]) {
    if !text.iter().any(|&b| needs_escape(b)) {
        out.extend_from_slice(text);
        return;
    }
    for &b in text {
        push_escaped_byte(out, b);
    }
}

fn needs_escape(b: u8) -> bool {
    b == b'"' || b < 0x20 || b == 0x7f
}

fn push_escaped_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b if needs_escape(b) => out.extend_from_slice(&[
            b'\\',
            b'x',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 15)],
        ]),
        b => out.push(b),
    }
}

/// Decimal digits of `n`, without going through `fmt`.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The user name of `Authorization: Basic <base64(user:password)>`, as gunicorn extracts it:
/// `None` when the scheme is not Basic, the base64 or UTF-8 is invalid, there is no `:`, or the
/// name is empty.
fn basic_auth_user(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    if value.len() < 5 || !value[..5].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let space = value.iter().position(|&b| b == b' ')?;
    let mut decoded = base64_decode(value[space + 1..].trim_ascii())?;
    std::str::from_utf8(&decoded).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    decoded.truncate(colon);
    (!decoded.is_empty()).then_some(decoded)
}

/// Standard base64 as Python's `b64decode` reads it by default (binascii's non-strict mode):
/// bytes outside the alphabet are skipped, a `=` that completes a group of four ends the data,
/// and data that does not end so must come in whole groups of four.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    // Python ignores the bits past the last whole byte, which a canonical encoder leaves zero.
    const PYTHON: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let mut data = Vec::with_capacity(text.len());
    let mut pads = 0;
    for &b in text {
        if b == b'=' {
            let partial = data.len() % 4;
            if partial >= 2 {
                pads += 1;
                if partial + pads >= 4 {
                    data.resize(data.len().next_multiple_of(4), b'=');
                    break;
                }
            }
        } else if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' {
            data.push(b);
        }
    }
    PYTHON.decode(data).ok()
}

/// The journal entry of `rec`, whose formatted access line is `line`.
fn send_to_journal(journal: &AccessJournal, rec: &AccessRecord<'_>, line: &str) {
    let user_agent = joined_header(rec.request_headers, &header::USER_AGENT);
    journal.send(&AccessEntry {
        message: line,
        request_method: rec.method,
        request_path: rec.path,
        request_query: (!rec.query.is_empty()).then_some(rec.query),
        status: rec.status,
        duration_us: u64::try_from(rec.duration.as_micros()).unwrap_or(u64::MAX),
        remote_addr: rec.remote_addr,
        response_bytes: rec.body_bytes,
        user_agent: user_agent.as_deref(),
    });
}

/// Every value of header `name` joined with `,` (as WSGI's environ has it), `None` when absent.
fn joined_header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let text = String::from_utf8_lossy(value.as_bytes());
        match &mut out {
            Some(s) => {
                s.push(',');
                s.push_str(&text);
            }
            None => out = Some(text.into_owned()),
        }
    }
    out
}

/// The `accesslog` value that sends the access log to journald.
pub const JOURNALD: &str = "journald";

/// The access log of this process: a destination and a compiled format.
#[derive(Debug)]
pub struct AccessLog {
    out: Output,
    format: AccessFormat,
}

#[derive(Debug)]
enum Output {
    /// Lines to stdout or a file.
    Lines(Sink),
    /// One journal entry a request, the line as its MESSAGE.
    Journal(AccessJournal),
}

/// A line longer than this gives its buffer back after writing (a huge header in a format).
const KEEP_CAPACITY: usize = 16 * 1024;

thread_local! {
    // Reused per thread so a line costs no allocation once warm, and no lock.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl AccessLog {
    /// Opens `target` (`"-"` for stdout, `"journald"` for the journal, else a file opened for
    /// append, created with mode 0644 less the umask), logging in gunicorn's default format
    /// until `with_format`. `"-"` means the journal too when stdout is the journal stream
    /// systemd set up (`JOURNAL_STREAM`), unless journald's socket cannot be reached.
    ///
    /// Call it in the worker: journal entries carry the pid of the process that opened it.
    pub fn open(target: &str) -> Result<AccessLog, Error> {
        clock::prime();
        let out = if target == JOURNALD {
            Output::Journal(AccessJournal::connect().map_err(|e| Error::journal(Log::Access, e))?)
        } else if target == "-" {
            match journald::stdout_is_journal()
                .then(AccessJournal::connect)
                .and_then(Result::ok)
            {
                Some(journal) => Output::Journal(journal),
                None => Output::Lines(Sink::stdout()),
            }
        } else {
            Output::Lines(
                Sink::file(Path::new(target)).map_err(|e| Error::open(Log::Access, target, e))?,
            )
        };
        Ok(AccessLog {
            out,
            format: AccessFormat::default(),
        })
    }

    /// Uses `format` for the lines to come.
    pub fn with_format(self, format: AccessFormat) -> AccessLog {
        AccessLog { format, ..self }
    }

    /// The format in use.
    pub fn format(&self) -> &AccessFormat {
        &self.format
    }

    /// Writes the line for `rec` with one `write(2)`, or sends its journal entry. The error is
    /// the write's; the request itself is unaffected, so callers typically count it and carry
    /// on.
    pub fn log(&self, rec: &AccessRecord<'_>) -> io::Result<()> {
        let write = |line: &mut Vec<u8>| {
            line.clear();
            self.format.format(rec, line);
            let result = match &self.out {
                Output::Lines(sink) => {
                    line.push(b'\n');
                    sink.write_all(line)
                }
                Output::Journal(journal) => {
                    send_to_journal(journal, rec, &String::from_utf8_lossy(line));
                    Ok(())
                }
            };
            if line.capacity() > KEEP_CAPACITY {
                *line = Vec::new();
            }
            result
        };
        LINE.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut Vec::new()),
        })
        // Thread teardown: no thread-local left, format into a fresh buffer.
        .unwrap_or_else(|_| write(&mut Vec::new()))
    }

    /// The line sink (tests only: their access logs are files or stdout).
    #[cfg(test)]
    fn sink(&self) -> &Sink {
        match &self.out {
            Output::Lines(sink) => sink,
            Output::Journal(_) => panic!("this access log is the journal"),
        }
    }

    /// Reopens the log file by its path (logrotate moved it away); a no-op for stdout and the
    /// journal.
    pub fn reopen(&self) -> io::Result<()> {
        match &self.out {
            Output::Lines(sink) => sink.reopen(),
            Output::Journal(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::access_format::DEFAULT_ACCESS_LOG_FORMAT;
    use crate::logging::temp_dir;
    use http::HeaderValue;

    /// 2026-11-27 14:30:01 UTC.
    const SAMPLE: u64 = 1_795_789_801;

    struct Sample {
        req: HeaderMap,
        resp: HeaderMap,
    }

    fn sample() -> Sample {
        let mut req = HeaderMap::new();
        req.insert(header::HOST, HeaderValue::from_static("example.com"));
        req.insert(
            header::REFERER,
            HeaderValue::from_static("https://example.com/from"),
        );
        req.insert(header::USER_AGENT, HeaderValue::from_static("curl/8.5.0"));
        req.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        req.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let mut resp = HeaderMap::new();
        resp.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        resp.insert("x-request-id", HeaderValue::from_static("abc123"));
        Sample { req, resp }
    }

    fn record(s: &Sample) -> AccessRecord<'_> {
        AccessRecord {
            remote_addr: "192.0.2.7",
            method: "GET",
            path: "/caf%C3%A9/a%20b",
            query: "q=1&r=%22x%22",
            protocol: "HTTP/1.1",
            status: 200,
            body_bytes: 1234,
            request_headers: &s.req,
            response_headers: &s.resp,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(SAMPLE),
            // Ends 2.5 s later, still in second :03 of the sample minute.
            duration: Duration::from_micros(2_500_123),
            pid: 4321,
            environ: &[("REMOTE_PORT", "51234"), ("wsgi.url_scheme", "https")],
        }
    }

    fn line(format: &str, rec: &AccessRecord<'_>) -> String {
        let mut out = Vec::new();
        AccessFormat::parse(format).unwrap().format(rec, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// `%(t)s` of the sample record: its end, 14:30:03 UTC, in this machine's zone.
    fn sample_t() -> String {
        String::from_utf8(clock::stamps(SAMPLE as i64 + 2).access.to_vec()).unwrap()
    }

    #[test]
    fn default_format_prints_the_combined_line() {
        let s = sample();
        let got = line(DEFAULT_ACCESS_LOG_FORMAT, &record(&s));
        assert_eq!(
            got,
            format!(
                "192.0.2.7 - - {} \"GET /caf%C3%A9/a%20b?q=1&r=%22x%22 HTTP/1.1\" 200 1234 \
                 \"https://example.com/from\" \"curl/8.5.0\"",
                sample_t()
            )
        );
        if sample_t().ends_with("+0000]") {
            assert!(got.contains(" - - [27/Nov/2026:14:30:03 +0000] \"GET "));
        }
    }

    #[test]
    fn every_simple_atom() {
        let s = sample();
        let rec = record(&s);
        let cases = [
            ("h", "192.0.2.7"),
            ("l", "-"),
            ("u", "-"),
            ("r", "GET /caf%C3%A9/a%20b?q=1&r=%22x%22 HTTP/1.1"),
            ("m", "GET"),
            ("U", "/café/a b"),
            ("q", "q=1&r=%22x%22"),
            ("H", "HTTP/1.1"),
            ("s", "200"),
            ("B", "1234"),
            ("b", "1234"),
            ("f", "https://example.com/from"),
            ("a", "curl/8.5.0"),
            ("T", "2"),
            ("M", "2500"),
            ("D", "2500123"),
            ("L", "2.500123"),
            ("p", "<4321>"),
        ];
        for (atom, want) in cases {
            assert_eq!(line(&format!("%({atom})s"), &rec), want, "atom {atom}");
        }
        assert_eq!(line("%(t)s", &rec), sample_t());
    }

    #[test]
    fn durations_small_and_exact() {
        let s = sample();
        let mut rec = record(&s);
        rec.duration = Duration::from_nanos(123_999);
        assert_eq!(line("%(T)s %(M)s %(D)s %(L)s", &rec), "0 0 123 0.000123");
        rec.duration = Duration::from_secs(61);
        assert_eq!(
            line("%(T)s %(M)s %(D)s %(L)s", &rec),
            "61 61000 61000000 61.000000"
        );
        assert_eq!(line("%(T)d %(D)i", &rec), "61 61000000");
    }

    #[test]
    fn empty_body_b_is_dash_and_big_b_is_zero() {
        let s = sample();
        let mut rec = record(&s);
        rec.body_bytes = 0;
        rec.status = 304;
        assert_eq!(line("%(s)s %(b)s %(B)s", &rec), "304 - 0");
    }

    #[test]
    fn no_query_leaves_r_without_question_mark_and_q_empty() {
        let s = sample();
        let mut rec = record(&s);
        rec.path = "/";
        rec.query = "";
        assert_eq!(line("\"%(r)s\" [%(q)s]", &rec), "\"GET / HTTP/1.1\" []");
    }

    #[test]
    fn header_atoms_are_case_insensitive_and_take_the_last_value() {
        let s = sample();
        let rec = record(&s);
        assert_eq!(line("%({X-Forwarded-For}i)s", &rec), "10.0.0.2");
        assert_eq!(line("%({x-forwarded-for}i)s", &rec), "10.0.0.2");
        assert_eq!(line("%({X-FORWARDED-FOR}I)s", &rec), "10.0.0.2");
        assert_eq!(line("%({Host}i)s", &rec), "example.com");
        assert_eq!(
            line("%({Content-Type}o)s", &rec),
            "text/html; charset=utf-8"
        );
        assert_eq!(line("%({X-Request-ID}O)s", &rec), "abc123");
        // A request header is not a response header, nor the reverse.
        assert_eq!(line("%({host}o)s %({x-request-id}i)s", &rec), "- -");
    }

    #[test]
    fn missing_values_are_dashes() {
        let req = HeaderMap::new();
        let resp = HeaderMap::new();
        let mut s = sample();
        s.req = req;
        s.resp = resp;
        let rec = record(&s);
        assert_eq!(
            line(
                "%(u)s %(f)s %(a)s %({x-missing}i)s %({x-missing}o)s %({UNITCORN_NO_SUCH_VAR}e)s",
                &rec
            ),
            "- - - - - -"
        );
        // Not a valid header name: can never be present.
        assert_eq!(line("%({bad name}i)s", &rec), "-");
    }

    #[test]
    fn present_but_empty_values_stay_empty() {
        let mut s = sample();
        s.req.insert(header::REFERER, HeaderValue::from_static(""));
        assert_eq!(line("[%(f)s]", &record(&s)), "[]");
    }

    #[test]
    fn env_atoms_read_the_record_environ_the_request_then_the_process() {
        let mut s = sample();
        s.req.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let rec = record(&s);
        assert_eq!(line("%({REMOTE_PORT}e)s", &rec), "51234");
        assert_eq!(line("%({remote_port}e)s", &rec), "51234");
        assert_eq!(line("%({wsgi.url_scheme}e)s", &rec), "https");
        assert_eq!(line("%({REMOTE_ADDR}e)s", &rec), "192.0.2.7");
        assert_eq!(line("%({REQUEST_METHOD}e)s", &rec), "GET");
        assert_eq!(line("%({PATH_INFO}e)s", &rec), "/café/a b");
        assert_eq!(line("%({QUERY_STRING}e)s", &rec), "q=1&r=%22x%22");
        assert_eq!(line("%({SERVER_PROTOCOL}e)s", &rec), "HTTP/1.1");
        assert_eq!(
            line("%({RAW_URI}e)s", &rec),
            "/caf%C3%A9/a%20b?q=1&r=%22x%22"
        );
        assert_eq!(
            line("%({HTTP_X_FORWARDED_FOR}e)s", &rec),
            "10.0.0.1,10.0.0.2"
        );
        assert_eq!(line("%({http_host}e)s", &rec), "example.com");
        assert_eq!(line("%({CONTENT_TYPE}e)s", &rec), "application/json");
        // The process environment (PATH is set in any test run), upper-cased when not found.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(line("%({PATH}e)s", &rec), path);
        assert_eq!(line("%({path}e)s", &rec), path);
    }

    #[test]
    fn basic_auth_user() {
        let mut s = sample();
        let mut user_of = |auth: &str| {
            s.req
                .insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
            line("%(u)s", &record(&s))
        };
        // base64("alice:secret")
        assert_eq!(user_of("Basic YWxpY2U6c2VjcmV0"), "alice");
        assert_eq!(user_of("basic  YWxpY2U6c2VjcmV0 "), "alice");
        // base64("bob:pa:ss"), unpadded length 12: no padding needed.
        assert_eq!(user_of("Basic Ym9iOnBhOnNz"), "bob");
        // base64("é:x") needs one "=".
        assert_eq!(user_of("Basic w6k6eA=="), "é");
        assert_eq!(user_of("Basic w6k6eA"), "-", "unpadded: Python rejects it");
        assert_eq!(user_of("Bearer YWxpY2U6c2VjcmV0"), "-");
        // base64("nocolon")
        assert_eq!(user_of("Basic bm9jb2xvbg=="), "-");
        // base64(":pw"): empty user.
        assert_eq!(user_of("Basic OnB3"), "-");
        assert_eq!(user_of("Basic"), "-");
        // base64("a\"b:c"): the quote is escaped like any text.
        assert_eq!(user_of("Basic YSJiOmM="), "a\\\"b");
        // Python's lenient reading, each checked against base64.b64decode: bytes outside the
        // alphabet are skipped, extra padding is fine, the data ends where padding completes
        // a group, and the bits past the last byte are not checked.
        assert_eq!(user_of("Basic YWxp Y2U6 c2VjcmV0"), "alice");
        assert_eq!(user_of("Basic !YWxpY2U6c2VjcmV0!"), "alice");
        assert_eq!(user_of("Basic YWxpY2U6c2VjcmV0==="), "alice");
        // base64("bob:x") then more: only "bob:x" is read.
        assert_eq!(user_of("Basic Ym9iOng=YWxpY2U6"), "bob");
        // "YWI6eR==" is "ab:y" with nonzero unused bits.
        assert_eq!(user_of("Basic YWI6eR=="), "ab");
        assert_eq!(user_of("Basic w6k6eA="), "-", "one pad short");
        assert_eq!(user_of("Basic YWxpY2U6c2VjcmV"), "-", "a lone sextet");
    }

    #[test]
    fn quotes_and_control_characters_are_escaped() {
        let mut s = sample();
        s.req
            .insert(header::USER_AGENT, HeaderValue::from_static("evil\" \"x"));
        s.req
            .insert(header::REFERER, HeaderValue::from_static("a\tb"));
        let mut rec = record(&s);
        rec.path = "/a%0Ab%22c%7F";
        assert_eq!(line("%(a)s", &rec), r#"evil\" \"x"#);
        assert_eq!(line("%(f)s", &rec), r"a\x09b");
        assert_eq!(line("%(U)s", &rec), r#"/a\x0ab\"c\x7f"#);
        assert_eq!(
            line("%(r)s", &rec),
            "GET /a%0Ab%22c%7F?q=1&r=%22x%22 HTTP/1.1"
        );
    }

    #[test]
    fn percent_and_literals() {
        let s = sample();
        let rec = record(&s);
        assert_eq!(line("100%% %(s)s done", &rec), "100% 200 done");
        assert_eq!(line("", &rec), "");
        assert_eq!(line("plain", &rec), "plain");
    }

    #[test]
    fn access_log_writes_one_line_per_request_and_reopens() {
        let dir = temp_dir("access-log");
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        let log = AccessLog::open(path.to_str().unwrap())
            .unwrap()
            .with_format(AccessFormat::parse("%(m)s %(U)s %(s)s").unwrap());
        let s = sample();
        let rec = record(&s);
        log.log(&rec).unwrap();
        log.log(&rec).unwrap();
        assert_eq!(log.sink().write_calls(), 2);
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen().unwrap();
        log.log(&AccessRecord { status: 404, ..rec }).unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "GET /café/a b 200\nGET /café/a b 200\n"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "GET /café/a b 404\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn open_error_names_the_path() {
        let err = AccessLog::open("/nonexistent-unitcorn-dir/access.log").unwrap_err();
        assert!(err.is_open(), "{err:?}");
        assert_eq!(
            format!("{err:#}"),
            "cannot open the access log /nonexistent-unitcorn-dir/access.log: the directory \
             /nonexistent-unitcorn-dir does not exist"
        );
    }

    #[test]
    fn stdout_target() {
        let log = AccessLog::open("-").unwrap();
        assert!(log.sink().path().is_none());
        assert_eq!(log.format(), &AccessFormat::default());
    }
}
