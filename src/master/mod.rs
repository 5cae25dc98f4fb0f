//! The master (arbiter): binds the listeners, forks the workers and keeps the right number
//! of them alive, acting on the signals of DESIGN.md's table. One thread, no async
//! runtime, ever: it forks.
//!
//! It never serves a request and never imports the worker's HTTP or WSGI code; it starts
//! a worker through the `WorkerMain` it is given and watches it through the scoreboard.

mod code_reload;
mod environment;
mod error;
mod fork;
mod limits;
mod metrics;
mod notify;
mod pidfile;
mod privileges;
mod setup;
mod signals;
mod start;
mod upgrade;
mod workers;

pub use error::{Cause, Error};

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::boot::WorkerMain;
use crate::config::Settings;
use crate::listeners::Listener;
use crate::logging::ErrorLogHandle;
use crate::scoreboard::MAX_WORKERS;
use pidfile::PidFile;
use signals::SignalQueue;
use workers::Workers;

/// The longest the loop sleeps, whatever the deadlines (recycling by lifetime and memory
/// is checked at this pace).
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// How often it polls the scoreboard while a worker boots (readiness sends no signal).
const BUSY_WAKE: Duration = Duration::from_millis(50);

/// gunicorn's default `bind`, which socket activation replaces.
const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// What a signal handler tells the loop: serve on, or exit (0: the stop was asked for).
type Next = ControlFlow<()>;

/// A reload (HUP) waiting for its new generation to be ready.
struct Reload {
    /// What to go back to if the new generation cannot boot.
    previous: Arc<Settings>,
    started: Instant,
}

struct Arbiter {
    /// Where unitcorn was started: relative paths of the command line (`-c`, `--chdir`)
    /// are read from there, also at a reload.
    start_dir: PathBuf,
    settings: Arc<Settings>,
    /// Bumped by every reload; each worker carries the generation it was started with.
    generation: u32,
    /// How many workers of the current generation should run (TTIN/TTOU/WINCH move it).
    target: usize,
    reload: Option<Reload>,
    /// The last reload failed (the old generation serves on): said in every STATUS= until
    /// a reload succeeds, so `systemctl status` shows it, not only the journal.
    reload_failed: bool,
    /// USR2 in progress: the new master, until it serves.
    upgrade: Option<upgrade::Upgrade>,
    /// This master was started by USR2: the old master, until it has handed over and gone.
    adopted: Option<upgrade::Adopted>,
    pidfile: Option<PidFile>,
    socket_files: setup::SocketFiles,
    notifier: notify::Notifier,
    workers: Workers,
    signals: SignalQueue,
    error_log: ErrorLogHandle,
    metrics: metrics::MasterMetrics,
    /// `reload`: watches the app's files.
    code_reload: Option<code_reload::CodeReload>,
}

/// Serve until told to stop (`Ok`), or until a failure stops the master: the error says
/// why, and `lib.rs` turns it into the exit status.
pub fn run(
    settings: Settings,
    error_log: ErrorLogHandle,
    worker_main: WorkerMain,
) -> Result<(), Error> {
    let mut arbiter = Arbiter::start(settings, error_log, worker_main)?;
    let served = arbiter.serve();
    tracing::info!("Shutting down: Master");
    crate::python::hooks::server_hook_logged("on_exit");
    served
}

impl Arbiter {
    /// The master loop: wait for a signal or the next check, handle the signals in order,
    /// then reap, murder and manage. `Ok` once a stop was asked for.
    fn serve(&mut self) -> Result<(), Error> {
        self.manage()?;
        loop {
            for signal in self.wait_for_signals() {
                if self.handle(signal).is_break() {
                    return Ok(());
                }
            }
            // Before manage(), like a HUP: the new generation is forked in this pass.
            self.reload_changed_code();
            if let Err(e) = self.reap() {
                self.workers.kill_all();
                return Err(e);
            }
            self.workers.murder(&self.settings);
            self.manage()?;
            self.tell_systemd();
            self.metrics.follow(&self.settings);
            self.metrics.workers(self.workers.len());
            if self.follow_upgrade().is_break() {
                return Ok(());
            }
        }
    }

