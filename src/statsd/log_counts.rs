//! gunicorn's `gunicorn.log.*` counters: one an error-log event at warning level or above.
//!
//! A `tracing` layer beside the error log's own, so it sees the events the error log writes
//! (those at `loglevel` and above: gunicorn counts below it too, which a global level filter
//! does not allow here). Off, it costs one atomic load an event.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Set when this process has a StatsD client.
static ENABLED: AtomicBool = AtomicBool::new(false);

pub(super) fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The layer the front door hands `logging::init` as its observer.
pub struct LogCounts;

impl<S: Subscriber> Layer<S> for LogCounts {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !ENABLED.load(Ordering::Relaxed) {
            return;
        }
        let name = match *event.metadata().level() {
            Level::ERROR => match classify(event) {
                Class::Critical => "gunicorn.log.critical",
                Class::Exception => "gunicorn.log.exception",
                Class::Error => "gunicorn.log.error",
            },
            Level::WARN => "gunicorn.log.warning",
            _ => return,
        };
        let Some(client) = super::process_client() else {
            return;
        };
        let mut datagram = String::new();
        client.counter(&mut datagram, name, 1);
        // Not logged: this runs inside the logger.
        let _ = client.send_quietly(&datagram);
    }
}

enum Class {
    Critical,
    /// An error carrying a Python traceback: what gunicorn logs with `log.exception` (an
    /// exception in the app, or in a worker loading it).
    Exception,
    Error,
}

fn classify(event: &Event<'_>) -> Class {
    #[derive(Default)]
    struct Seen {
        critical: bool,
        traceback: bool,
    }
    impl Visit for Seen {
        fn record_bool(&mut self, field: &Field, value: bool) {
            if field.name() == "critical" {
                self.critical = value;
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.traceback |= value.contains(TRACEBACK);
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "message" {
                self.traceback |= format!("{value:?}").contains(TRACEBACK);
            }
        }
    }
    const TRACEBACK: &str = "Traceback (most recent call last):";
    let mut seen = Seen::default();
    event.record(&mut seen);
    if seen.critical {
        Class::Critical
    } else if seen.traceback {
        Class::Exception
    } else {
        Class::Error
    }
}
