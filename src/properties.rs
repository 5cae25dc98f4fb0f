//! Fuzzing, as property tests (proptest; the coverage-guided targets are in fuzz/): every
//! parser unitcorn owns gets arbitrary input and must answer without panicking, and what
//! it accepts must mean what a generated valid input says. The parsers: configuration
//! files, bind addresses, the access-log format, the PROXY protocol header and the
//! strict HTTP/1.1 scanner in front of hyper.
//!
//! Bounded: each property runs `PROPTEST_CASES` cases (256 by default; CI sets it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use proptest::prelude::*;

use crate::config::bind::{self, BindAddr, FdRef};
use crate::logging::AccessFormat;
use crate::worker::proxy_protocol::{self, Header, Mode, Parsed};
use crate::worker::strict::{Scanner, Verdict};

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::V1), Just(Mode::V2), Just(Mode::Auto)]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

/// A v1 or v2 header for `source`/`destination` (same family).
fn proxy_header(v2: bool, source: SocketAddr, destination: SocketAddr, tlv: Vec<u8>) -> Vec<u8> {
    if !v2 {
        let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        return format!(
            "PROXY {family} {} {} {} {}\r\n",
            source.ip(),
            destination.ip(),
            source.port(),
            destination.port()
        )
        .into_bytes();
    }
    let mut body = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend(s.octets());
            body.extend(d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            body.extend(s.octets());
            body.extend(d.octets());
            0x21
        }
        _ => unreachable!("same family"),
    };
    body.extend(source.port().to_be_bytes());
    body.extend(destination.port().to_be_bytes());
    body.extend(tlv);
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend([0x21, family]);
    out.extend((body.len() as u16).to_be_bytes());
    out.extend(body);
    out
}

fn same_family_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| (
                SocketAddr::new(IpAddr::V4(s.into()), sp),
                SocketAddr::new(IpAddr::V4(d.into()), dp)
            )),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| (
                SocketAddr::new(IpAddr::V6(s.into()), sp),
                SocketAddr::new(IpAddr::V6(d.into()), dp)
            )),
    ]
}