    /// Sleep until a signal, a watched file, or the nearest deadline (a worker's, the
    /// watchdog's, the code reloader's); the signals that came, in order.
    fn wait_for_signals(&self) -> Vec<Signal> {
        let handing_over = self.upgrade.is_some() || self.adopted.is_some();
        let poll = if self.workers.booting() || handing_over {
            BUSY_WAKE
        } else {
            IDLE_WAKE
        };
        let wake = [
            self.workers.until_next_deadline(&self.settings),
            self.notifier.until_next_ping(),
            self.code_reload.as_ref().and_then(|r| r.until_due()),
        ]
        .into_iter()
        .flatten()
        .fold(poll, Duration::min);
        let watched = self
            .code_reload
            .as_ref()
            .map(|r| r.fds())
            .unwrap_or_default();
        self.signals.wait_with(wake, &watched)
    }

    /// One signal, to its handler; `Break` when the master must exit.
    fn handle(&mut self, signal: Signal) -> Next {
        if signal != Signal::SIGCHLD {
            tracing::info!("Handling signal: {}", signal_name(signal));
        }
        if matches!(signal, Signal::SIGQUIT | Signal::SIGINT | Signal::SIGTERM) {
            self.notifier.stopping();
        }
        match signal {
            Signal::SIGHUP => self.handle_hup(),
            Signal::SIGQUIT => return self.handle_quit(),
            Signal::SIGINT => return self.handle_int(),
            Signal::SIGTERM => return self.handle_term(),
            Signal::SIGTTIN => self.handle_ttin(),
            Signal::SIGTTOU => self.handle_ttou(),
            Signal::SIGUSR1 => self.handle_usr1(),
            Signal::SIGWINCH => self.handle_winch(),
            Signal::SIGUSR2 => self.handle_usr2(),
            Signal::SIGCHLD => self.handle_chld(),
            _ => {}
        }
        Next::Continue(())
    }

    /// HUP: reload. Re-read the configuration and start a new generation of workers with
    /// it (the app imported afresh); the old generation stops gracefully only once every
    /// new worker has imported the app and accepts. If the new generation cannot boot, the
    /// old one keeps serving.
    fn handle_hup(&mut self) {
        let settings = match self.reread_settings() {
            Ok(settings) => settings,
            Err(e) => {
                tracing::error!("reload aborted, still serving the old configuration: {e:#}");
                // Back where the running generation expects the master to be.
                let _ = std::env::set_current_dir(&self.settings.chdir);
                self.reload_aborted();
                return;
            }
        };
        if settings.preload_app
            && let Err(e) = crate::python::reload_app(&settings)
                .map(|app| crate::python::set_preloaded(app, settings.gc_freeze))
        {
            tracing::error!(
                "reload aborted, the app did not load (preload_app); still serving the old \
                 generation\n{e}"
            );
            self.reload_aborted();
            return;
        }
        self.start_generation(settings);
    }

    /// The configuration as it is now, read as at the start (from where unitcorn started).
    fn reread_settings(&self) -> Result<Settings, Error> {
        // The command line's relative paths are relative to where unitcorn started.
        std::env::set_current_dir(&self.start_dir)
            .map_err(|e| Error::return_to_start_dir(&self.start_dir, e))?;
        let command =
            crate::config::load(&crate::program::get().args, &crate::python::config::Runner)
                .map_err(Error::config)?;
        let mut settings = command.into_settings().ok_or_else(Error::no_server)?;
        start::prepare(&mut settings, &self.start_dir)?;
        environment::export_at_reload(&settings);
        fn identity(s: &Settings) -> (&Option<String>, &Option<String>, &Vec<String>) {
            (&s.user, &s.group, &s.keep_capabilities)
        }
        if identity(&settings) != identity(&self.settings) {
            tracing::warn!(
                "reload: user, group and keep_capabilities changes take effect only at a \
                 restart; the master keeps its identity"
            );
        }
        Ok(settings)
    }

