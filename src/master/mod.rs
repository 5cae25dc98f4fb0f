//! The master (arbiter): binds the listeners, forks the workers, replaces those that die,
//! and stops them all on INT, TERM or QUIT. One thread, no async runtime, ever: it forks.
//!
//! It never serves a request and never imports the worker's HTTP or WSGI code; it starts
//! a worker through the `WorkerMain` it is given.

mod fork;
mod setup;
mod signals;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::boot::{APP_LOAD_ERROR, WORKER_BOOT_ERROR, WorkerBoot, WorkerMain};
use crate::config::Settings;
use crate::listeners::Listener;
use crate::logging::ErrorLogHandle;
use crate::scoreboard::{MAX_WORKERS, Scoreboard};
use signals::SignalQueue;

/// How often the loop wakes without a signal, to re-check the workers.
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// How long INT/TERM wait for killed workers to be reaped before the master exits.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How often a graceful stop checks for workers that finished.
const GRACEFUL_POLL: Duration = Duration::from_millis(100);

/// Why the master stopped, as the process exit status.
pub type ExitStatus = u8;

struct Worker {
    number: usize,
    slot: usize,
}

struct Arbiter {
    settings: Arc<Settings>,
    listeners: Vec<Listener>,
    worker_main: WorkerMain,
    workers: BTreeMap<Pid, Worker>,
    signals: SignalQueue,
    scoreboard: Arc<Scoreboard>,
    error_log: ErrorLogHandle,
    next_number: usize,
}

