//! The master's StatsD side: its client (for the error log's counters) and gunicorn's
//! `gunicorn.workers` gauge, sent when the number of worker processes changes, as gunicorn
//! does. A reload that changes the statsd settings gets a new client.

use std::sync::Arc;

use crate::config::Settings;
use crate::statsd::Client;

pub struct MasterMetrics {
    client: Option<Arc<Client>>,
    /// The settings the client was made from.
    made_from: (Option<String>, String, String),
    /// The last `gunicorn.workers` sent.
    workers_sent: Option<usize>,
}

fn statsd_settings(settings: &Settings) -> (Option<String>, String, String) {
    (
        settings.statsd_host.clone(),
        settings.statsd_prefix.clone(),
        settings.dogstatsd_tags.clone(),
    )
}

impl MasterMetrics {
    pub fn new(settings: &Settings) -> Self {
        MasterMetrics {
            client: crate::statsd::install_from(settings),
            made_from: statsd_settings(settings),
            workers_sent: None,
        }
    }

    /// After a reload: a new client if the statsd settings changed.
    pub fn follow(&mut self, settings: &Settings) {
        let wanted = statsd_settings(settings);
        if wanted != self.made_from {
            self.client = crate::statsd::install_from(settings);
            self.made_from = wanted;
            self.workers_sent = None;
        }
    }

    /// `gunicorn.workers`: how many worker processes run (those of a generation leaving
    /// included, as gunicorn counts them).
    pub fn workers(&mut self, count: usize) {
        let Some(client) = &self.client else {
            return;
        };
        if self.workers_sent == Some(count) {
            return;
        }
        let mut datagram = String::new();
        client.gauge(&mut datagram, "gunicorn.workers", count as u64);
        client.send(&datagram);
        self.workers_sent = Some(count);
    }
}