    /// A reload's new generation: its settings in force, its workers forked by the next
    /// `manage`; the old generation stops once they all serve.
    fn start_generation(&mut self, settings: Settings) {
        let previous = std::mem::replace(&mut self.settings, Arc::new(settings));
        // A reload that supersedes one still booting goes back to the last good settings.
        let previous = match self.reload.take() {
            Some(pending) => pending.previous,
            None => previous,
        };
        self.generation += 1;
        self.target = self.settings.workers.max(1) as usize;
        self.reload = Some(Reload {
            previous,
            started: Instant::now(),
        });
        self.notifier.reloading();
        crate::python::hooks::configure(&self.settings);
        crate::python::hooks::server_hook_logged("on_reload");
        // A new proc_name applies to the master too.
        crate::proctitle::set(
            self.settings.proc_name.as_deref(),
            "master",
            self.settings.wsgi_app.as_deref(),
        );
        tracing::info!("reload: starting generation {}", self.generation);
    }

    /// USR2: binary upgrade. Start a new master from the binary on disk with the same
    /// command line and the same sockets; when its workers serve, it takes over and this
    /// master stops gracefully (see `upgrade`). If it cannot start, this one serves on.
    fn handle_usr2(&mut self) {
        if let Some(upgrade) = &self.upgrade {
            tracing::warn!(
                "binary upgrade already in progress (new master {}); ignoring USR2",
                upgrade.pid
            );
            return;
        }
        if self.adopted.as_ref().is_some_and(|a| !a.is_main()) {
            tracing::warn!("this master is still taking over from the last upgrade; ignoring USR2");
            return;
        }
        // How this process was started (program.rs): USR2 starts what is there now.
        let program = crate::program::get();
        crate::python::hooks::server_hook_logged("pre_exec");
        let started = upgrade::start(
            &program.exe,
            &program.relaunch_args(),
            &self.start_dir,
            self.workers.listeners(),
            &self.socket_files.0,
            (self.settings.boot_timeout > 0)
                .then(|| Duration::from_secs(self.settings.boot_timeout)),
        );
        match started {
            Ok(upgrade) => {
                let (pid, exe) = (upgrade.pid, program.exe.display());
                tracing::info!("binary upgrade: started new master {pid} from {exe}");
                self.upgrade = Some(upgrade);
            }
            Err(e) => tracing::error!("binary upgrade failed: {e:#}; this master keeps serving"),
        }
    }

    /// QUIT: graceful stop. Workers stop accepting, finish what they are serving (up to
    /// `graceful_timeout`) and exit; then the master exits 0. INT or TERM meanwhile makes
    /// it immediate.
    fn handle_quit(&mut self) -> Next {
        self.stop_gracefully();
        Next::Break(())
    }

    /// INT (Ctrl-C): immediate stop. Workers are killed at once; the master exits 0.
    fn handle_int(&mut self) -> Next {
        self.workers.kill_all();
        Next::Break(())
    }

    /// TERM: immediate stop, as INT (gunicorn's meaning): what a plain `kill` sends. The
    /// units stop with QUIT (`KillSignal=SIGQUIT`).
    fn handle_term(&mut self) -> Next {
        self.handle_int()
    }

    /// TTIN: one worker more.
    fn handle_ttin(&mut self) {
        self.target = (self.target + 1).min(MAX_WORKERS);
        tracing::info!("workers: {}", self.target);
    }

    /// TTOU: one worker fewer (the oldest leaves gracefully); never below one.
    fn handle_ttou(&mut self) {
        self.target = self.target.saturating_sub(1).max(1);
        tracing::info!("workers: {}", self.target);
    }

    /// USR1: reopen every log file, here and in every worker (logrotate moved them).
    fn handle_usr1(&mut self) {
        if let Err(e) = self.error_log.reopen() {
            tracing::error!("cannot reopen the error log: {e}");
        }
        self.workers.signal_all(Signal::SIGUSR1);
    }

    /// WINCH: stop every worker gracefully; the master stays up with its sockets. HUP or
    /// TTIN brings workers back.
    fn handle_winch(&mut self) {
        self.target = 0;
        tracing::info!("stopping all workers gracefully (WINCH); HUP or TTIN starts them again");
    }

