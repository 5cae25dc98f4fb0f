//! Trusted proxies, as gunicorn defines them: a peer in `forwarded_allow_ips` (or any
//! client of a unix socket, the proxy being local) may tell the app the scheme through
//! `secure_scheme_headers` and its mount point through `forwarder_headers`. Anyone else's
//! headers say nothing: a client cannot make itself look like HTTPS.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName};

use crate::config::Settings;

/// What a trusted proxy said about one request.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    /// `wsgi.url_scheme` is https.
    pub https: bool,
    /// `SCRIPT_NAME` / `PATH_INFO` from the proxy's `SCRIPT_NAME:` / `PATH_INFO:` headers.
    pub script_name: Option<String>,
    pub path_info: Option<String>,
}

/// Peers by address: IPs, networks (`10.0.0.0/8`) or `*`, as forwarded_allow_ips and
/// proxy_allow_ips list them. A unix-socket client (no address) is always allowed: the
/// proxy in front of a unix socket is local.
#[derive(Debug)]
pub struct AllowList {
    any: bool,
    networks: Vec<(IpAddr, u8)>,
}

impl AllowList {
    pub fn new(entries: &[String]) -> AllowList {
        let mut networks = Vec::new();
        let mut any = false;
        for entry in entries {
            if entry == "*" {
                any = true;
                continue;
            }
            // The settings checked the syntax already.
            let (addr, prefix) = entry.split_once('/').unwrap_or((entry, ""));
            if let Ok(addr) = addr.parse::<IpAddr>() {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix = prefix.parse().unwrap_or(max).min(max);
                networks.push((addr.to_canonical(), prefix));
            }
        }
        AllowList { any, networks }
    }

    pub fn allows(&self, peer: Option<SocketAddr>) -> bool {
        let Some(peer) = peer else { return true };
        let ip = peer.ip().to_canonical();
        self.any
            || self
                .networks
                .iter()
                .any(|(net, prefix)| in_network(ip, *net, *prefix))
    }
}

/// The trust settings of a worker, read once.
#[derive(Debug)]
pub struct Proxies {
    trusted: AllowList,
    secure: Vec<(HeaderName, String)>,
    script_name: bool,
    path_info: bool,
}

impl Proxies {
    pub fn from_settings(settings: &Settings) -> Proxies {
        let secure = settings
            .secure_scheme_headers
            .iter()
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(name, value)| {
                let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?;
                Some((name, value.to_owned()))
            })
            .collect();
        let has = |key: &str| settings.forwarder_headers.iter().any(|h| h == key);
        Proxies {
            trusted: AllowList::new(&settings.forwarded_allow_ips),
            secure,
            script_name: has("SCRIPT_NAME"),
            path_info: has("PATH_INFO"),
        }
    }

    /// Whether this peer's forwarding headers count; `None` is a unix-socket client.
    pub fn trusts(&self, peer: Option<SocketAddr>) -> bool {
        self.trusted.allows(peer)
    }

    /// What the proxy said, if the peer is `trusted`; an error (400) when its scheme
    /// headers contradict each other, as gunicorn refuses them.
    pub fn forwarded(&self, trusted: bool, headers: &HeaderMap) -> Result<Forwarded, &'static str> {
        let mut out = Forwarded::default();
        if !trusted {
            return Ok(out);
        }
        let mut scheme: Option<bool> = None;
        for (name, secure_value) in &self.secure {
            for value in headers.get_all(name) {
                let https = value.as_bytes().trim_ascii() == secure_value.as_bytes();
                match scheme {
                    Some(seen) if seen != https => {
                        return Err("Contradictory scheme headers");
                    }
                    _ => scheme = Some(https),
                }
            }
        }
        out.https = scheme == Some(true);
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if self.script_name {
            out.script_name = text("script_name");
        }
        if self.path_info {
            out.path_info = text("path_info");
        }
        Ok(out)
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(allow: &[&str]) -> Proxies {
        let mut settings = crate::config::Settings::for_tests();
        settings.forwarded_allow_ips = allow.iter().map(|s| s.to_string()).collect();
        Proxies::from_settings(&settings)
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    #[test]
    fn addresses_networks_and_star() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]);
        assert!(p.trusts(peer("127.0.0.1")));
        assert!(!p.trusts(peer("127.0.0.2")));
        assert!(p.trusts(peer("10.200.3.4")));
        assert!(!p.trusts(peer("11.0.0.1")));
        assert!(p.trusts(peer("2001:db8:1::5")));
        assert!(!p.trusts(peer("2001:db9::1")));
        // A dual-stack listener sees IPv4 clients as mapped IPv6 addresses.
        assert!(p.trusts(peer("::ffff:10.1.2.3")));
        assert!(p.trusts(None), "unix-socket clients are trusted");
        assert!(proxies(&["*"]).trusts(peer("192.0.2.1")));
        assert!(proxies(&["0.0.0.0/0"]).trusts(peer("192.0.2.1")));
        assert!(!proxies(&[]).trusts(peer("127.0.0.1")));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn scheme_from_trusted_peers_only_and_contradictions_refused() {
        let p = proxies(&["127.0.0.1"]);
        let https = headers(&[("X-Forwarded-Proto", "https")]);
        assert!(p.forwarded(true, &https).unwrap().https);
        assert!(!p.forwarded(false, &https).unwrap().https);
        let http = headers(&[("X-Forwarded-Proto", "http")]);
        assert!(!p.forwarded(true, &http).unwrap().https);
        let both = headers(&[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")]);
        assert!(p.forwarded(true, &both).unwrap().https);
        let contradiction = headers(&[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")]);
        assert!(p.forwarded(true, &contradiction).is_err());
        assert!(p.forwarded(false, &contradiction).is_ok());
    }

    #[test]
    fn forwarder_headers_from_trusted_peers() {
        let p = proxies(&["127.0.0.1"]);
        let h = headers(&[("SCRIPT_NAME", "/shop"), ("PATH_INFO", "/cart")]);
        let f = p.forwarded(true, &h).unwrap();
        assert_eq!(f.script_name.as_deref(), Some("/shop"));
        assert_eq!(f.path_info.as_deref(), Some("/cart"));
        assert!(p.forwarded(false, &h).unwrap().script_name.is_none());
    }
}
