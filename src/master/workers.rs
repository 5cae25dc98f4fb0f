//! The worker table: spawning, reaping, readiness, deadlines (murder) and recycling.
//!
//! Policy (how many workers, which generation) is the arbiter's; this file knows how to
//! start, watch and stop workers, one operation a method.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::Error;
use super::fork;
use crate::boot::{APP_LOAD_ERROR, WORKER_BOOT_ERROR, WorkerBoot, WorkerMain};
use crate::config::Settings;
use crate::listeners::Listener;
use crate::logging::ErrorLogHandle;
use crate::scoreboard::{MAX_WORKERS, Scoreboard, Slot, now_ms};

/// How long INT/TERM wait for killed workers to be reaped before the master exits.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How often, meanwhile, the master looks for them (waitpid with WNOHANG).
const KILL_POLL: Duration = Duration::from_millis(10);
/// Between SIGABRT (the worker writes its Python tracebacks) and SIGKILL.
const ABORT_GRACE: Duration = Duration::from_secs(1);
/// A request is given this much past `timeout` before its worker is aborted, so that the
/// worker's own 504 reaches the client first.
const ABORT_MARGIN_MS: u64 = 500;
/// Back-off after a worker died while booting: doubling from the first, up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// One worker process, as the master sees it.
#[derive(Debug)]
struct Worker {
    number: usize,
    slot: usize,
    generation: u32,
    spawned: Instant,
    /// It has imported the app and accepts (read from the scoreboard).
    ready: bool,
    /// To be replaced (max_requests, lifetime, memory): no longer counts toward the
    /// target, and is stopped once a replacement is ready.
    replace: bool,
    /// When it was told to stop gracefully (QUIT).
    stopping: Option<Instant>,
    /// When it was sent SIGABRT for a deadline.
    aborted: Option<Instant>,
    killed: bool,
}

/// A worker that was reaped.
#[derive(Debug)]
pub struct Death {
    pub pid: Pid,
    pub generation: u32,
    /// It had been told to stop (or killed by us).
    pub stopping: bool,
    /// It could not start at all: the master stops, unless the arbiter decides otherwise
    /// (a failed reload).
    pub fatal: Option<Fatal>,
}

/// How a worker said it cannot start (its exit code, `boot.rs`).
#[derive(Debug, Clone, Copy)]
pub enum Fatal {
    /// `WORKER_BOOT_ERROR`: a bad listener, the runtime, `post_fork` raised.
    WorkerBoot,
    /// `APP_LOAD_ERROR`: the app did not import.
    AppLoad,
}

impl Fatal {
    /// The error the master stops with.
    pub fn error(self, pid: Pid) -> Error {
        match self {
            Fatal::WorkerBoot => Error::worker_boot(pid),
            Fatal::AppLoad => Error::app_load(pid),
        }
    }
}

/// Exponential back-off for workers that die while booting.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

impl Backoff {
    fn failed(&mut self) {
        self.failures += 1;
        let delay = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
            .min(BACKOFF_MAX);
        tracing::warn!(
            "a worker died while booting ({} in a row); next start in {} ms",
            self.failures,
            delay.as_millis()
        );
        self.not_before = Some(Instant::now() + delay);
    }

    fn reset(&mut self) {
        *self = Backoff::default();
    }

    fn allows(&self) -> bool {
        self.not_before.is_none_or(|t| Instant::now() >= t)
    }
}

pub struct Workers {
    table: BTreeMap<Pid, Worker>,
    listeners: Vec<Listener>,
    scoreboard: Arc<Scoreboard>,
    error_log: ErrorLogHandle,
    worker_main: WorkerMain,
    next_number: usize,
    backoff: Backoff,
}

impl Workers {
    pub fn new(
        listeners: Vec<Listener>,
        scoreboard: Arc<Scoreboard>,
        error_log: ErrorLogHandle,
        worker_main: WorkerMain,
    ) -> Self {
        Workers {
            table: BTreeMap::new(),
            listeners,
            scoreboard,
            error_log,
            worker_main,
            next_number: 1,
            backoff: Backoff::default(),
        }
    }