/// Serve until told to stop; the result is the process exit status.
pub fn run(
    settings: Settings,
    error_log: ErrorLogHandle,
    worker_main: WorkerMain,
) -> Result<ExitStatus, String> {
    setup::prepare_process(&settings)?;
    if settings.preload_app {
        // Imported once, before any fork: the workers share it copy-on-write.
        let app = crate::python::load_app(&settings)
            .map_err(|e| format!("the app did not load (preload_app)\n{e}"))?;
        crate::python::set_preloaded(app);
    }
    let binds = settings
        .bind
        .iter()
        .map(|b| crate::config::bind::parse(b).map_err(|e| format!("bind {b:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    // The pid file goes after binding, so a second start fails at bind instead of
    // clobbering the running master's pid file (unicorn's order).
    let listeners = crate::listeners::open_all(&binds, settings.backlog)?;
    let _socket_files = setup::SocketFiles::bound(&binds);
    let _pidfile = match &settings.pidfile {
        Some(path) => Some(setup::PidFile::write(path)?),
        None => None,
    };
    let signals =
        SignalQueue::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mut arbiter = Arbiter {
        settings: Arc::new(settings),
        listeners,
        worker_main,
        workers: BTreeMap::new(),
        signals,
        scoreboard: Arc::new(
            Scoreboard::create(MAX_WORKERS)
                .map_err(|e| format!("cannot map the scoreboard: {e}"))?,
        ),
        error_log,
        next_number: 1,
    };
    tracing::info!("Starting unitcorn {}", env!("CARGO_PKG_VERSION"));
    for l in &arbiter.listeners {
        tracing::info!("Listening at: {l} ({})", std::process::id());
    }
    arbiter.manage()?;
    loop {
        for signal in arbiter.signals.wait(IDLE_WAKE) {
            let done = match signal {
                Signal::SIGCHLD => None,
                Signal::SIGQUIT => Some(arbiter.handle_quit()),
                Signal::SIGINT | Signal::SIGTERM => Some(arbiter.handle_int_term(signal)),
                Signal::SIGUSR1 => {
                    arbiter.handle_usr1();
                    None
                }
                other => {
                    tracing::debug!("ignoring {other} (not handled yet)");
                    None
                }
            };
            if let Some(status) = done {
                tracing::info!("Shutting down: Master");
                return Ok(status);
            }
        }
        if let Some(status) = arbiter.reap() {
            arbiter.kill_all();
            return Ok(status);
        }
        arbiter.manage()?;
    }
}

fn signal_name(signal: Signal) -> String {
    signal.as_str().trim_start_matches("SIG").to_lowercase()
}

impl Arbiter {
    /// Start workers until there are `workers` of them.
    fn manage(&mut self) -> Result<(), String> {
        while self.workers.len() < self.settings.workers.max(1) as usize {
            self.spawn()?;
        }
        Ok(())
    }

    fn spawn(&mut self) -> Result<(), String> {
        let listeners = self
            .listeners
            .iter()
            .map(Listener::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot duplicate a listener for a worker: {e}"))?;
        let number = self.next_number;
        self.next_number += 1;
        let slot = self
            .scoreboard
            .claim()
            .ok_or_else(|| format!("cannot run more than {MAX_WORKERS} workers"))?;
        let boot = WorkerBoot {
            settings: Arc::clone(&self.settings),
            listeners,
            error_log: self.error_log.clone(),
            scoreboard: Arc::clone(&self.scoreboard),
            slot,
        };
        let pid = match fork::spawn(boot, self.worker_main) {
            Ok(pid) => pid,
            Err(e) => {
                self.scoreboard.release(slot);
                return Err(format!("fork failed: {e}"));
            }
        };
        self.scoreboard.assign(slot, pid.as_raw());
        tracing::info!("Booting worker with pid: {pid}");
        self.workers.insert(pid, Worker { number, slot });
        Ok(())
    }

    /// Collect dead workers; `Some(status)` when one died in a way that must stop us.
    fn reap(&mut self) -> Option<ExitStatus> {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return None,
                Ok(status) => status,
            };
            let pid = status.pid()?;
            let Some(worker) = self.workers.remove(&pid) else {
                continue;
            };
            self.scoreboard.release(worker.slot);
            match status {
                WaitStatus::Exited(_, code) if code == APP_LOAD_ERROR => {
                    tracing::error!(
                        "Worker (pid:{pid}) failed to load the app; stopping: fix the app and start again"
                    );
                    return Some(APP_LOAD_ERROR as ExitStatus);
                }
                WaitStatus::Exited(_, code) if code == WORKER_BOOT_ERROR => {
                    tracing::error!("Worker (pid:{pid}) failed to boot; stopping");
                    return Some(WORKER_BOOT_ERROR as ExitStatus);
                }
                WaitStatus::Exited(_, 0) => {
                    tracing::info!("Worker {} (pid:{pid}) exited", worker.number);
                }
                WaitStatus::Exited(_, code) => {
                    tracing::warn!(
                        "Worker {} (pid:{pid}) exited with code {code}",
                        worker.number
                    );
                }
                WaitStatus::Signaled(_, signal, _) => {
                    let hint = if signal == Signal::SIGKILL {
                        " Perhaps out of memory?"
                    } else {
                        ""
                    };
                    tracing::error!(
                        "Worker {} (pid:{pid}) was sent {signal}!{hint}",
                        worker.number
                    );
                }
                _ => {}
            }
        }
    }

    /// USR1: reopen every log file, here and in every worker (logrotate moved them).
    fn handle_usr1(&mut self) {
        tracing::info!("Handling signal: usr1");
        if let Err(e) = self.error_log.reopen() {
            tracing::error!("cannot reopen the error log: {e}");
        }
        for pid in self.workers.keys() {
            let _ = kill(*pid, Signal::SIGUSR1);
        }
    }

    /// QUIT: graceful stop. Workers stop accepting, finish what they are serving (up to
    /// `graceful_timeout`), and exit; then the master exits 0. INT or TERM meanwhile
    /// makes it immediate.
    fn handle_quit(&mut self) -> ExitStatus {
        tracing::info!("Handling signal: quit");
        for pid in self.workers.keys() {
            let _ = kill(*pid, Signal::SIGQUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(self.settings.graceful_timeout);
        while !self.workers.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    "graceful_timeout ({}s) expired with {} worker(s) still busy: killing them",
                    self.settings.graceful_timeout,
                    self.workers.len()
                );
                break;
            }
            let signals = self.signals.wait(left.min(GRACEFUL_POLL));
            if signals.contains(&Signal::SIGINT) || signals.contains(&Signal::SIGTERM) {
                tracing::info!("immediate stop requested during the graceful stop");
                break;
            }
            let _ = self.reap();
        }
        self.kill_all();
        0
    }

    /// INT, TERM: immediate stop. Workers are killed at once.
    fn handle_int_term(&mut self, signal: Signal) -> ExitStatus {
        tracing::info!("Handling signal: {}", signal_name(signal));
        self.kill_all();
        0
    }

    /// Kill every worker and wait (bounded) for them to be gone.
    fn kill_all(&mut self) {
        for pid in self.workers.keys() {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        let deadline = Instant::now() + KILL_WAIT;
        while !self.workers.is_empty() && Instant::now() < deadline {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.workers.remove(&pid);
                    }
                }
                Err(_) => break,
            }
        }
    }
}
