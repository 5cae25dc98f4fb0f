//! Start-up: the master's steps from the command line's settings to the loop, in order.
//! Each step is a function named after it; why they come in this order is said once, on
//! [`Arbiter::start`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pidfile::PidFile;
use super::signals::SignalQueue;
use super::upgrade::Adopted;
use super::workers::Workers;
use super::{
    Arbiter, DEFAULT_BIND, Error, announce, environment, limits, metrics, notify, privileges,
    setup, upgrade,
};
use crate::boot::WorkerMain;
use crate::config::Settings;
use crate::listeners::Listener;
use crate::logging::ErrorLogHandle;
use crate::scoreboard::{MAX_WORKERS, Scoreboard};

impl Arbiter {
    /// Start the master, step by step; the first generation is forked by the loop's
    /// first pass (`serve`), and READY=1 goes out once it serves (`tell_systemd`).
    ///
    /// The order is the policy:
    /// 1. `adopt` first: a new master of a binary upgrade (USR2) makes systemd's
    ///    variables name itself before anything reads them.
    /// 2. `daemonize` before anything else is set up, as gunicorn; a new master from USR2
    ///    is detached already (double fork).
    /// 3. `prepare` (chdir, raw_env, the open-file limit; raw_env goes into the master's
    ///    environment now, before any app code can have started a thread), then the user
    ///    is resolved: an unknown user fails the start before anything is bound; then the
    ///    access log is opened once, so that one that cannot be fails the start here,
    ///    naming the setting, rather than every worker's boot.
    /// 4. `on_starting` before binding, as gunicorn (which binds after it): a hook that
    ///    raises stops the start there.
    /// 5. `open_listeners`: bind, or adopt what systemd or the old master passed.
    /// 6. The pid file after binding, so that a second start fails at bind instead of
    ///    clobbering the running master's pid file (unicorn's order); the process title
    ///    just before it, so that whoever finds the master by its pid file sees its name.
    /// 7. `become_user` after binding (a port below 1024, a socket in a root-owned
    ///    directory) and before the app is imported or a worker forked: no code of the app
    ///    ever runs as root.
    /// 8. `preload_app`, as that user.
    /// 9. The signal handlers after the preload, so that an app that sets handlers when
    ///    imported does not replace the master's. Until then a signal has its default
    ///    effect: TERM stops the start, and the pid file it leaves names a dead process,
    ///    which the next start replaces.
    /// 10. `when_ready` last, once the master is whole, before the first fork (gunicorn's
    ///     order): a hook that raises stops the start, killing nothing but itself.
    pub(super) fn start(
        mut settings: Settings,
        error_log: ErrorLogHandle,
        worker_main: WorkerMain,
    ) -> Result<Arbiter, Error> {
        let adopted = upgrade::adopt();
        if settings.daemon && adopted.is_none() {
            setup::daemonize()?;
        }
        let start_dir = environment::start_dir()?;
        prepare(&mut settings, &start_dir)?;
        environment::export_at_start(&settings);
        let user = privileges::resolve(&settings)?;
        check_access_log(&settings)?;
        on_starting(&settings)?;
        let (listeners, socket_files) = open_listeners(&settings, adopted.as_ref())?;
        crate::proctitle::set(
            settings.proc_name.as_deref(),
            "master",
            settings.wsgi_app.as_deref(),
        );
        let pidfile = PidFile::at_start(settings.pidfile.as_deref(), adopted.is_some())
            .map_err(|e| e.set_by(settings.provenance("pidfile")))?;
        become_user(&settings, user.as_ref(), &socket_files.0)?;
        preload_app(&settings)?;
        let signals = SignalQueue::install().map_err(Error::signals)?;
        let scoreboard = Scoreboard::create(MAX_WORKERS).map_err(Error::scoreboard)?;
        announce(&settings, &listeners);
        let mut arbiter = Arbiter {
            start_dir,
            target: settings.workers.max(1) as usize,
            notifier: notifier(adopted.as_ref()),
            metrics: metrics::MasterMetrics::new(&settings),
            settings: Arc::new(settings),
            generation: 1,
            reload: None,
            reload_failed: false,
            upgrade: None,
            adopted,
            pidfile,
            socket_files,
            workers: Workers::new(
                listeners,
                Arc::new(scoreboard),
                error_log.clone(),
                worker_main,
            ),
            signals,
            error_log,
            code_reload: None,
        };
        arbiter.when_ready()?;
        Ok(arbiter)
    }

    /// The `when_ready` hook; one that raises stops the start.
    fn when_ready(&mut self) -> Result<(), Error> {
        crate::python::hooks::server_hook("when_ready").map_err(|tb| {
            self.workers.kill_all();
            Error::hook("when_ready", tb)
        })
    }
}