    /// The listening sockets every worker is given.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// A worker died while booting in a way the arbiter chose to retry: back off.
    pub fn boot_failed(&mut self) {
        self.backoff.failed();
    }

    /// A worker is booting: its readiness shows only in the scoreboard, which the master
    /// polls (everything else wakes it: a signal, SIGCHLD, or a deadline).
    pub fn booting(&self) -> bool {
        self.table.values().any(|w| !w.ready && !w.killed)
    }

    /// How long until the nearest deadline: a request's or heartbeat's `timeout`, the
    /// grace after SIGABRT, `graceful_timeout`, `boot_timeout`, the end of a back-off.
    pub fn until_next_deadline(&self, settings: &Settings) -> Option<Duration> {
        let now = Instant::now();
        let now_ms = now_ms();
        let after = |at: Instant, d: Duration| (at + d).saturating_duration_since(now);
        let mut nearest = self
            .backoff
            .not_before
            .map(|t| t.saturating_duration_since(now));
        let mut consider = |d: Duration| nearest = Some(nearest.map_or(d, |n| n.min(d)));
        for w in self.table.values().filter(|w| !w.killed) {
            if let Some(at) = w.aborted {
                consider(after(at, ABORT_GRACE));
            } else if let Some(at) = w.stopping {
                consider(after(at, Duration::from_secs(settings.graceful_timeout)));
            } else if !w.ready {
                if settings.boot_timeout > 0 {
                    consider(after(w.spawned, Duration::from_secs(settings.boot_timeout)));
                }
            } else if settings.timeout > 0 {
                let slot = self.scoreboard.slot(w.slot);
                let oldest = slot.oldest_ms.load(std::sync::atomic::Ordering::Acquire);
                let since = if oldest != 0 {
                    oldest
                } else {
                    slot.heartbeat_ms.load(std::sync::atomic::Ordering::Acquire)
                };
                let due = since + settings.timeout * 1000 + ABORT_MARGIN_MS + 1;
                consider(Duration::from_millis(due.saturating_sub(now_ms)));
            }
        }
        nearest
    }

    fn spawn(&mut self, settings: &Arc<Settings>, generation: u32) -> Result<(), Error> {
        let listeners = self
            .listeners
            .iter()
            .map(Listener::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::listener_copy)?;
        let slot = self
            .scoreboard
            .claim(generation)
            .ok_or_else(|| Error::too_many_workers(MAX_WORKERS))?;
        let boot = WorkerBoot {
            settings: Arc::clone(settings),
            listeners,
            error_log: self.error_log.clone(),
            scoreboard: Arc::clone(&self.scoreboard),
            slot,
        };
        crate::python::hooks::pre_fork(self.next_number);
        let pid = match fork::spawn(boot, self.worker_main) {
            Ok(pid) => pid,
            Err(e) => {
                self.scoreboard.release(slot);
                return Err(Error::fork(e));
            }
        };
        self.scoreboard.assign(slot, pid.as_raw());
        crate::python::hooks::forked_parent(pid.as_raw());
        let number = self.next_number;
        self.next_number += 1;
        tracing::info!("Booting worker with pid: {pid}");
        self.table.insert(
            pid,
            Worker {
                number,
                slot,
                generation,
                spawned: Instant::now(),
                ready: false,
                replace: false,
                stopping: None,
                aborted: None,
                killed: false,
            },
        );
        Ok(())
    }

    /// Workers of `generation` that count toward the target: not leaving, not replaced.
    fn active(&self, generation: u32) -> impl Iterator<Item = (&Pid, &Worker)> {
        self.table.iter().filter(move |(_, w)| {
            w.generation == generation && w.stopping.is_none() && !w.replace && !w.killed
        })
    }

