//! The master (arbiter): binds the listeners, forks the workers and keeps the right number
//! of them alive, acting on the signals of DESIGN.md's table. One thread, no async
//! runtime, ever: it forks.
//!
//! It never serves a request and never imports the worker's HTTP or WSGI code; it starts
//! a worker through the `WorkerMain` it is given and watches it through the scoreboard.

mod code_reload;
mod fork;
mod limits;
mod metrics;
mod notify;
mod privileges;
mod setup;
mod signals;
mod upgrade;
mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::boot::WorkerMain;
use crate::config::Settings;
use crate::logging::ErrorLogHandle;
use crate::scoreboard::{MAX_WORKERS, Scoreboard};
use signals::SignalQueue;
use workers::Workers;

/// The longest the loop sleeps, whatever the deadlines (recycling by lifetime and memory
/// is checked at this pace).
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// How often it polls the scoreboard while a worker boots (readiness sends no signal).
const BUSY_WAKE: Duration = Duration::from_millis(50);

/// gunicorn's default `bind`, which socket activation replaces.
const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// Why the master stopped, as the process exit status.
pub type ExitStatus = u8;

/// A reload (HUP) waiting for its new generation to be ready.
struct Reload {
    /// What to go back to if the new generation cannot boot.
    previous: Arc<Settings>,
    started: Instant,
}

struct Arbiter {
    /// Where unitcorn was started: relative paths of the command line (`-c`, `--chdir`)
    /// are read from there, also at a reload.
    start_dir: std::path::PathBuf,
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
    pidfile: Option<setup::PidFile>,
    socket_files: setup::SocketFiles,
    notifier: notify::Notifier,
    workers: Workers,
    signals: SignalQueue,
    error_log: ErrorLogHandle,
    metrics: metrics::MasterMetrics,
    /// `reload`: watches the app's files.
    code_reload: Option<code_reload::CodeReload>,
}