/// A well-formed request: method, target, headers, and a body framed by Content-Length
/// or chunked encoding.
fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        "/[a-z0-9/._~%-]{0,40}(\\?[a-z0-9=&]{0,20})?",
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,30}"), 0..8),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
        1usize..64,
    )
        .prop_map(|(method, target, headers, body, chunked, chunk)| {
            let mut out = format!("{method} {target} HTTP/1.1\r\nHost: example.test\r\n");
            for (name, value) in headers {
                let lower = name.to_ascii_lowercase();
                if ["host", "content-length", "transfer-encoding"].contains(&lower.as_str()) {
                    continue;
                }
                out.push_str(&format!("{name}: {}\r\n", value.trim()));
            }
            let mut out = out.into_bytes();
            if chunked {
                out.extend(b"Transfer-Encoding: chunked\r\n\r\n");
                for piece in body.chunks(chunk) {
                    out.extend(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend(piece);
                    out.extend(b"\r\n");
                }
                out.extend(b"0\r\n\r\n");
            } else {
                out.extend(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend(&body);
            }
            out
        })
}

/// Format a request with every field set, as a worker would log it.
fn format_sample(format: &AccessFormat, out: &mut Vec<u8>) {
    let mut request = http::HeaderMap::new();
    request.insert("user-agent", "fuzz/1.0".parse().unwrap());
    request.insert("x-id", "a\"b".parse().unwrap());
    let mut response = http::HeaderMap::new();
    response.insert("server", "unitcorn".parse().unwrap());
    let record = crate::logging::AccessRecord {
        remote_addr: "192.0.2.1",
        method: "GET",
        path: "/a%20b",
        query: "x=1",
        protocol: "HTTP/1.1",
        status: 200,
        body_bytes: 13,
        request_headers: &request,
        response_headers: &response,
        start: std::time::SystemTime::now(),
        duration: std::time::Duration::from_micros(1234),
        pid: 42,
        environ: &[("REMOTE_PORT", "40000")],
    };
    format.format(&record, out);
}

/// Feed `stream` to a scanner in pieces cut at `cuts`; the first verdict that is not
/// Pass, with its index in the whole stream.
fn scan_in_pieces(stream: &[u8], cuts: &[usize], permit_folding: bool) -> Verdict {
    let mut scanner = Scanner::new(permit_folding);
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.push(0);
    bounds.push(stream.len());
    bounds.sort_unstable();
    bounds.dedup();
    for pair in bounds.windows(2) {
        let mut piece = stream[pair[0]..pair[1]].to_vec();
        match scanner.scan(&mut piece) {
            Verdict::Pass => {}
            Verdict::RefuseHead(at, why) => return Verdict::RefuseHead(pair[0] + at, why),
            Verdict::BreakBody(at, why) => return Verdict::BreakBody(pair[0] + at, why),
        }
    }
    Verdict::Pass
}

proptest! {
    // ----- configuration files

    #[test]
    fn config_file_any_text_is_an_answer_naming_the_file(text in "\\PC{0,200}") {
        let path = Path::new("/etc/unitcorn/fuzz.toml");
        if let Err(e) = crate::config::file::parse(path, &text) {
            let message = e.to_string();
            prop_assert!(message.contains("/etc/unitcorn/fuzz.toml"), "{}", message);
        }
    }

    #[test]
    fn config_file_toml_like_lines_never_panic(
        lines in prop::collection::vec(
            ("[a-z_]{1,24}", prop_oneof![
                "-?[0-9]{1,12}".prop_map(|s| s),
                "\"[ -~]{0,20}\"".prop_map(|s| s),
                Just("true".to_owned()),
                "\\[(\"[a-z0-9:./]{0,10}\", ?){0,3}\\]".prop_map(|s| s),
                "\\{ ?(\"[A-Z-]{1,8}\" = \"[a-z]{0,5}\",? ?){0,3}\\}".prop_map(|s| s),
            ]),
            0..8,
        )
    ) {
        let text: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let _ = crate::config::file::parse(Path::new("fuzz.toml"), &text);
    }

    #[test]
    fn config_file_workers_reads_back(n in 1u64..10_000, pad in " {0,3}", comment in "(# [ -~]{0,20})?") {
        let text = format!("workers{pad}={pad}{n}{pad}{comment}\n");
        let values = crate::config::file::parse(Path::new("a.toml"), &text).unwrap();
        prop_assert_eq!(values.len(), 1);
        prop_assert_eq!(values[0].0.name, "workers");
    }

    // ----- bind addresses

    #[test]
    fn bind_any_text_never_panics(s in "\\PC{0,60}") {
        let _ = bind::parse(&s);
    }

    #[test]
    fn bind_display_reads_back(
        addr in prop_oneof![
            (ip(), any::<u16>()).prop_map(|(ip, port)| BindAddr::Tcp(ip.to_string(), port)),
            ("[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9-]{0,10}){0,3}", any::<u16>())
                .prop_map(|(host, port)| BindAddr::Tcp(host, port)),
            "/[a-zA-Z0-9_./-]{1,40}".prop_map(|p| BindAddr::Unix(p.into())),
            (0i32..100_000).prop_map(|n| BindAddr::Fd(FdRef::Num(n))),
        ]
    ) {
        let written = addr.to_string();
        prop_assert_eq!(bind::parse(&written), Ok(addr), "{}", written);
    }

    // ----- access-log format

    #[test]
    fn access_format_any_text_parses_or_says_why_and_formats(s in "[ -~]{0,80}") {
        if let Ok(format) = AccessFormat::parse(&s) {
            let mut out = Vec::new();
            format_sample(&format, &mut out);
            // Parsing what it prints back gives the same format.
            prop_assert_eq!(AccessFormat::parse(&format.to_string()), Ok(format));
        }
    }

    #[test]
    fn access_format_atoms_and_text(
        parts in prop::collection::vec(prop_oneof![
            prop::sample::select(vec![
                "%(h)s", "%(l)s", "%(u)s", "%(t)s", "%(r)s", "%(m)s", "%(U)s", "%(q)s",
                "%(H)s", "%(s)s", "%(B)s", "%(b)s", "%(f)s", "%(a)s", "%(T)s", "%(M)s",
                "%(D)s", "%(L)s", "%(p)s", "%({x-id}i)s", "%({server}o)s",
                "%({REMOTE_PORT}e)s",
            ]).prop_map(str::to_owned),
            "[a-zA-Z \"\\[\\]:/-]{0,6}".prop_map(|s| s),
        ], 0..12)
    ) {
        let text: String = parts.concat();
        let format = AccessFormat::parse(&text);
        prop_assert!(format.is_ok(), "{:?}: {:?}", text, format);
        let mut out = Vec::new();
        format_sample(&format.unwrap(), &mut out);
        prop_assert!(!out.contains(&b'\n'), "one line: {:?}", String::from_utf8_lossy(&out));
    }

    // ----- PROXY protocol

    #[test]
    fn proxy_any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), mode in mode()) {
        let _ = proxy_protocol::parse(&bytes, mode);
    }

    #[test]
    fn proxy_valid_headers_parse_whole_and_prefixes_wait(
        v2 in any::<bool>(),
        (source, destination) in same_family_pair(),
        tlv in prop::collection::vec(any::<u8>(), 0..40),
        http in prop::collection::vec(any::<u8>(), 0..60),
    ) {
        let header = proxy_header(v2, source, destination, if v2 { tlv } else { Vec::new() });
        let mode = if v2 { Mode::V2 } else { Mode::V1 };
        let mut stream = header.clone();
        stream.extend(&http);
        for mode in [mode, Mode::Auto] {
            prop_assert_eq!(
                proxy_protocol::parse(&stream, mode),
                Ok(Parsed::Header {
                    header: Header::Proxied { source, destination },
                    len: header.len()
                })
            );
            for cut in 0..header.len() {
                prop_assert_eq!(proxy_protocol::parse(&header[..cut], mode), Ok(Parsed::Incomplete), "cut {}", cut);
            }
        }
    }

    // ----- the strict HTTP/1.1 scanner

    #[test]
    fn strict_any_bytes_any_pieces_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        folding in any::<bool>(),
    ) {
        let _ = scan_in_pieces(&bytes, &cuts, folding);
    }

    #[test]
    fn strict_valid_pipelines_pass_however_they_are_read(
        requests in prop::collection::vec(valid_request(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let stream = requests.concat();
        prop_assert_eq!(scan_in_pieces(&stream, &cuts, false), Verdict::Pass);
    }

    #[test]
    fn strict_verdict_does_not_depend_on_how_the_bytes_arrive(
        requests in prop::collection::vec(valid_request(), 1..3),
        at in any::<usize>(),
        junk in prop::collection::vec(prop::sample::select(vec![b'\n', b'\r', b' ', b'\t', 0u8, b':', b'0', b'x']), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 1..8),
    ) {
        // A valid pipeline with a few framing-relevant bytes spliced in somewhere.
        let mut stream = requests.concat();
        let at = at % (stream.len() + 1);
        stream.splice(at..at, junk);
        let whole = scan_in_pieces(&stream, &[], false);
        let pieces = scan_in_pieces(&stream, &cuts, false);
        prop_assert_eq!(whole, pieces, "{:?}", String::from_utf8_lossy(&stream));
    }
}