    /// A worker serves: ready, not being killed, its I/O loop alive or its request within
    /// `timeout` (what the systemd watchdog vouches for).
    pub fn any_healthy(&self, settings: &Settings) -> bool {
        let now = now_ms();
        let limit = settings.timeout * 1000;
        self.table.values().any(|w| {
            if !w.ready || w.aborted.is_some() || w.killed {
                return false;
            }
            if limit == 0 {
                return true;
            }
            let slot = self.scoreboard.slot(w.slot);
            let oldest = slot.oldest_ms.load(std::sync::atomic::Ordering::Acquire);
            let heartbeat = slot.heartbeat_ms.load(std::sync::atomic::Ordering::Acquire);
            if oldest != 0 {
                now.saturating_sub(oldest) <= limit
            } else {
                now.saturating_sub(heartbeat) <= limit
            }
        })
    }

    /// `STATUS=` for systemd: workers, generation, requests served, in flight.
    pub fn status_line(&self, generation: u32) -> String {
        let (mut requests, mut in_flight) = (0, 0);
        for w in self.table.values() {
            let slot = self.scoreboard.slot(w.slot);
            requests += slot.requests.load(std::sync::atomic::Ordering::Relaxed);
            in_flight += slot.in_flight.load(std::sync::atomic::Ordering::Relaxed);
        }
        format!(
            "{} workers (generation {generation}), {requests} requests served by them, \
             {in_flight} in flight",
            self.ready_count(generation)
        )
    }

    /// Active workers of `generation` that have imported the app and accept.
    pub fn ready_count(&self, generation: u32) -> usize {
        self.active(generation).filter(|(_, w)| w.ready).count()
    }

    /// Start workers of `generation` until `target` of them are active (back-off allowing).
    pub fn top_up(
        &mut self,
        settings: &Arc<Settings>,
        generation: u32,
        target: usize,
    ) -> Result<(), Error> {
        while self.active(generation).count() < target && self.backoff.allows() {
            self.spawn(settings, generation)?;
            // The wait is over; the count of failures stays until a worker is ready.
            self.backoff.not_before = None;
        }
        Ok(())
    }

    /// Read readiness from the scoreboard, and mark for replacement the workers that
    /// reached `max_requests`, `max_worker_lifetime` or `max_worker_memory`.
    pub fn observe(&mut self, settings: &Settings) {
        for (pid, w) in &mut self.table {
            let slot = self.scoreboard.slot(w.slot);
            if !w.ready && slot.is_ready() {
                w.ready = true;
                self.backoff.reset();
                tracing::debug!("Worker {} (pid:{pid}) ready", w.number);
            }
            if !w.ready || w.replace || w.stopping.is_some() {
                continue;
            }
            let why = if slot.wants_retirement() {
                Some("served max_requests".to_owned())
            } else if settings.max_worker_lifetime > 0
                && w.spawned.elapsed() > Duration::from_secs(settings.max_worker_lifetime)
            {
                Some(format!(
                    "is older than max_worker_lifetime ({}s)",
                    settings.max_worker_lifetime
                ))
            } else if settings.max_worker_memory > 0 {
                resident_mib(*pid)
                    .filter(|&mib| mib > settings.max_worker_memory)
                    .map(|mib| {
                        format!(
                            "uses {mib} MiB, more than max_worker_memory ({} MiB)",
                            settings.max_worker_memory
                        )
                    })
            } else {
                None
            };
            if let Some(why) = why {
                tracing::info!("Worker {} (pid:{pid}) {why}: replacing it", w.number);
                w.replace = true;
            }
        }
    }

