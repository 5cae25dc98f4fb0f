//! `statsd_host`: where the metrics go, read as gunicorn reads it.

use std::net::Ipv6Addr;
use std::path::PathBuf;

/// gunicorn's default StatsD port.
const DEFAULT_PORT: u16 = 8125;

/// A StatsD server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host name or IP literal (without brackets) and a UDP port.
    Udp(String, u16),
    /// A datagram unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Udp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Udp(host, port) => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A text that is not a StatsD address: the text and what is wrong with it. (config's own,
/// so that the metrics layer above wraps it and not the other way round.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    text: String,
    problem: Problem,
}

/// What is wrong in an address, with the part that is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    NoSocketPath,
    UnclosedBracket,
    AfterBracket { host: String },
    NoHost,
    NotIpv6 { host: String },
    Port { port: String },
}

impl AddressError {
    fn new(text: &str, problem: Problem) -> AddressError {
        AddressError {
            text: text.to_owned(),
            problem,
        }
    }
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.text;
        match &self.problem {
            Problem::NoSocketPath => write!(f, "{s:?} names no socket path"),
            Problem::UnclosedBracket => write!(f, "{s:?} has a '[' without its ']'"),
            Problem::AfterBracket { host } => {
                write!(f, "{s:?}: after [{host}] only :PORT may follow")
            }
            Problem::NoHost => write!(f, "{s:?} names no host; use HOST:PORT"),
            Problem::NotIpv6 { host } => write!(f, "{s:?}: {host:?} is not an IPv6 address"),
            Problem::Port { port } => write!(
                f,
                "{s:?} has a port {port:?} that is not a number from 1 to 65535"
            ),
        }
    }
}

impl std::error::Error for AddressError {}

/// `HOST:PORT`, `HOST` (port 8125), `[IPv6]:PORT`, `[IPv6]`, a bare IPv6 address,
/// `unix:PATH` or `unix://PATH`. As in gunicorn, `unix:` followed by digits only is the host
/// `unix` and that port (gunicorn keeps that reading for backward compatibility).
pub fn parse(s: &str) -> Result<Address, AddressError> {
    let s = s.trim();
    let port_only = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = s.strip_prefix("unix:")
        && !port_only(rest)
    {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(AddressError::new(s, Problem::NoSocketPath));
        }
        return Ok(Address::Unix(PathBuf::from(path)));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| AddressError::new(s, Problem::UnclosedBracket))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                AddressError::new(
                    s,
                    Problem::AfterBracket {
                        host: host.to_owned(),
                    },
                )
            })?),
        };
        (host, port)
    } else if s.parse::<Ipv6Addr>().is_ok() {
        (s, None)
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(AddressError::new(s, Problem::NoHost));
    }
    if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
        return Err(AddressError::new(
            s,
            Problem::NotIpv6 {
                host: host.to_owned(),
            },
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| AddressError::new(s, Problem::Port { port: p.to_owned() }))?,
    };
    Ok(Address::Udp(host.to_owned(), port))
}

/// The settings table's check: the value stays as written; the message follows the setting's
/// name there.
pub(crate) fn check(s: &str) -> Result<String, String> {
    parse(s).map(|_| s.to_owned()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse`'s result with the error as its text, to compare with `Ok(..)`.
    fn parse_ok(s: &str) -> Result<Address, String> {
        parse(s).map_err(|e| e.to_string())
    }

    fn udp(host: &str, port: u16) -> Address {
        Address::Udp(host.into(), port)
    }

    #[test]
    fn reads_gunicorns_forms() {
        assert_eq!(parse_ok("localhost:8125"), Ok(udp("localhost", 8125)));
        assert_eq!(parse_ok("127.0.0.1:9999"), Ok(udp("127.0.0.1", 9999)));
        assert_eq!(parse_ok("statsd"), Ok(udp("statsd", 8125)));
        assert_eq!(parse_ok("[::1]:9125"), Ok(udp("::1", 9125)));
        assert_eq!(parse_ok("[::1]"), Ok(udp("::1", 8125)));
        assert_eq!(parse_ok("::1"), Ok(udp("::1", 8125)));
        assert_eq!(
            parse_ok("unix:/run/statsd.sock"),
            Ok(Address::Unix("/run/statsd.sock".into()))
        );
        assert_eq!(
            parse_ok("unix:///run/statsd.sock"),
            Ok(Address::Unix("/run/statsd.sock".into()))
        );
        // gunicorn's backward-compatible reading.
        assert_eq!(parse_ok("unix:8125"), Ok(udp("unix", 8125)));
    }

    #[test]
    fn refuses_what_cannot_be_an_address() {
        for bad in [
            "",
            ":8125",
            "host:",
            "host:0",
            "host:http",
            "host:70000",
            "[::1",
            "[::1]x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse("host:http").unwrap_err().to_string(),
            r#""host:http" has a port "http" that is not a number from 1 to 65535"#
        );
    }

    #[test]
    fn prints_back_as_read() {
        for s in ["localhost:8125", "[::1]:9125", "unix:/run/s.sock"] {
            assert_eq!(parse_ok(s).unwrap().to_string(), s);
        }
    }
}
