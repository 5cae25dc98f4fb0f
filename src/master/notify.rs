//! What the master tells systemd (`sd_notify`): readiness, reloads, stopping, a status
//! line, watchdog pings, more time while the app loads. All of it is a no-op when
//! `NOTIFY_SOCKET` is unset (not started by systemd).

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// A STATUS= line is sent at most this often (it changes with every request).
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// While the app loads, each EXTEND_TIMEOUT_USEC= asks for this much more time, sent at
/// a third of it, so the start timeout never runs out under a slow but live boot.
const EXTEND_BY: Duration = Duration::from_secs(6);

pub struct Notifier {
    /// `WATCHDOG_USEC` (for us: `WATCHDOG_PID` unset or ours): ping at half of it.
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    ready_sent: bool,
    last_status: Option<(Instant, String)>,
    last_extend: Option<Instant>,
}

impl Notifier {
    pub fn from_env() -> Self {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            last_ping: None,
            ready_sent: false,
            last_status: None,
            last_extend: None,
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {e}");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready_sent
    }

    /// READY=1: every worker of the generation serves (the first time, or after a reload).
    pub fn ready(&mut self, status: String) {
        self.ready_sent = true;
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.last_status = Some((Instant::now(), status));
    }

    /// RELOADING=1 with the time it started (systemd ≥ 253 requires MONOTONIC_USEC=).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading"),
            ]),
            Err(_) => self.send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// The one-line summary `systemctl status` shows; sent when it changed, at most once
    /// every STATUS_EVERY.
    pub fn status(&mut self, status: String) {
        if let Some((at, last)) = &self.last_status
            && (*last == status || at.elapsed() < STATUS_EVERY)
        {
            return;
        }
        self.send(&[NotifyState::Status(&status)]);
        self.last_status = Some((Instant::now(), status));
    }

    /// While the first generation loads the app: ask for more start time.
    pub fn extend_while_loading(&mut self) {
        if self.ready_sent
            || self
                .last_extend
                .is_some_and(|t| t.elapsed() < EXTEND_BY / 3)
        {
            return;
        }
        self.last_extend = Some(Instant::now());
        let usec = u32::try_from(EXTEND_BY.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }

    /// WATCHDOG=1 at half of WATCHDOG_USEC, only when `healthy` (the loop runs, since we
    /// are here, and a worker serves): a stuck master or hung workers end in a kill.
    pub fn watchdog(&mut self, healthy: bool) {
        let Some(period) = self.watchdog else { return };
        if !healthy || self.last_ping.is_some_and(|t| t.elapsed() < period / 2) {
            return;
        }
        self.last_ping = Some(Instant::now());
        self.send(&[NotifyState::Watchdog]);
    }

    /// How long until the next watchdog ping is due.
    pub fn until_next_ping(&self) -> Option<Duration> {
        let half = self.watchdog? / 2;
        Some(match self.last_ping {
            Some(t) => half.saturating_sub(t.elapsed()),
            None => Duration::ZERO,
        })
    }
}
