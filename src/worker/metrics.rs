//! A worker's request metrics for StatsD (gunicorn's `gunicorn.requests`,
//! `gunicorn.request.duration`, `gunicorn.request.status.<code>`), sent from the I/O thread.
//!
//! Batched, to keep the cost per request low: each request appends its duration line to a
//! buffer and bumps its counters; the buffer goes out as one datagram, the counters summed
//! (`gunicorn.requests:12|c|@1.0`, which a StatsD server adds up exactly as twelve `:1`),
//! when it nears a safe UDP payload size or shortly after the first request since the last
//! send. Under load that is one `send(2)` for about 25 requests; when idle, nothing wakes up.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::statsd::Client;

/// A datagram is sent once it holds about this much: below the 1432 bytes StatsD clients
/// keep to on an Ethernet MTU, with room for one more request's line.
const SEND_AT: usize = 1100;
/// How long the first metrics in an empty buffer may wait for company.
const LINGER: Duration = Duration::from_millis(100);
/// Distinct status codes in one datagram at most (a new one beyond sends first).
const MAX_STATUSES: usize = 8;

pub struct RequestMetrics {
    client: Arc<Client>,
    /// The duration lines so far.
    timers: RefCell<String>,
    /// Requests since the last send.
    requests: Cell<u64>,
    /// Requests since the last send, by status.
    statuses: RefCell<Vec<(u16, u64)>>,
    /// The bytes the counter lines will add.
    counter_bytes: Cell<usize>,
    /// Wakes the sender task when the buffer stops being empty.
    pending: Notify,
}

impl RequestMetrics {
    pub fn new(client: Arc<Client>) -> Self {
        RequestMetrics {
            client,
            timers: RefCell::new(String::with_capacity(SEND_AT + 512)),
            requests: Cell::new(0),
            statuses: RefCell::new(Vec::with_capacity(MAX_STATUSES)),
            counter_bytes: Cell::new(0),
            pending: Notify::new(),
        }
    }

    /// One request is done (its body sent, or the client gone).
    pub fn record(&self, status: u16, duration: Duration) {
        let new_status = !self.statuses.borrow().iter().any(|(s, _)| *s == status);
        if new_status && self.statuses.borrow().len() >= MAX_STATUSES {
            self.send();
        }
        if self.requests.get() == 0 {
            self.pending.notify_one();
            // `gunicorn.requests:NNNNN|c|@1.0` with the prefix and tags.
            self.counter_bytes
                .set(self.client.line_len("gunicorn.requests", 16));
        }
        self.requests.set(self.requests.get() + 1);
        {
            let mut statuses = self.statuses.borrow_mut();
            match statuses.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => {
                    statuses.push((status, 1));
                    self.counter_bytes.set(
                        self.counter_bytes.get()
                            + self.client.line_len("gunicorn.request.status.200", 16),
                    );
                }
            }
        }
        let full = {
            let mut timers = self.timers.borrow_mut();
            self.client
                .timer_us(&mut timers, "gunicorn.request.duration", duration);
            timers.len() + self.counter_bytes.get() >= SEND_AT
        };
        if full {
            self.send();
        }
    }

    /// Send what is buffered (the borrows end before a failure is logged).
    pub fn send(&self) {
        let requests = self.requests.replace(0);
        if requests == 0 {
            return;
        }
        let mut datagram = std::mem::replace(
            &mut *self.timers.borrow_mut(),
            String::with_capacity(SEND_AT + 512),
        );
        self.client
            .counter(&mut datagram, "gunicorn.requests", requests);
        for (status, n) in self.statuses.borrow_mut().drain(..) {
            self.client.counter(
                &mut datagram,
                format_args!("gunicorn.request.status.{status}"),
                n,
            );
        }
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
