//! StatsD instrumentation, with gunicorn's metric names and line format, so that dashboards
//! made for gunicorn read unitcorn's metrics unchanged:
//!
//! - `gunicorn.requests` (counter) and `gunicorn.request.status.<code>` (counter) and
//!   `gunicorn.request.duration` (timer, ms) for each request, sent by the worker that served
//!   it (`worker::metrics`);
//! - `gunicorn.workers` (gauge), sent by the master when the number of workers changes;
//! - `gunicorn.log.critical`, `.error`, `.warning`, `.exception` (counters), one an error-log
//!   event of that level, in every process (`LogCounts`).
//!
//! Each name is `statsd_prefix` + "." + name, and `|#dogstatsd_tags` ends each line. Metrics
//! go over UDP (or a datagram unix socket) from a non-blocking socket: a lost or refused
//! datagram never holds up or fails a request; send errors are logged at most once a minute.
//! Each process owns its socket: the master's is made at start, a worker's after the fork.

mod error;
mod log_counts;

use std::fmt::Write as _;
use std::io;
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use error::Error;
pub use log_counts::LogCounts;

use crate::config::Settings;
use crate::config::statsd_address::{self as address, Address};

/// Send errors are logged at most this often (per process).
const WARN_EVERY_MS: u64 = 60_000;

/// The metrics client of one process.
#[derive(Debug)]
pub struct Client {
    socket: Socket,
    target: Address,
    /// `statsd_prefix` normalised: empty, or ending in exactly one dot.
    prefix: String,
    /// `|#tags`, or empty.
    tags: String,
    /// When (`now_ms`) a send error was last logged; 0: never.
    warned_ms: AtomicU64,
    /// Datagrams lost since the last warning.
    dropped: AtomicU64,
}

#[derive(Debug)]
enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Client {
    /// The client `statsd_host` asks for, if any: a connected, non-blocking socket. An
    /// address that cannot be resolved or reached is an error for the caller to log.
    pub fn from_settings(settings: &Settings) -> Result<Option<Client>, Error> {
        let Some(host) = settings.statsd_host.as_deref() else {
            return Ok(None);
        };
        let target = address::parse(host).map_err(Error::setting)?;
        let socket = connect(&target).map_err(|e| Error::connect(target.clone(), e))?;
        Ok(Some(Client {
            socket,
            target,
            prefix: prefix(&settings.statsd_prefix),
            tags: if settings.dogstatsd_tags.is_empty() {
                String::new()
            } else {
                format!("|#{}", settings.dogstatsd_tags)
            },
            warned_ms: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }))
    }

    /// Append a counter line (`name:n|c|@1.0`, gunicorn's form) to a datagram.
    pub fn counter(&self, datagram: &mut String, name: impl std::fmt::Display, n: u64) {
        self.line(datagram, name, format_args!("{n}|c|@1.0"));
    }

    /// Append a timer line in milliseconds with microsecond digits, without float
    /// formatting (a request's duration, on the I/O thread).
    pub fn timer_us(&self, datagram: &mut String, name: &str, duration: std::time::Duration) {
        let us = duration.as_micros();
        self.line(
            datagram,
            name,
            format_args!("{}.{:03}|ms", us / 1000, us % 1000),
        );
    }

    /// The length of a line for `name` with a value of `value_len` bytes (type included),
    /// newline included.
    pub fn line_len(&self, name: &str, value_len: usize) -> usize {
        self.prefix.len() + name.len() + 1 + value_len + self.tags.len() + 1
    }

    /// Append a gauge line (`name:n|g`).
    pub fn gauge(&self, datagram: &mut String, name: &str, n: u64) {
        self.line(datagram, name, format_args!("{n}|g"));
    }

    /// One metric a line: StatsD servers (etsy statsd, Telegraf, the Datadog agent,
    /// statsd_exporter) read several newline-separated metrics from one datagram.
    fn line(
        &self,
        datagram: &mut String,
        name: impl std::fmt::Display,
        value: std::fmt::Arguments<'_>,
    ) {
        if !datagram.is_empty() {
            datagram.push('\n');
        }
        // Writing to a String cannot fail.
        let _ = write!(datagram, "{}{name}:{value}{}", self.prefix, self.tags);
    }

    /// Send a datagram; a failure is counted and logged at most once a minute.
    pub fn send(&self, datagram: &str) {
        if let Err(e) = self.send_quietly(datagram) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            let now = crate::scoreboard::now_ms().max(1);
            let last = self.warned_ms.load(Ordering::Relaxed);
            let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY_MS;
            if due
                && self
                    .warned_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let dropped = self.dropped.swap(0, Ordering::Relaxed);
                tracing::warn!(
                    "statsd: cannot send to {}: {e} ({dropped} datagram(s) lost; next report \
                     in a minute at the earliest)",
                    self.target
                );
            }
        }
    }

    /// Send a datagram, reporting nothing: for the error log's own counters, which must not
    /// log from inside the logger.
    fn send_quietly(&self, datagram: &str) -> io::Result<()> {
        let sent = match &self.socket {
            Socket::Udp(s) => s.send(datagram.as_bytes()),
            Socket::Unix(s) => s.send(datagram.as_bytes()),
        };
        sent.map(drop)
    }
}

