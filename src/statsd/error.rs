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

use crate::config::statsd_address::{Address, AddressError};

/// Why there is no StatsD client.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

#[derive(Debug)]
enum Kind {
    /// The `statsd_host` setting holds an address that does not parse (the source says why).
    Setting,
    /// The address could not be resolved or connected to (the io error is the source).
    Connect { target: Address },
}

impl Error {
    pub(super) fn setting(source: AddressError) -> Error {
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
        matches!(self.kind, Kind::Setting)
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
            Kind::Setting => f.write_str("not a StatsD address"),
            Kind::Connect { target } => write!(
                f,
                "cannot resolve or connect to the StatsD server {target}; no metrics are \
                 sent until a reload reaches it"
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
    fn the_chain_names_the_address_then_the_problem() {
        let err = Error::setting(crate::config::statsd_address::parse("x:").unwrap_err());
        assert!(err.is_address());
        assert_eq!(
            format!("{err:#}"),
            r#"not a StatsD address: "x:" has a port "" that is not a number from 1 to 65535"#
        );
        let err = Error::connect(
            Address::Udp("statsd.invalid".into(), 8125),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(err.is_connect());
        assert!(
            err.to_string()
                .starts_with("cannot resolve or connect to the StatsD server statsd.invalid:8125")
        );
        assert!(format!("{err:#}").ends_with(": entity not found"));
    }
}
