//! Bind addresses as gunicorn writes them: `HOST`, `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH`,
//! `fd://N`, and unitcorn's `fd://NAME` (a systemd `LISTEN_FDNAMES` name).
//!
//! This only parses. Resolving host names, binding and taking over inherited fds are the
//! listeners module's job.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;

/// The port of a bind address that names none, as in gunicorn.
pub const DEFAULT_PORT: u16 = 8000;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// A host name or IP address (IPv6 without brackets), and a port. Host names are
    /// lower-cased, as gunicorn does.
    Tcp(String, u16),
    /// A unix socket path.
    Unix(PathBuf),
    /// A socket the process inherited.
    Fd(FdRef),
}

/// An inherited socket: by number, or by its systemd name (`FileDescriptorName=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdRef {
    Num(i32),
    Name(String),
}

impl FromStr for BindAddr {
    type Err = String;

    /// Same as [`parse`].
    fn from_str(s: &str) -> Result<BindAddr, String> {
        parse(s)
    }
}

/// Parses one bind address (see [`BindAddr`]). The error quotes the address and says
/// what is wrong with it.
pub fn parse(s: &str) -> Result<BindAddr, String> {
    let bad = |why: &str| format!("bind address {s:?} {why}");

    if let Some(rest) = s.strip_prefix("unix:") {
        // gunicorn takes both unix:PATH and unix://PATH.
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(bad("has no path after \"unix:\" (e.g. unix:/run/app.sock)"));
        }
        return Ok(BindAddr::Unix(PathBuf::from(path)));
    }

    if let Some(rest) = s.strip_prefix("fd://") {
        if rest.is_empty() {
            return Err(bad(
                "has no fd number or name after \"fd://\" (e.g. fd://3)",
            ));
        }
        if rest.bytes().all(|b| b.is_ascii_digit()) {
            return match rest.parse::<i32>() {
                Ok(n) => Ok(BindAddr::Fd(FdRef::Num(n))),
                Err(_) => Err(bad("names a file descriptor number that is too large")),
            };
        }
        // systemd's rule for FileDescriptorName=: printable ASCII, no ':', at most 255.
        let valid_name =
            rest.len() <= 255 && rest.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid_name {
            return Err(bad(
                "has an fd name systemd would not give (printable ASCII, no ':', at most 255 characters)",
            ));
        }
        return Ok(BindAddr::Fd(FdRef::Name(rest.to_owned())));
    }

    let netloc = s.strip_prefix("tcp://").unwrap_or(s);
    if let Some((scheme, _)) = netloc.split_once("://") {
        return Err(bad(&format!(
            "has an unknown scheme {scheme:?}; use HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"
        )));
    }

    let (host, port) = if let Some(rest) = netloc.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(bad("opens '[' without a closing ']' (e.g. [::1]:8000)"));
        };
        // A zone (fe80::1%eth0) is the resolver's business; check the address part.
        let addr = inside.split('%').next().unwrap_or(inside);
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(bad(
                "has something other than an IPv6 address between [ and ]",
            ));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(bad("has text after ']' that is not \":PORT\"")),
            },
        };
        (inside.to_owned(), port)
    } else {
        match netloc.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err(bad(
                    "looks like an IPv6 address without brackets; write it as [ADDR]:PORT, e.g. [::1]:8000",
                ));
            }
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (netloc.to_owned(), None),
        }
    };

    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().map_err(|_| {
            bad(&format!(
                "has a port {p:?} that is not a number from 0 to 65535"
            ))
        })?,
    };

    // gunicorn binds "" (":8000", or an empty address) to every IPv4 interface.
    let host = if host.is_empty() {
        "0.0.0.0".to_owned()
    } else {
        host.to_ascii_lowercase()
    };
    let is_v6 = host.contains(':');
    if !is_v6
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(bad(
            "has a host that is neither an IP address nor a host name (expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N)",
        ));
    }
    Ok(BindAddr::Tcp(host, port))
}

impl fmt::Display for BindAddr {
    /// The canonical spelling, which `parse` reads back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            // A host named "unix" would read back as unix:PATH.
            BindAddr::Tcp(host, port) if host == "unix" => write!(f, "tcp://unix:{port}"),
            BindAddr::Tcp(host, port) => write!(f, "{host}:{port}"),
            // "unix://" is a prefix parse strips: a path that starts with "//" needs it.
            BindAddr::Unix(path) if path.to_string_lossy().starts_with("//") => {
                write!(f, "unix://{}", path.display())
            }
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            BindAddr::Fd(FdRef::Num(n)) => write!(f, "fd://{n}"),
            BindAddr::Fd(FdRef::Name(name)) => write!(f, "fd://{name}"),
        }
    }
}

