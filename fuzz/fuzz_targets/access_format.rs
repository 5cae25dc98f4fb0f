//! The access-log format (`access_log_format`): any format text compiles or is refused
//! with a message; a compiled format prints back (`Display`) as text that compiles to the
//! same format; and whatever the request holds, it adds no line end to the log line.
//!
//! Input: the format text, then optionally NUL and the request's method, path, query and
//! one header value, NUL-separated (so seeds can be plain format strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitcorn::fuzz_api::{self, AccessFormat};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let Ok(text) = std::str::from_utf8(parts.next().unwrap_or_default()) else {
        return;
    };
    let Ok(format) = AccessFormat::parse(text) else {
        return;
    };
    let written = format.to_string();
    assert_eq!(
        AccessFormat::parse(&written).as_ref(),
        Ok(&format),
        "{text:?} written as {written:?}"
    );
    let mut field = || String::from_utf8_lossy(parts.next().unwrap_or(b"/a%20b")).into_owned();
    let (method, path, query, header) = (field(), field(), field(), field());
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", "fuzz/1.0".parse().unwrap());
    if let Ok(value) = http::HeaderValue::from_bytes(header.as_bytes()) {
        headers.insert("x-id", value.clone());
        headers.insert("authorization", value);
    }
    let line = fuzz_api::access_line(&format, &method, &path, &query, &headers);
    // The operator may write line ends into the format's text; the request cannot add any.
    let ends = |b: &[u8]| b.iter().filter(|&&c| c == b'\n' || c == b'\r').count();
    assert!(
        ends(&line) <= ends(text.as_bytes()),
        "{text:?} printed {:?}",
        String::from_utf8_lossy(&line)
    );
});