/// Serve until told to stop; the result is the process exit status.
pub fn run(
    mut settings: Settings,
    error_log: ErrorLogHandle,
    worker_main: WorkerMain,
) -> Result<ExitStatus, String> {
    let adopted = upgrade::adopt();
    // A new master from USR2 is detached already (double fork).
    if settings.daemon && adopted.is_none() {
        setup::daemonize()?;
    }
    let start_dir =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    setup::prepare_process(&mut settings, &start_dir)?;
    limits::fit_open_files(&mut settings);
    // An unknown user fails the start before anything is bound.
    let target = privileges::resolve(&settings)?;
    for note in crate::config::gunicorn::start_notes(&settings) {
        tracing::warn!("{note}");
    }
    crate::python::hooks::configure(&Arc::new(settings.clone()));
    // gunicorn sets its worker count (nworkers_changed, old None) before on_starting.
    crate::python::hooks::workers_target(settings.workers.max(1) as usize);
    // Before binding, as gunicorn (which binds after it); a failure stops the start there too.
    crate::python::hooks::server_hook("on_starting")
        .map_err(|tb| format!("the on_starting hook raised; stopping\n{}", tb.trim_end()))?;
    let binds = settings
        .bind
        .iter()
        .map(|b| crate::config::bind::parse(b).map_err(|e| format!("bind {b:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    // The pid file goes after binding, so a second start fails at bind instead of
    // clobbering the running master's pid file (unicorn's order).
    let passed = crate::listeners::passed_by_systemd()?;
    // Socket activation with gunicorn's default bind: serve what systemd passed, only.
    let binds = if !passed.is_empty() && settings.bind == [DEFAULT_BIND] {
        Vec::new()
    } else {
        binds
    };
    // Unix sockets are created under `umask` (gunicorn's use of it).
    let umask = nix::sys::stat::Mode::from_bits_truncate(settings.umask as libc::mode_t);
    let previous_umask = nix::sys::stat::umask(umask);
    let opened = crate::listeners::open_all(&binds, settings.backlog, passed);
    nix::sys::stat::umask(previous_umask);
    let opened = opened?;
    let listeners = opened.listeners;
    let mut socket_files = opened.created;
    if let Some(adopted) = &adopted {
        socket_files.extend(adopted.socket_files.iter().cloned());
    }
    let socket_files = setup::SocketFiles(socket_files);
    // While the old master runs, its pid file stays its own: ours is `pidfile.2`.
    let pidfile = match &settings.pidfile {
        // It may be unwritable for the user the old master switched to: an upgrade
        // goes on without it rather than fail.
        Some(path) if adopted.is_some() => setup::PidFile::write(&upgrade::overlap_pidfile(path))
            .inspect_err(|e| tracing::error!("{e}; going on without it"))
            .ok(),
        Some(path) => Some(setup::PidFile::write(path)?),
        None => None,
    };
    become_user(&settings, target.as_ref(), &socket_files.0)?;
    if settings.preload_app {
        // Imported once, before any fork: the workers share it copy-on-write.
        let app = crate::python::load_app(&settings)
            .map_err(|e| format!("the app did not load (preload_app)\n{e}"))?;
        crate::python::set_preloaded(app, settings.gc_freeze);
    }
    let signals =
        SignalQueue::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let scoreboard =
        Scoreboard::create(MAX_WORKERS).map_err(|e| format!("cannot map the scoreboard: {e}"))?;
    crate::proctitle::set(
        settings.proc_name.as_deref(),
        "master",
        settings.wsgi_app.as_deref(),
    );
    tracing::info!("Starting unitcorn {}", env!("CARGO_PKG_VERSION"));
    if settings.worker_class == crate::config::WorkerClass::Gevent && settings.threads > 1 {
        tracing::warn!(
            "threads = {} is not used with worker_class = gevent: greenlets serve the \
             requests, up to worker_connections ({}) at once per worker",
            settings.threads,
            settings.worker_connections
        );
    }
    for l in &listeners {
        tracing::info!("Listening at: {l} ({})", std::process::id());
    }
    let mut notifier = notify::Notifier::from_env();
    if let Some(adopted) = &adopted {
        tracing::info!(
            "binary upgrade: started by master {}; taking over once the workers serve",
            adopted.from
        );
        notifier.mute();
    }
    let metrics = metrics::MasterMetrics::new(&settings);
    let mut arbiter = Arbiter {
        start_dir,
        target: settings.workers.max(1) as usize,
        settings: Arc::new(settings),
        generation: 1,
        reload: None,
        reload_failed: false,
        upgrade: None,
        adopted,
        pidfile,
        socket_files,
        notifier,
        workers: Workers::new(
            listeners,
            Arc::new(scoreboard),
            error_log.clone(),
            worker_main,
        ),
        signals,
        error_log,
        metrics,
        code_reload: None,
    };
    // Before the first worker is forked, as gunicorn; a failure stops the start there too.
    if let Err(tb) = crate::python::hooks::server_hook("when_ready") {
        arbiter.workers.kill_all();
        return Err(format!(
            "the when_ready hook raised; stopping\n{}",
            tb.trim_end()
        ));
    }
    let status = arbiter.serve();
    tracing::info!("Shutting down: Master");
    crate::python::hooks::server_hook_logged("on_exit");
    status
}

/// After binding, before the app is imported or a worker forked: switch to `user` (the
/// files opened as root given to it first), or warn that everything runs as root.
fn become_user(
    settings: &Settings,
    target: Option<&privileges::Target>,
    sockets: &[std::path::PathBuf],
) -> Result<(), String> {
    match target {
        Some(target) => {
            if nix::unistd::Uid::effective().is_root() {
                give_files(settings, target, sockets)?;
            }
            privileges::drop_to(target)?;
        }
        None => privileges::warn_if_root(),
    }
    // The process-wide mask: only when one is set (gunicorn's default 0 would make every
    // file the app writes world-writable).
    if settings.umask != 0 {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            settings.umask as libc::mode_t,
        ));
    }
    Ok(())
}

/// The log files and unix sockets, made the user's before the switch, so that it can
/// reopen (USR1) and remove them, and its workers open the access log.
fn give_files(
    settings: &Settings,
    target: &privileges::Target,
    sockets: &[std::path::PathBuf],
) -> Result<(), String> {
    let logs = [
        Some(settings.errorlog.as_str()),
        settings.accesslog.as_deref(),
    ];
    for log in logs.into_iter().flatten() {
        if log == "-" || log == "journald" {
            continue;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open the log file {log}: {e}"))?;
        privileges::hand_over_file(target, std::path::Path::new(log))?;
    }
    for socket in sockets {
        privileges::hand_over_file(target, socket)?;
    }
    Ok(())
}

impl Arbiter {
    /// The master loop: wait for a signal or the next check, handle the signals in order,
    /// then reap, murder and manage.
    fn serve(&mut self) -> Result<ExitStatus, String> {
        self.manage()?;
        loop {
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
            let signals = self.signals.wait_with(wake, &watched);
            drop(watched);
            for signal in signals {
                if let Some(status) = self.handle(signal) {
                    return Ok(status);
                }
            }
            // Before manage(), like a HUP: the new generation is forked in this pass.
            self.reload_changed_code();
            if let Some(status) = self.reap() {
                self.workers.kill_all();
                return Ok(status);
            }
            self.workers.murder(&self.settings);
            self.manage()?;
            self.tell_systemd();
            self.metrics.follow(&self.settings);
            self.metrics.workers(self.workers.len());
            if let Some(status) = self.follow_upgrade() {
                return Ok(status);
            }
        }
    }

    /// Both sides of a binary upgrade: the old master hands over once the new one serves,
    /// then stops (`Some(status)`); the new master takes the main-process role and, once
    /// the old master has gone, its pid file name.
    fn follow_upgrade(&mut self) -> Option<ExitStatus> {
        if let Some(adopted) = &mut self.adopted {
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
                    tracing::error!("{e}");
                }
                self.adopted = None;
            }
        }
        let progress = self.upgrade.as_mut()?.poll();
        match progress {
            upgrade::Progress::Booting => None,
            upgrade::Progress::Failed(why) => {
                tracing::error!("binary upgrade failed: {why}; this master keeps serving");
                self.upgrade = None;
                None
            }
            upgrade::Progress::Ready => {
                let upgrade = self.upgrade.take()?;
                let new = upgrade.pid;
                tracing::info!(
                    "binary upgrade: new master {new} serves; handing over and stopping"
                );
                self.notifier
                    .main_pid(new.as_raw() as u32, &format!("upgraded: new master {new}"));
                upgrade.hand_over();
                // The new master serves these sockets now, and removes their files at
                // its own exit.
                self.socket_files.0.clear();
                Some(self.stop_gracefully())
            }
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

    /// One signal; `Some(status)` when the master must exit.
    fn handle(&mut self, signal: Signal) -> Option<ExitStatus> {
        if signal != Signal::SIGCHLD {
            tracing::info!("Handling signal: {}", signal_name(signal));
        }
        if matches!(signal, Signal::SIGQUIT | Signal::SIGINT | Signal::SIGTERM) {
            self.notifier.stopping();
        }
        match signal {
            Signal::SIGHUP => self.handle_hup(),
            Signal::SIGQUIT => return Some(self.handle_quit()),
            Signal::SIGINT | Signal::SIGTERM => return Some(self.handle_int_term()),
            Signal::SIGTTIN => self.handle_ttin(),
            Signal::SIGTTOU => self.handle_ttou(),
            Signal::SIGUSR1 => self.handle_usr1(),
            Signal::SIGWINCH => self.handle_winch(),
            Signal::SIGUSR2 => self.handle_usr2(),
            // CHLD only wakes the loop; reap() does the work.
            _ => {}
        }
        None
    }

    /// HUP: reload. Re-read the configuration and start a new generation of workers with
    /// it (the app imported afresh); the old generation stops gracefully only once every
    /// new worker has imported the app and accepts. If the new generation cannot boot, the
    /// old one keeps serving.
    fn handle_hup(&mut self) {
        // The command line's relative paths are relative to where unitcorn started.
        let loaded = std::env::set_current_dir(&self.start_dir)
            .map_err(|e| format!("cannot chdir to {}: {e}", self.start_dir.display()))
            .and_then(|()| {
                let args = &crate::program::get().args;
                crate::config::load(args, &crate::python::config::Runner).map_err(|e| e.to_string())
            });
        let prepared = loaded.and_then(|command| {
            let mut settings = command
                .into_settings()
                .ok_or_else(|| "the command line asks for no server".to_owned())?;
            setup::prepare_process(&mut settings, &self.start_dir)?;
            limits::fit_open_files(&mut settings);
            Ok(settings)
        });
        let settings = match prepared {
            Ok(settings)
                if (&settings.user, &settings.group, &settings.keep_capabilities)
                    != (
                        &self.settings.user,
                        &self.settings.group,
                        &self.settings.keep_capabilities,
                    ) =>
            {
                tracing::warn!(
                    "reload: user, group and keep_capabilities changes take effect only at \
                     a restart; the master keeps its identity"
                );
                settings
            }
            Ok(settings) => settings,
            Err(e) => {
                tracing::error!("reload aborted, still serving the old configuration: {e}");
                // Back where the running generation expects the master to be.
                let _ = std::env::set_current_dir(&self.settings.chdir);
                self.reload_aborted();
                return;
            }
        };
        if settings.preload_app {
            match crate::python::reload_app(&settings) {
                Ok(app) => crate::python::set_preloaded(app, settings.gc_freeze),
                Err(e) => {
                    tracing::error!(
                        "reload aborted, the app did not load (preload_app); still serving \
                         the old generation\n{e}"
                    );
                    self.reload_aborted();
                    return;
                }
            }
        }
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
        let exe = &crate::program::get().exe;
        crate::python::hooks::server_hook_logged("pre_exec");
        let started = upgrade::start(
            exe,
            &crate::program::get().relaunch_args(),
            &self.start_dir,
            self.workers.listeners(),
            &self.socket_files.0,
            (self.settings.boot_timeout > 0)
                .then(|| Duration::from_secs(self.settings.boot_timeout)),
        );
        match started {
            Ok(upgrade) => {
                tracing::info!(
                    "binary upgrade: started new master {} from {}",
                    upgrade.pid,
                    exe.display()
                );
                self.upgrade = Some(upgrade);
            }
            Err(e) => tracing::error!("binary upgrade failed: {e}; this master keeps serving"),
        }
    }

    /// QUIT: graceful stop.
    fn handle_quit(&mut self) -> ExitStatus {
        self.stop_gracefully()
    }

    /// Workers stop accepting, finish what they are serving (up to `graceful_timeout`),
    /// and exit; then the master exits 0. INT or TERM meanwhile makes it immediate.
    fn stop_gracefully(&mut self) -> ExitStatus {
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
        0
    }

    /// INT, TERM: immediate stop. Workers are killed at once.
    fn handle_int_term(&mut self) -> ExitStatus {
        self.workers.kill_all();
        0
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

    /// Collect dead workers; `Some(status)` when one died in a way that must stop us.
    fn reap(&mut self) -> Option<ExitStatus> {
        for death in self.workers.reap() {
            let Some(status) = death.fatal else { continue };
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
                tracing::error!(
                    "Worker (pid:{}) could not start; stopping: fix the error above and start \
                     again",
                    death.pid
                );
                return Some(status);
            }
        }
        None
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
    fn manage(&mut self) -> Result<(), String> {
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

fn signal_name(signal: Signal) -> String {
    signal.as_str().trim_start_matches("SIG").to_lowercase()
}