    /// Stop, gracefully, the workers marked for replacement, oldest first, while at least
    /// `target` ready workers of `generation` would still serve without them.
    ///
    /// A marked worker keeps serving until then, so that a replacement's boot never leaves
    /// the server short of workers. Counting the marked workers too (not only their
    /// replacements) matters when workers serve `max_requests` faster than one boots:
    /// replacements are then marked before all of them are ready, and waiting for `target`
    /// unmarked ready workers would keep every marked one alive, their number growing.
    pub fn retire_replaced(&mut self, generation: u32, target: usize) {
        let mut serving = self
            .table
            .values()
            .filter(|w| w.generation == generation && w.ready && w.stopping.is_none() && !w.killed)
            .count();
        let mut replaced: Vec<(usize, Pid, bool)> = self
            .table
            .iter()
            .filter(|(_, w)| w.replace && w.stopping.is_none())
            .map(|(pid, w)| {
                (
                    w.number,
                    *pid,
                    w.generation == generation && w.ready && !w.killed,
                )
            })
            .collect();
        replaced.sort();
        for (_, pid, counted) in replaced {
            let without = serving - usize::from(counted);
            if without >= target {
                self.stop(pid);
                serving = without;
            }
        }
    }

    /// Stop the oldest active workers of `generation` beyond `target` (TTOU, WINCH).
    pub fn trim(&mut self, generation: u32, target: usize) {
        let active: Vec<Pid> = self.active(generation).map(|(pid, _)| *pid).collect();
        let mut by_age: Vec<(usize, Pid)> = active
            .into_iter()
            .map(|pid| (self.table[&pid].number, pid))
            .collect();
        by_age.sort();
        let extra = by_age.len().saturating_sub(target);
        for (_, pid) in by_age.into_iter().take(extra) {
            self.stop(pid);
        }
    }

    /// Stop gracefully every worker of a generation before `generation`; how many.
    pub fn stop_older_than(&mut self, generation: u32) -> usize {
        let old: Vec<Pid> = self
            .table
            .iter()
            .filter(|(_, w)| w.generation < generation && w.stopping.is_none())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in &old {
            self.stop(*pid);
        }
        old.len()
    }

    /// Stop every worker of `generation` (a reload that failed).
    pub fn stop_generation(&mut self, generation: u32) {
        let pids: Vec<Pid> = self
            .table
            .iter()
            .filter(|(_, w)| w.generation == generation)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in pids {
            self.stop(pid);
        }
    }

    pub fn stop_all_gracefully(&mut self) {
        let pids: Vec<Pid> = self.table.keys().copied().collect();
        for pid in pids {
            self.stop(pid);
        }
    }

    /// QUIT one worker: it finishes its requests and exits.
    fn stop(&mut self, pid: Pid) {
        let Some(w) = self.table.get_mut(&pid) else {
            return;
        };
        if w.stopping.is_none() {
            w.stopping = Some(Instant::now());
            let _ = kill(pid, Signal::SIGQUIT);
        }
    }

    pub fn signal_all(&self, signal: Signal) {
        for pid in self.table.keys() {
            let _ = kill(*pid, signal);
        }
    }

    /// Kill every worker and wait, up to `KILL_WAIT`, for them to be reaped. One that is
    /// not by then (stuck in the kernel: uninterruptible sleep on a dead NFS or FUSE
    /// mount, a tracer holding it) is named in the log and left behind: the master goes on
    /// (to its exit) rather than block in waitpid for as long as the kernel holds it.
    pub fn kill_all(&mut self) {
        self.signal_all(Signal::SIGKILL);
        let pids: Vec<Pid> = self.table.keys().copied().collect();
        let left = wait_until_reaped(&pids, KILL_WAIT, reap_now);
        for pid in pids.iter().filter(|pid| !left.contains(pid)) {
            if let Some(w) = self.table.remove(pid) {
                self.scoreboard.release(w.slot);
            }
        }
        if !left.is_empty() {
            let pids: Vec<String> = left.iter().map(ToString::to_string).collect();
            tracing::warn!(
                "{} worker(s) not reaped {} ms after SIGKILL (pid {}): stuck in the kernel \
                 (state D in /proc/PID/stat: a hung NFS or FUSE mount, a disk) or held by a \
                 tracer; going on without them",
                left.len(),
                KILL_WAIT.as_millis(),
                pids.join(", ")
            );
        }
    }

