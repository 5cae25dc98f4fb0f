//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer that passes TCP
//! through (HAProxy, AWS NLB, …) prefixes each connection with the client's address. Only
//! the parser lives here; `accept` reads the header off the socket before HTTP starts.
//!
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Which versions the `proxy_protocol` setting accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    V1,
    V2,
    /// Either version, or none: a connection without a header is plain HTTP.
    Auto,
}

impl Mode {
    /// The setting's value; `None` is `off`.
    pub fn from_setting(value: &str) -> Option<Mode> {
        match value {
            "v1" => Some(Mode::V1),
            "v2" => Some(Mode::V2),
            "auto" => Some(Mode::Auto),
            _ => None,
        }
    }
}

/// The longest header: a v1 line is at most 107 bytes; v2 is 16 bytes plus its length.
pub const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Addresses plus some TLVs; anything longer is refused rather than buffered.
pub const V2_MAX: usize = 16 + 512;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A proxied connection: the client's address, and the one it connected to.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The proxy's own connection (v2 LOCAL, v1 UNKNOWN, or an address family other than
    /// TCP over IPv4/IPv6): the socket's peer stays the client.
    Local,
}

/// The outcome of looking at the first bytes of a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A header of `len` bytes: HTTP starts after it.
    Header { header: Header, len: usize },
    /// More bytes are needed to decide.
    Incomplete,
    /// No PROXY header here (allowed in `Auto` mode only).
    Absent,
}

/// Parse the start of a connection in `mode`. An error is a header that is malformed, or
/// missing where the mode requires it: the connection is dropped.
pub fn parse(buf: &[u8], mode: Mode) -> Result<Parsed, String> {
    let v1 = starts_like(buf, b"PROXY ");
    let v2 = starts_like(buf, V2_SIGNATURE);
    if !v1 && !v2 {
        return match mode {
            Mode::Auto => Ok(Parsed::Absent),
            Mode::V1 => Err("no PROXY protocol v1 header (proxy_protocol = \"v1\")".into()),
            Mode::V2 => Err("no PROXY protocol v2 header (proxy_protocol = \"v2\")".into()),
        };
    }
    if (v1 && buf.len() < 6) || (v2 && buf.len() < V2_SIGNATURE.len()) {
        return Ok(Parsed::Incomplete);
    }
    match (mode, v1) {
        (Mode::V1 | Mode::Auto, true) => parse_v1(buf),
        (Mode::V2 | Mode::Auto, false) => parse_v2(buf),
        (Mode::V1, false) => Err("a PROXY protocol v2 header, but proxy_protocol = \"v1\"".into()),
        (Mode::V2, true) => Err("a PROXY protocol v1 header, but proxy_protocol = \"v2\"".into()),
    }
}

