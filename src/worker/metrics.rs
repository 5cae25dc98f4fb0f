//! A worker's request metrics for StatsD (gunicorn's `gunicorn.requests`,
//! `gunicorn.request.duration`, `gunicorn.request.status.<code>`), sent from the I/O thread.
//!
//! Batched: each request appends its three lines to a buffer that goes out as one datagram
//! when it nears a safe UDP payload size, or shortly after the first request since the
//! last send. Under load that is one `send(2)` for about ten requests instead of three a
//! request; when idle, nothing wakes up.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::statsd::Client;

/// A datagram is sent once it holds this much: below the 1432 bytes StatsD clients keep to
/// on an Ethernet MTU (one more request's lines fit under it for a usual prefix and tags).
const SEND_AT: usize = 1100;
/// How long the first metrics in an empty buffer may wait for company.
const LINGER: Duration = Duration::from_millis(100);

pub struct RequestMetrics {
    client: Arc<Client>,
    datagram: RefCell<String>,
    /// Wakes the sender task when the buffer stops being empty.
    pending: Notify,
}

impl RequestMetrics {
    pub fn new(client: Arc<Client>) -> Self {
        RequestMetrics {
            client,
            datagram: RefCell::new(String::with_capacity(SEND_AT + 512)),
            pending: Notify::new(),
        }
    }

    /// One request is done (its body sent, or the client gone).
    pub fn record(&self, status: u16, duration: Duration) {
        let full = {
            let mut datagram = self.datagram.borrow_mut();
            let was_empty = datagram.is_empty();
            let ms = duration.as_secs_f64() * 1000.0;
            self.client
                .timer_ms(&mut datagram, "gunicorn.request.duration", ms);
            self.client.counter(&mut datagram, "gunicorn.requests", 1);
            self.client.counter(
                &mut datagram,
                format_args!("gunicorn.request.status.{status}"),
                1,
            );
            if was_empty {
                self.pending.notify_one();
            }
            datagram.len() >= SEND_AT
        };
        if full {
            self.send();
        }
    }

    /// Send what is buffered (the borrow ends before a failure is logged).
    pub fn send(&self) {
        let datagram = {
            let mut buffered = self.datagram.borrow_mut();
            if buffered.is_empty() {
                return;
            }
            let mut out = String::with_capacity(SEND_AT + 512);
            std::mem::swap(&mut *buffered, &mut out);
            out
        };
        self.client.send(&datagram);
    }

    /// The sender task: a buffer that is not full goes out `LINGER` after it stopped being
    /// empty.
    pub async fn send_lingering(self: std::rc::Rc<Self>) {
        loop {
            self.pending.notified().await;
            tokio::time::sleep(LINGER).await;
            self.send();
        }
    }
}