    /// Deadlines: a request past `timeout` or a missed heartbeat gets the worker SIGABRT
    /// (it writes its Python tracebacks), then SIGKILL after a short grace; a worker that
    /// outlives `graceful_timeout` while stopping, or `boot_timeout` while booting, is
    /// killed.
    pub fn murder(&mut self, settings: &Settings) {
        let now_ms = now_ms();
        let mut boot_failures = 0;
        for (pid, w) in &mut self.table {
            if w.killed {
                continue;
            }
            let kill_now = |w: &mut Worker| {
                let _ = kill(*pid, Signal::SIGKILL);
                w.killed = true;
            };
            if let Some(at) = w.aborted {
                if at.elapsed() >= ABORT_GRACE {
                    kill_now(w);
                }
                continue;
            }
            if let Some(at) = w.stopping {
                if at.elapsed() > Duration::from_secs(settings.graceful_timeout) {
                    tracing::warn!(
                        "Worker {} (pid:{pid}) still busy after graceful_timeout ({}s): killing it",
                        w.number,
                        settings.graceful_timeout
                    );
                    kill_now(w);
                }
                continue;
            }
            if !w.ready {
                if settings.boot_timeout > 0
                    && w.spawned.elapsed() > Duration::from_secs(settings.boot_timeout)
                {
                    tracing::error!(
                        "Worker {} (pid:{pid}) did not load the app within boot_timeout ({}s): \
                         killing it",
                        w.number,
                        settings.boot_timeout
                    );
                    kill_now(w);
                    boot_failures += 1;
                }
                continue;
            }
            let Some(why) = overdue(self.scoreboard.slot(w.slot), settings, now_ms) else {
                continue;
            };
            tracing::error!(critical = true, "WORKER TIMEOUT (pid:{pid}): {why}");
            let _ = kill(*pid, Signal::SIGABRT);
            w.aborted = Some(Instant::now());
        }
        // Before the replacement is started (this same pass): a boot that times out is a
        // boot failure, backed off like a crash.
        for _ in 0..boot_failures {
            self.backoff.failed();
        }
    }

    /// Collect the workers that exited, log how, and say which ones matter.
    pub fn reap(&mut self) -> Vec<Death> {
        let mut deaths = Vec::new();
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return deaths,
                Ok(status) => status,
            };
            let Some(pid) = status.pid() else {
                return deaths;
            };
            let Some(w) = self.table.remove(&pid) else {
                continue;
            };
            self.scoreboard.release(w.slot);
            crate::python::hooks::child_exit(pid.as_raw());
            let stopping = w.stopping.is_some() || w.killed;
            let fatal = log_exit(&w, pid, status, stopping);
            // Died while booting (a boot_timeout kill was counted when it was killed).
            if !w.ready && !stopping && fatal.is_none() {
                self.backoff.failed();
            }
            deaths.push(Death {
                pid,
                generation: w.generation,
                stopping,
                fatal,
            });
        }
    }
}

/// Reap `pid` if it has exited, without waiting: true once it is gone (reaped now, or not
/// a child of ours any more).
fn reap_now(pid: Pid) -> bool {
    !matches!(
        waitpid(pid, Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR)
    )
}

/// Poll `reap` for each of `pids` until all are gone or `limit` has passed; those still
/// there. Each pid is waited for by name, so that no other child of the master (an
/// upgrade's, one of a hook's) is reaped here.
fn wait_until_reaped(pids: &[Pid], limit: Duration, mut reap: impl FnMut(Pid) -> bool) -> Vec<Pid> {
    let deadline = Instant::now() + limit;
    let mut left = pids.to_vec();
    loop {
        left.retain(|&pid| !reap(pid));
        let now = Instant::now();
        if left.is_empty() || now >= deadline {
            return left;
        }
        std::thread::sleep(KILL_POLL.min(deadline - now));
    }
}

