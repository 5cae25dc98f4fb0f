//! TEMPORARY: replaced by the config branch.
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub enum FdRef {
    Num(i32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum BindAddr {
    Tcp(String, u16),
    Unix(PathBuf),
    Fd(FdRef),
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddr::Tcp(h, p) if h.contains(':') => write!(f, "[{h}]:{p}"),
            BindAddr::Tcp(h, p) => write!(f, "{h}:{p}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddr::Fd(FdRef::Num(n)) => write!(f, "fd://{n}"),
            BindAddr::Fd(FdRef::Name(n)) => write!(f, "fd://{n}"),
        }
    }
}

impl BindAddr {
    pub fn parse(s: &str) -> Result<BindAddr, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(BindAddr::Unix(p.trim_start_matches("//").into()));
        }
        if let Some(p) = s.strip_prefix("fd://") {
            return Ok(BindAddr::Fd(match p.parse() {
                Ok(n) => FdRef::Num(n),
                Err(_) => FdRef::Name(p.into()),
            }));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or("bad ipv6")?;
            let port = after
                .strip_prefix(':')
                .map(|p| p.parse().map_err(|_| "bad port"))
                .transpose()?
                .unwrap_or(8000);
            return Ok(BindAddr::Tcp(h.into(), port));
        }
        match s.rsplit_once(':') {
            Some((h, p)) => Ok(BindAddr::Tcp(h.into(), p.parse().map_err(|_| "bad port")?)),
            None => Ok(BindAddr::Tcp(s.into(), 8000)),
        }
    }
}