/// gunicorn's prefix rule (`prefix` + "." + name): trailing dots are dropped, one is added.
fn prefix(setting: &str) -> String {
    let trimmed = setting.trim_end_matches('.');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}.")
    }
}

fn connect(target: &Address) -> io::Result<Socket> {
    match target {
        Address::Udp(host, port) => {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "the name has no address")
                })?;
            let local: std::net::SocketAddr = if addr.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local)?;
            socket.connect(addr)?;
            socket.set_nonblocking(true)?;
            Ok(Socket::Udp(socket))
        }
        Address::Unix(path) => {
            let socket = UnixDatagram::unbound()?;
            socket.connect(path)?;
            socket.set_nonblocking(true)?;
            Ok(Socket::Unix(socket))
        }
    }
}

/// This process's client, for the error log's counters (the master's, or a worker's own
/// after its fork). A lock only error-log events take, never a request.
static PROCESS: RwLock<Option<Arc<Client>>> = RwLock::new(None);

/// Make `client` this process's (None: stop counting). The master calls it at start and at
/// each reload; a worker right after its fork, with its own socket.
pub fn install(client: Option<Arc<Client>>) {
    log_counts::enable(client.is_some());
    *PROCESS.write().unwrap_or_else(|e| e.into_inner()) = client;
}

/// This process's client, if metrics are on.
pub fn process_client() -> Option<Arc<Client>> {
    PROCESS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The client `settings` ask for, installed as this process's; an address that does not
/// work is logged, and the process runs without metrics.
pub fn install_from(settings: &Settings) -> Option<Arc<Client>> {
    let client = match Client::from_settings(settings) {
        Ok(client) => client.map(Arc::new),
        Err(e) => {
            tracing::error!("{:#}", settings.provenance("statsd_host").wrap(e));
            None
        }
    };
    install(client.clone());
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_joined_with_one_dot_like_gunicorn() {
        assert_eq!(prefix(""), "");
        assert_eq!(prefix("app"), "app.");
        assert_eq!(prefix("app."), "app.");
        assert_eq!(prefix("service.app.."), "service.app.");
        assert_eq!(prefix("."), "");
    }

    fn client(prefix_setting: &str, tags: &str) -> (Client, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut settings = crate::config::Settings::for_tests();
        settings.statsd_host = Some(server.local_addr().unwrap().to_string());
        settings.statsd_prefix = prefix_setting.into();
        settings.dogstatsd_tags = tags.into();
        (Client::from_settings(&settings).unwrap().unwrap(), server)
    }

    #[test]
    fn lines_are_gunicorns_and_several_share_a_datagram() {
        let (client, server) = client("svc", "env:prod,app");
        let mut datagram = String::new();
        client.counter(&mut datagram, "gunicorn.requests", 1);
        client.timer_us(
            &mut datagram,
            "gunicorn.request.duration",
            std::time::Duration::from_micros(1_500),
        );
        client.timer_us(
            &mut datagram,
            "gunicorn.request.duration",
            std::time::Duration::from_micros(12_034),
        );
        client.gauge(&mut datagram, "gunicorn.workers", 3);
        client.send(&datagram);
        let mut buf = [0u8; 1500];
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "svc.gunicorn.requests:1|c|@1.0|#env:prod,app\n\
             svc.gunicorn.request.duration:1.500|ms|#env:prod,app\n\
             svc.gunicorn.request.duration:12.034|ms|#env:prod,app\n\
             svc.gunicorn.workers:3|g|#env:prod,app"
        );
    }

    #[test]
    fn no_host_no_client() {
        let settings = crate::config::Settings::for_tests();
        assert!(Client::from_settings(&settings).unwrap().is_none());
    }
}
