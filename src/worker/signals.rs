//! The worker's signals: QUIT (graceful stop) and USR1 (reopen logs), both sent by the
//! master. Tasks on the I/O loop do the work; QUIT also sets a flag from the signal handler
//! itself, because with one app thread the app may be running on the I/O thread when QUIT
//! arrives, and the response it is about to send must already say `Connection: close`.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIT_RECEIVED: AtomicBool = AtomicBool::new(false);
/// USR1 arrived before the I/O loop watched for it (while the app was imported).
static USR1_EARLY: AtomicBool = AtomicBool::new(false);

/// Before the app import: a USR1 (logrotate) meanwhile must not kill the worker by the
/// signal's default action; it is remembered and acted on once the loop runs.
pub fn catch_usr1_early() {
    // SAFETY: the action only stores to an atomic, which is async-signal-safe; tokio's
    // own handler for USR1 chains with it through the same registry later.
    let armed = unsafe {
        signal_hook_registry::register(libc::SIGUSR1, || USR1_EARLY.store(true, Ordering::Relaxed))
    };
    if let Err(e) = armed {
        tracing::warn!("cannot watch SIGUSR1 ({e}): a USR1 during boot would stop the worker");
    }
}

/// The master's pid, as this worker was forked (the parent check at a QUIT needs it even
/// if the master died while the app was being imported).
static MASTER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Record the master's pid: first thing in the worker, while it is the parent for sure.
pub fn remember_master() {
    MASTER.store(nix::unistd::getppid().as_raw(), Ordering::Relaxed);
}

/// Set the QUIT flag from the signal handler (alongside tokio's own QUIT handler).
pub fn arm_quit_flag() {
    // SAFETY: the action only stores to an atomic, which is async-signal-safe; the
    // registry chains it with tokio's handler for the same signal.
    let armed = unsafe {
        signal_hook_registry::register(libc::SIGQUIT, || {
            QUIT_RECEIVED.store(true, Ordering::Relaxed)
        })
    };
    if let Err(e) = armed {
        tracing::warn!("cannot watch SIGQUIT ({e}): QUIT responses may miss Connection: close");
    }
}

/// QUIT has arrived (the I/O loop may not have seen it yet).
pub fn quit_received() -> bool {
    QUIT_RECEIVED.load(Ordering::Relaxed)
}

/// QUIT (sent by the master): stop accepting, finish the requests in progress, close
/// keep-alive connections after their current response, then exit.
pub async fn stop_gracefully_on_quit(
    stop: tokio::sync::watch::Sender<bool>,
    scoreboard: Arc<crate::scoreboard::Scoreboard>,
    slot: usize,
    graceful_timeout: std::time::Duration,
) {
    let master = nix::unistd::Pid::from_raw(MASTER.load(Ordering::Relaxed));
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::quit()) {
        Ok(mut quit) => {
            // A QUIT that came before this watch existed (during the app import, or an
            // ASGI app's lifespan startup) set only the flag: act on it now.
            if !quit_received() {
                quit.recv().await;
            }
            if nix::unistd::getppid() != master {
                orphaned(master, graceful_timeout);
            }
            crate::python::hooks::worker_int();
            // Peers balancing their accepts must not wait for a worker that left.
            scoreboard
                .slot(slot)
                .ready
                .store(0, std::sync::atomic::Ordering::Release);
            tracing::info!("Worker exiting (pid: {})", std::process::id());
            let _ = stop.send(true);
        }
        Err(e) => tracing::warn!("cannot watch SIGQUIT ({e}): QUIT will not be graceful"),
    }
}

/// The QUIT came from the kernel: the master died (master/fork.rs asks for it). Nobody
/// will enforce `graceful_timeout` now, so the worker does: the requests in flight get
/// that long, then the worker exits.
fn orphaned(master: nix::unistd::Pid, graceful_timeout: std::time::Duration) {
    tracing::warn!(
        "the master (pid {master}) is gone: worker {} stops (at most {} s for the requests \
         in flight)",
        std::process::id(),
        graceful_timeout.as_secs()
    );
    let spawned = std::thread::Builder::new()
        .name("orphan-deadline".into())
        .spawn(move || {
            std::thread::sleep(graceful_timeout);
            // SAFETY: _exit ends the process without running atexit handlers or
            // destructors, which could block on state the other threads hold.
            unsafe { libc::_exit(1) };
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot bound the orphaned worker's stop ({e})");
    }
}

/// USR1 (sent by the master): reopen the log files logrotate moved away.
pub async fn reopen_logs_on_usr1(
    error_log: crate::logging::ErrorLogHandle,
    access_log: Option<Rc<crate::logging::AccessLog>>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::warn!("cannot watch SIGUSR1: log files will not be reopened");
        return;
    };
    // One that came during the boot: the files may have moved already.
    if USR1_EARLY.swap(false, Ordering::Relaxed) {
        reopen(&error_log, access_log.as_deref());
    }
    while usr1.recv().await.is_some() {
        reopen(&error_log, access_log.as_deref());
    }
}

fn reopen(
    error_log: &crate::logging::ErrorLogHandle,
    access_log: Option<&crate::logging::AccessLog>,
) {
    if let Err(e) = error_log.reopen() {
        tracing::error!("cannot reopen the error log: {e}");
    }
    if let Some(log) = access_log
        && let Err(e) = log.reopen()
    {
        tracing::error!("cannot reopen the access log: {e}");
    }
}