    /// CHLD: a worker exited. It only wakes the loop: `reap`, on every pass, collects the
    /// dead and says whether the master must stop; `manage` then respawns those that died
    /// unexpectedly, with back-off when they die at boot.
    fn handle_chld(&mut self) {}

    /// Stop every worker gracefully and wait for them, up to `graceful_timeout` (INT or
    /// TERM cut it short); then kill what is left.
    fn stop_gracefully(&mut self) {
        self.workers.stop_all_gracefully();
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
            let signals = self.signals.wait(left.min(BUSY_WAKE));
            if signals.contains(&Signal::SIGINT) || signals.contains(&Signal::SIGTERM) {
                tracing::info!("immediate stop requested during the graceful stop");
                break;
            }
            let _ = self.reap();
        }
        self.workers.kill_all();
    }

    /// Collect dead workers; an error when one died in a way that must stop the master
    /// (the first generation cannot boot: gunicorn's WORKER_BOOT_ERROR, APP_LOAD_ERROR).
    fn reap(&mut self) -> Result<(), Error> {
        for death in self.workers.reap() {
            let Some(fatal) = death.fatal else { continue };
            // Only the current generation's boot failures matter: an older generation is
            // leaving anyway, and a newer one was abandoned (a failed reload).
            if death.generation != self.generation {
                continue;
            }
            if self.reload.is_some() {
                self.abort_reload();
                continue;
            }
            // Workers of this generation that serve prove the app can be loaded (the file
            // changed under a booting worker): keep serving, replace it with back-off.
            if self.workers.ready_count(self.generation) > 0 {
                tracing::error!(
                    "Worker (pid:{}) could not start while others serve; retrying with back-off",
                    death.pid
                );
                self.workers.boot_failed();
                continue;
            }
            if !death.stopping {
                return Err(fatal.error(death.pid));
            }
        }
        Ok(())
    }

    /// Both sides of a binary upgrade: the new master takes over (`follow_adoption`); the
    /// old one hands over once the new one serves, then stops (`Break`).
    fn follow_upgrade(&mut self) -> Next {
        self.follow_adoption();
        let progress = match self.upgrade.as_mut() {
            Some(upgrade) => upgrade.poll(),
            None => return Next::Continue(()),
        };
        match progress {
            upgrade::Progress::Booting => Next::Continue(()),
            upgrade::Progress::Failed(why) => {
                tracing::error!("binary upgrade failed: {why}; this master keeps serving");
                self.upgrade = None;
                Next::Continue(())
            }
            upgrade::Progress::Ready => self.hand_over(),
        }
    }

    /// The old master's side: the new master serves; systemd is told it is the main
    /// process now, and this one stops gracefully.
    fn hand_over(&mut self) -> Next {
        let Some(upgrade) = self.upgrade.take() else {
            return Next::Continue(());
        };
        let new = upgrade.pid;
        tracing::info!("binary upgrade: new master {new} serves; handing over and stopping");
        self.notifier
            .main_pid(new.as_raw() as u32, &format!("upgraded: new master {new}"));
        upgrade.hand_over();
        // The new master serves these sockets now, and removes their files at its own exit.
        self.socket_files.0.clear();
        self.stop_gracefully();
        Next::Break(())
    }

    /// The new master's side: once its workers serve, it takes the main-process role and,
    /// once the old master has gone, its pid file name.
    fn follow_adoption(&mut self) {
        let Some(adopted) = &mut self.adopted else {
            return;
        };
        if self.notifier.is_ready() {
            adopted.ready();
        }
        if adopted.became_main() {
            tracing::info!(
                "Master has been promoted (binary upgrade from {})",
                adopted.from
            );
            self.notifier
                .became_main(self.workers.status_line(self.generation));
        }
        if adopted.is_main() && adopted.old_master_gone() {
            if let (Some(pidfile), Some(path)) = (&mut self.pidfile, &self.settings.pidfile)
                && let Err(e) = pidfile.rename(path)
            {
                tracing::error!("{e:#}");
            }
            self.adopted = None;
        }
    }

    /// READY=1 once the first generation serves, STATUS=, watchdog pings, more start time
    /// while the app loads.
    fn tell_systemd(&mut self) {
        let status = self.status_line();
        if !self.notifier.is_ready() {
            if self.workers.ready_count(self.generation) >= self.target.max(1) {
                self.notifier.ready(status);
            } else {
                self.notifier.extend_while_loading();
            }
        } else {
            self.notifier.status(status);
        }
        // Until the first generation is up, a live loop is all there is to vouch for.
        let healthy = !self.notifier.is_ready() || self.workers.any_healthy(&self.settings);
        self.notifier.watchdog(healthy);
    }

    /// The new generation cannot boot: go back to the old one, which kept serving.
    fn abort_reload(&mut self) {
        let Some(reload) = self.reload.take() else {
            return;
        };
        tracing::error!(
            "reload failed: generation {} could not load the app; generation {} keeps serving",
            self.generation,
            self.generation - 1
        );
        self.workers.stop_generation(self.generation);
        self.settings = reload.previous;
        crate::python::hooks::configure(&self.settings);
        self.generation -= 1;
        self.target = self.settings.workers.max(1) as usize;
        // Out of the reloading state: the old generation still serves.
        self.reload_failed = true;
        self.notifier.ready(self.status_line());
    }

    /// A reload that never started a generation: systemd may be waiting in `reloading`
    /// (`unitcorn reload` said RELOADING=1 already): READY=1 ends that, with the failure
    /// in STATUS=.
    fn reload_aborted(&mut self) {
        self.reload_failed = true;
        self.notifier.ready(self.status_line());
    }

    /// What `systemctl status` shows: the workers, and a reload that failed.
    fn status_line(&self) -> String {
        let workers = self.workers.status_line(self.generation);
        if self.reload_failed {
            format!("last reload failed (see the log); {workers}")
        } else {
            workers
        }
    }

    /// `reload`: a file of the app changed: a new generation, as HUP makes.
    fn reload_changed_code(&mut self) {
        if let Some(path) = self.code_reload.as_mut().and_then(|r| r.poll()) {
            tracing::info!("reload: {} changed", path.display());
            self.handle_hup();
        }
    }

    /// Bring the worker table to where it should be: spawn, finish a reload, recycle.
    fn manage(&mut self) -> Result<(), Error> {
        crate::python::hooks::workers_target(self.target);
        // Before any fork: workers report their modules from their start.
        code_reload::follow(&mut self.code_reload, &self.settings);
        self.workers.observe(&self.settings);
        self.workers
            .top_up(&self.settings, self.generation, self.target)?;
        if let Some(reload) = &self.reload
            && self.workers.ready_count(self.generation) >= self.target
        {
            let old = self.workers.stop_older_than(self.generation);
            tracing::info!(
                "reload: generation {} ready in {} ms; stopping {old} old worker(s)",
                self.generation,
                reload.started.elapsed().as_millis()
            );
            self.reload = None;
            self.reload_failed = false;
            self.notifier.ready(self.status_line());
        }
        if self.reload.is_none() {
            self.workers.trim(self.generation, self.target);
        }
        self.workers.retire_replaced(self.generation, self.target);
        Ok(())
    }
}

/// The start in the log: version, notes, each listener. Here, not in `start.rs`: these
/// lines' target (journald's `TARGET=`) is `unitcorn::master`.
fn announce(settings: &Settings, listeners: &[Listener]) {
    tracing::info!("Starting unitcorn {}", env!("CARGO_PKG_VERSION"));
    if settings.worker_class == crate::config::WorkerClass::Gevent && settings.threads > 1 {
        tracing::warn!(
            "threads = {} is not used with worker_class = gevent: greenlets serve the \
             requests, up to worker_connections ({}) at once per worker",
            settings.threads,
            settings.worker_connections
        );
    }
    for l in listeners {
        tracing::info!("Listening at: {l} ({})", std::process::id());
    }
}

fn signal_name(signal: Signal) -> String {
    signal.as_str().trim_start_matches("SIG").to_lowercase()
}
