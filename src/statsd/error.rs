//! The metrics layer's one error type: a `statsd_host` that is not an address, or an address
//! that cannot be reached.
//!
//! Not here: failures to send a datagram (counted and logged at most once a minute by
//! `Client::send`, never returned: metrics never fail a request).
//!
//! `Display` prints one level; `{:#}` prints the whole chain on one line. The wording may
//! change: use the `is_*` methods, not the text.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use super::address::Address;

/// Why there is no StatsD client.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

#[derive(Debug)]
enum Kind {
    /// A text that is not a StatsD address: the text and what is wrong with it.
    Address { text: String, problem: Problem },
    /// The `statsd_host` setting holds an address that does not parse (the source says why).
    Setting,
    /// The address could not be resolved or connected to (the io error is the source).
    Connect { target: Address },
}

/// What is wrong in an address, with the part that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Problem {
    NoSocketPath,
    UnclosedBracket,
    AfterBracket { host: String },
    NoHost,
    NotIpv6 { host: String },
    Port { port: String },
}

impl Error {
    pub(super) fn address(text: &str, problem: Problem) -> Error {
        Error {
            kind: Kind::Address {
                text: text.to_owned(),
                problem,
            },
            source: None,
        }
    }

    pub(super) fn setting(source: Error) -> Error {
        Error {
            kind: Kind::Setting,
            source: Some(Box::new(source)),
        }
    }

    pub(super) fn connect(target: Address, source: io::Error) -> Error {
        Error {
            kind: Kind::Connect { target },
            source: Some(Box::new(source)),
        }
    }

    /// The text is not a StatsD address.
    #[cfg(test)]
    pub fn is_address(&self) -> bool {
        matches!(self.kind, Kind::Address { .. } | Kind::Setting)
    }

    /// The address could not be resolved or connected to.
    #[cfg(test)]
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Address { text: s, problem } => match problem {
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
            },
            Kind::Setting => f.write_str("statsd_host is not a StatsD address"),
            Kind::Connect { target } => write!(
                f,
                "statsd_host {target}: cannot resolve or connect to it, no metrics are sent \
                 (check the address; a reload retries)"
            ),
        }?;
        if f.alternate() {
            let mut source = StdError::source(self);
            while let Some(e) = source {
                write!(f, ": {e}")?;
                source = e.source();
            }
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_the_setting_then_the_problem() {
        let err = Error::setting(Error::address(
            "x:",
            Problem::Port {
                port: String::new(),
            },
        ));
        assert!(err.is_address());
        assert_eq!(
            format!("{err:#}"),
            r#"statsd_host is not a StatsD address: "x:" has a port "" that is not a number from 1 to 65535"#
        );
        let err = Error::connect(
            Address::Udp("statsd.invalid".into(), 8125),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(err.is_connect());
        assert!(
            err.to_string()
                .starts_with("statsd_host statsd.invalid:8125: cannot resolve")
        );
        assert!(format!("{err:#}").ends_with(": entity not found"));
    }
}