/// `buf` starts with `prefix`, as far as `buf` goes.
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, String> {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err("PROXY v1 header longer than 107 bytes".into())
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| "PROXY v1 header is not ASCII")?;
    let bad = |why: &str| format!("bad PROXY v1 header {line:?}: {why}");
    let mut fields = line.split(' ');
    fields.next(); // "PROXY"
    let header = match fields.next() {
        Some("UNKNOWN") => Header::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let parts: Vec<&str> = fields.collect();
            let [src, dst, sport, dport] = parts[..] else {
                return Err(bad("expected 4 fields after the protocol"));
            };
            let ip = |s: &str| -> Result<IpAddr, String> {
                let ip: IpAddr = s.parse().map_err(|_| bad("not an IP address"))?;
                match (family, ip) {
                    ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(ip),
                    _ => Err(bad("address family does not match")),
                }
            };
            let port = |s: &str| -> Result<u16, String> {
                // No sign, no leading zero (the spec's "0" or 1-65535 in decimal).
                if s.is_empty()
                    || !s.bytes().all(|b| b.is_ascii_digit())
                    || (s.len() > 1 && s.starts_with('0'))
                {
                    return Err(bad("not a port"));
                }
                s.parse().map_err(|_| bad("not a port"))
            };
            Header::Proxied {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(bad("unknown protocol (TCP4, TCP6 or UNKNOWN)")),
    };
    Ok(Parsed::Header {
        header,
        len: end + 2,
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, String> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let version_command = buf[12];
    let family = buf[13];
    let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version_command >> 4 != 2 {
        return Err(format!(
            "PROXY v2 header with version {}",
            version_command >> 4
        ));
    }
    if 16 + length > V2_MAX {
        return Err(format!("PROXY v2 header of {length} bytes is too long"));
    }
    if buf.len() < 16 + length {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[16..16 + length];
    let header = match (version_command & 0x0f, family) {
        (0x0, _) => Header::Local,
        (0x1, 0x11) if body.len() >= 12 => {
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Header::Proxied {
                source: SocketAddr::new(IpAddr::V4(ip(0)), port(8)),
                destination: SocketAddr::new(IpAddr::V4(ip(4)), port(10)),
            }
        }
        (0x1, 0x21) if body.len() >= 36 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Header::Proxied {
                source: SocketAddr::new(IpAddr::V6(ip(0)), port(32)),
                destination: SocketAddr::new(IpAddr::V6(ip(16)), port(34)),
            }
        }
        (0x1, 0x11 | 0x21) => return Err("PROXY v2 header too short for its addresses".into()),
        // UNSPEC, unix or datagram families: nothing we can report as REMOTE_ADDR.
        (0x1, _) => Header::Local,
        (command, _) => return Err(format!("PROXY v2 header with command {command}")),
    };
    Ok(Parsed::Header {
        header,
        len: 16 + length,
    })
}

/// Read a connection's PROXY header (bounded by the caller's timeout). Returns the client
/// address it names (`None`: keep the socket's peer) and the bytes read past it, which
/// are the start of the HTTP request.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: Mode,
) -> Result<(Option<Header>, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(V1_MAX + 1);
    let mut chunk = [0u8; V2_MAX];
    loop {
        let room = V2_MAX - buf.len();
        let n = stream
            .read(&mut chunk[..room.max(1)])
            .await
            .map_err(|e| format!("reading the PROXY header: {e}"))?;
        if n == 0 {
            return Err("the connection closed before its PROXY header ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf, mode)? {
            Parsed::Header { header, len } => {
                let rest = buf.split_off(len);
                return Ok((Some(header), rest));
            }
            Parsed::Absent => return Ok((None, buf)),
            Parsed::Incomplete if buf.len() >= V2_MAX => {
                return Err("PROXY header too long".into());
            }
            Parsed::Incomplete => {}
        }
    }
}

/// A stream that first replays bytes already read from it (those that followed the
/// PROXY header), then reads on. Writes go straight through.
pub struct Prefixed<S> {
    inner: S,
    prefix: Vec<u8>,
    at: usize,
}

impl<S> Prefixed<S> {
    pub fn new(inner: S, prefix: Vec<u8>) -> Self {
        Prefixed {
            inner,
            prefix,
            at: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line, Mode::V1),
            Ok(Parsed::Header {
                header: proxied("192.0.2.7:56324", "10.0.0.1:443"),
                len: 41
            })
        );
        let line = b"PROXY TCP6 2001:db8::1 ::1 65535 80\r\n";
        assert!(matches!(
            parse(line, Mode::Auto),
            Ok(Parsed::Header {
                header: Header::Proxied { .. },
                len: 37
            })
        ));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", Mode::V1),
            Ok(Parsed::Header {
                header: Header::Local,
                len: 15
            })
        );
    }

    #[test]
    fn v1_incomplete_then_refusals() {
        assert_eq!(parse(b"PRO", Mode::V1), Ok(Parsed::Incomplete));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4", Mode::V1),
            Ok(Parsed::Incomplete)
        );
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n"[..],
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(
                parse(bad, Mode::V1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            parse(
                &[b'P', b'R', b'O', b'X', b'Y', b' ', b'x'].repeat(20),
                Mode::V1
            )
            .is_err()
        );
        assert!(parse(b"GET / HTTP/1.1\r\n", Mode::V1).is_err());
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", Mode::Auto), Ok(Parsed::Absent));
        assert!(parse(b"PROXY UNKNOWN\r\n", Mode::V2).is_err());
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend((body.len() as u16).to_be_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn v2_ipv4_ipv6_local_and_tlvs() {
        let mut body = vec![192, 0, 2, 7, 10, 0, 0, 1];
        body.extend(56324u16.to_be_bytes());
        body.extend(443u16.to_be_bytes());
        body.extend([0x04, 0x00, 0x01, 0xff]); // a TLV, skipped
        let header = v2(1, 0x11, &body);
        assert_eq!(
            parse(&header, Mode::V2),
            Ok(Parsed::Header {
                header: proxied("192.0.2.7:56324", "10.0.0.1:443"),
                len: 16 + 16
            })
        );
        assert_eq!(parse(&header[..20], Mode::Auto), Ok(Parsed::Incomplete));
        let mut body6 = [0u8; 36].to_vec();
        body6[15] = 1;
        body6[31] = 2;
        body6[32..34].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &body6), Mode::Auto),
            Ok(Parsed::Header {
                header: proxied("[::1]:8080", "[::2]:0"),
                len: 52
            })
        );
        assert_eq!(
            parse(&v2(0, 0x00, &[]), Mode::V2),
            Ok(Parsed::Header {
                header: Header::Local,
                len: 16
            })
        );
    }

    #[test]
    fn v2_refusals() {
        assert!(parse(&v2(1, 0x11, &[1, 2, 3]), Mode::V2).is_err());
        assert!(parse(&v2(5, 0x11, &[0; 12]), Mode::V2).is_err());
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(parse(&wrong_version, Mode::V2).is_err());
        assert!(parse(&v2(1, 0x11, &vec![0; 600]), Mode::V2).is_err());
        assert!(parse(&v2(1, 0x11, &[0; 12]), Mode::V1).is_err());
    }
}