/// The settings table's check for `bind`: the address must parse; it is kept as written.
pub(crate) fn check(s: &str) -> Result<String, String> {
    parse(s).map(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> BindAddr {
        BindAddr::Tcp(host.to_owned(), port)
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(parse("127.0.0.1:8000"), Ok(tcp("127.0.0.1", 8000)));
        assert_eq!(parse("localhost"), Ok(tcp("localhost", 8000)));
        assert_eq!(parse("Example.COM:80"), Ok(tcp("example.com", 80)));
        assert_eq!(parse("0.0.0.0:0"), Ok(tcp("0.0.0.0", 0)));
        assert_eq!(parse(":9000"), Ok(tcp("0.0.0.0", 9000)));
        assert_eq!(parse("tcp://10.0.0.1:81"), Ok(tcp("10.0.0.1", 81)));
        assert_eq!(parse("[::1]:8080"), Ok(tcp("::1", 8080)));
        assert_eq!(parse("[::1]"), Ok(tcp("::1", 8000)));
        assert_eq!(parse("[fe80::1%eth0]:81"), Ok(tcp("fe80::1%eth0", 81)));
        assert_eq!(
            parse("unix:/run/app.sock"),
            Ok(BindAddr::Unix("/run/app.sock".into()))
        );
        assert_eq!(
            parse("unix:///run/app.sock"),
            Ok(BindAddr::Unix("/run/app.sock".into()))
        );
        assert_eq!(
            parse("unix:app.sock"),
            Ok(BindAddr::Unix("app.sock".into()))
        );
        assert_eq!(parse("fd://3"), Ok(BindAddr::Fd(FdRef::Num(3))));
        assert_eq!(
            parse("fd://http"),
            Ok(BindAddr::Fd(FdRef::Name("http".into())))
        );
    }

    #[test]
    fn refuses_bad_addresses_with_a_reason() {
        let err = parse("localhost:abc").unwrap_err();
        assert_eq!(
            err,
            r#"bind address "localhost:abc" has a port "abc" that is not a number from 0 to 65535"#
        );
        assert!(parse("localhost:65536").unwrap_err().contains("\"65536\""));
        assert!(parse("localhost:").unwrap_err().contains("port \"\""));
        assert!(parse("::1").unwrap_err().contains("without brackets"));
        assert!(parse("[::1").unwrap_err().contains("closing ']'"));
        assert!(parse("[::1]8000").unwrap_err().contains("after ']'"));
        assert!(parse("[nothost]:80").unwrap_err().contains("IPv6"));
        assert!(parse("unix:").unwrap_err().contains("no path"));
        assert!(parse("unix://").unwrap_err().contains("no path"));
        assert!(parse("fd://").unwrap_err().contains("fd://3"));
        assert!(parse("fd://99999999999").unwrap_err().contains("too large"));
        assert!(parse("fd://a:b").unwrap_err().contains("no ':'"));
        assert!(parse("exa mple:80").unwrap_err().contains("host"));
        assert!(
            parse("http://x:80")
                .unwrap_err()
                .contains("unknown scheme \"http\"")
        );
    }

    #[test]
    fn display_reads_back() {
        for s in [
            "127.0.0.1:8000",
            "[::1]:80",
            "unix:/run/a.sock",
            "unix:relative.sock",
            // A path starting with "//" (found by the fuzzing in properties.rs).
            "unix:////run/a.sock",
            "fd://3",
            "fd://web",
        ] {
            let addr = parse(s).unwrap();
            assert_eq!(addr.to_string(), s);
            assert_eq!(addr.to_string().parse::<BindAddr>(), Ok(addr));
        }
    }

    #[test]
    fn a_host_named_unix_reads_back_as_tcp() {
        // Found by fuzz/'s bind_address target: "unix" printed as "unix:8000", a socket.
        for s in ["unix", "UNIX:80", "tcp://unix:1"] {
            let addr = parse(s).unwrap();
            assert!(
                matches!(addr, BindAddr::Tcp(ref h, _) if h == "unix"),
                "{s}"
            );
            assert_eq!(addr.to_string().parse::<BindAddr>(), Ok(addr));
        }
    }
}