/// The process the settings ask for, at the start and at every reload: working directory,
/// `raw_env` checked (where it is set: `environment`), and `worker_connections` within the
/// open-file limit.
pub(super) fn prepare(settings: &mut Settings, start_dir: &Path) -> Result<(), Error> {
    environment::prepare(settings, start_dir)?;
    limits::fit_open_files(settings);
    Ok(())
}

/// What gunicorn's settings mean here, the hooks' view of the server, and `on_starting`,
/// whose failure stops the start.
fn on_starting(settings: &Settings) -> Result<(), Error> {
    for note in crate::config::gunicorn::start_notes(settings) {
        tracing::warn!("{note}");
    }
    crate::python::hooks::configure(&Arc::new(settings.clone()));
    // gunicorn sets its worker count (nworkers_changed, old None) before on_starting.
    crate::python::hooks::workers_target(settings.workers.max(1) as usize);
    crate::python::hooks::server_hook("on_starting").map_err(|tb| Error::hook("on_starting", tb))
}

/// The access log and its format, as every worker will open them: a log that cannot be
/// opened, or a format that does not compile, stops the start instead of every boot.
/// (The workers open their own: a log reopened on USR1 is each process's.)
fn check_access_log(settings: &Settings) -> Result<(), Error> {
    let Some(target) = settings.accesslog.as_deref() else {
        return Ok(());
    };
    let failed = |e: crate::logging::Error| {
        let setting = e.setting().unwrap_or("accesslog");
        Error::access_log(e).set_by(settings.provenance(setting))
    };
    if !settings.access_log_format.is_empty() {
        crate::logging::AccessFormat::parse(&settings.access_log_format).map_err(failed)?;
    }
    crate::logging::AccessLog::open(target).map_err(failed)?;
    Ok(())
}

/// Bind every `bind` (under `umask`) and take the sockets systemd passed; the unix socket
/// files to remove at exit come with them (an upgrade's new master removes the old one's).
fn open_listeners(
    settings: &Settings,
    adopted: Option<&Adopted>,
) -> Result<(Vec<Listener>, setup::SocketFiles), Error> {
    let binds = settings
        .bind
        .iter()
        .map(|b| {
            crate::config::bind::parse(b)
                .map_err(|e| Error::bind(b, e).set_by(settings.provenance("bind")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let activation = environment::take_socket_activation();
    let passed = crate::listeners::passed_by_systemd(&activation).map_err(Error::listen)?;
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
    let opened = opened.map_err(|e| Error::listen(e).set_by(settings.provenance("bind")))?;
    let mut socket_files = opened.created;
    if let Some(adopted) = adopted {
        socket_files.extend(adopted.socket_files.iter().cloned());
    }
    Ok((opened.listeners, setup::SocketFiles(socket_files)))
}

/// After binding, before the app is imported or a worker forked: switch to `user` (the
/// files opened as root given to it first), or warn that everything runs as root.
fn become_user(
    settings: &Settings,
    user: Option<&privileges::Target>,
    sockets: &[PathBuf],
) -> Result<(), Error> {
    match user {
        Some(target) => {
            if nix::unistd::Uid::effective().is_root() {
                give_files(settings, target, sockets)?;
            }
            privileges::drop_to(target).map_err(|e| e.set_by(settings.provenance("user")))?;
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
    sockets: &[PathBuf],
) -> Result<(), Error> {
    let logs = [
        ("errorlog", Some(settings.errorlog.as_str())),
        ("accesslog", settings.accesslog.as_deref()),
    ];
    for (setting, log) in logs {
        let Some(log) = log.filter(|log| *log != "-" && *log != "journald") else {
            continue;
        };
        let by = || settings.provenance(setting);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::log_file(log, e).set_by(by()))?;
        privileges::hand_over_file(target, Path::new(log)).map_err(|e| e.set_by(by()))?;
    }
    for socket in sockets {
        privileges::hand_over_file(target, socket)
            .map_err(|e| e.set_by(settings.provenance("bind")))?;
    }
    Ok(())
}

/// `preload_app`: imported once, before any fork: the workers share it copy-on-write.
fn preload_app(settings: &Settings) -> Result<(), Error> {
    if settings.preload_app {
        let app = crate::python::load_app(settings).map_err(Error::preload)?;
        crate::python::set_preloaded(app, settings.gc_freeze);
    }
    Ok(())
}

/// What tells systemd; a new master of a binary upgrade stays silent until it is the
/// main process.
fn notifier(adopted: Option<&Adopted>) -> notify::Notifier {
    let mut notifier = notify::Notifier::from_env();
    if let Some(adopted) = adopted {
        tracing::info!(
            "binary upgrade: started by master {}; taking over once the workers serve",
            adopted.from
        );
        notifier.mute();
    }
    notifier
}
