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
    /// Says nothing: a new master before the old one handed it the main-process role
    /// (systemd would refuse its messages), or an old master after it did.
    muted: bool,
}

impl Notifier {
    pub fn from_env() -> Self {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            last_ping: None,
            ready_sent: false,
            last_status: None,
            last_extend: None,
            muted: false,
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if self.muted {
            return;
        }
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

    /// Silent until [`Notifier::became_main`] (a new master during a binary upgrade).
    pub fn mute(&mut self) {
        self.muted = true;
    }

    /// The binary upgrade's hand-over: systemd now watches `pid`, and we fall silent.
    pub fn main_pid(&mut self, pid: u32, status: &str) {
        self.send(&[NotifyState::MainPid(pid), NotifyState::Status(status)]);
        self.muted = true;
    }

    /// A new master just became the main process: readiness, status and a watchdog ping
    /// at once (the old master's last ping is all systemd has had).
    pub fn became_main(&mut self, status: String) {
        self.muted = false;
        self.last_ping = None;
        self.ready(status);
        self.watchdog(true);
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