/// Log how worker `w` ended (gunicorn's wording, the signal named, a hint after an
/// unexplained SIGKILL); whether it said it cannot start at all.
fn log_exit(w: &Worker, pid: Pid, status: WaitStatus, stopping: bool) -> Option<Fatal> {
    match status {
        WaitStatus::Exited(_, 0) => {
            tracing::info!("Worker {} (pid:{pid}) exited", w.number);
        }
        WaitStatus::Exited(_, code) if code == APP_LOAD_ERROR && !w.ready => {
            tracing::error!("Worker (pid:{pid}) failed to load the app");
            return Some(Fatal::AppLoad);
        }
        WaitStatus::Exited(_, code) if code == WORKER_BOOT_ERROR && !w.ready => {
            tracing::error!("Worker (pid:{pid}) failed to boot");
            return Some(Fatal::WorkerBoot);
        }
        WaitStatus::Exited(_, code) => {
            tracing::warn!("Worker {} (pid:{pid}) exited with code {code}", w.number);
        }
        WaitStatus::Signaled(_, signal, _) => {
            let hint = if signal == Signal::SIGKILL && !w.killed {
                " Perhaps out of memory?"
            } else {
                ""
            };
            if stopping && signal == Signal::SIGKILL {
                tracing::info!("Worker {} (pid:{pid}) killed", w.number);
            } else {
                tracing::error!("Worker {} (pid:{pid}) was sent {signal}!{hint}", w.number);
            }
        }
        _ => {}
    }
    None
}

/// Why a ready worker is past `timeout`: a request has run too long, or its I/O loop has
/// not beaten; `None` while it is within it (or `timeout` is 0).
fn overdue(slot: &Slot, settings: &Settings, now_ms: u64) -> Option<String> {
    if settings.timeout == 0 {
        return None;
    }
    let limit = settings.timeout * 1000 + ABORT_MARGIN_MS;
    let oldest = slot.oldest_ms.load(std::sync::atomic::Ordering::Acquire);
    let heartbeat = slot.heartbeat_ms.load(std::sync::atomic::Ordering::Acquire);
    if oldest != 0 && now_ms.saturating_sub(oldest) > limit {
        Some(format!(
            "a request has run for {:.1}s (timeout={}s)",
            now_ms.saturating_sub(oldest) as f64 / 1000.0,
            settings.timeout
        ))
    } else if oldest == 0 && now_ms.saturating_sub(heartbeat) > limit {
        // (While the app runs inline the I/O loop does not beat: the request's own
        // deadline covers that case.)
        Some(format!(
            "no heartbeat for {:.1}s (timeout={}s)",
            now_ms.saturating_sub(heartbeat) as f64 / 1000.0,
            settings.timeout
        ))
    } else {
        None
    }
}

/// A process's resident memory in MiB, from /proc (None when it is gone).
fn resident_mib(pid: Pid) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    Some(pages * page / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid the kernel never lets go of does not hold the wait past its limit, and is
    /// the one reported; the others are reaped as they go.
    #[test]
    fn the_wait_for_killed_workers_is_bounded() {
        let (stuck, slow, quick) = (Pid::from_raw(101), Pid::from_raw(102), Pid::from_raw(103));
        let mut polls = 0;
        let started = Instant::now();
        let left = wait_until_reaped(&[stuck, slow, quick], Duration::from_millis(300), |pid| {
            polls += 1;
            pid == quick || (pid == slow && started.elapsed() > Duration::from_millis(50))
        });
        let took = started.elapsed();
        assert_eq!(left, [stuck]);
        assert!(
            took >= Duration::from_millis(300),
            "gave up early: {took:?}"
        );
        assert!(
            took < Duration::from_millis(600),
            "waited past its limit: {took:?}"
        );
        // Polled, not spun: about one round every KILL_POLL.
        assert!(polls < 3 * 300 / 10 + 10, "{polls} polls");
    }

    #[test]
    fn the_wait_ends_as_soon_as_all_are_reaped() {
        let started = Instant::now();
        let left = wait_until_reaped(&[Pid::from_raw(7)], Duration::from_secs(5), |_| true);
        assert!(left.is_empty());
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
