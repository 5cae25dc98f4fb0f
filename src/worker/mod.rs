//! A worker process: it imports the app, then serves the inherited listeners with hyper on
//! a single-threaded tokio runtime, calling the app inline or on its app threads.
//!
//! It never touches the worker table: it writes only its own scoreboard slot (ready,
//! heartbeat, requests, calls in progress), and the master reads it and its exit status.

mod abort_hook;
mod accept;
mod app_call;
mod asgi;
mod body;
mod deadlines;
pub(crate) mod file_body;
mod forwarded;
pub(crate) mod gevent;
mod hangup;
mod idle_clock;
mod metrics;
mod module_report;
mod pool;
pub(crate) mod proxy_protocol;
mod request_body;
mod request_checks;
mod request_hooks;
mod request_log;
mod response_head;
mod responses;
mod scrub_env;
mod service;
mod signals;
mod spool;
mod spool_file;
pub(crate) mod strict;
mod wsgi;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use pyo3::prelude::*;
use tokio::sync::Semaphore;

use crate::boot::{APP_LOAD_ERROR, WORKER_BOOT_ERROR, WorkerBoot};
use crate::config::Settings;
use accept::AcceptCtx;
use deadlines::{Deadlines, Policy};
use pool::AppPool;
use request_checks::Limits;
use service::Worker;
use wsgi::environ::EnvironBuilder;

/// The worker's entry point after `fork()`; exits the process.
pub fn run(boot: WorkerBoot) -> ! {
    boot.error_log.enter_worker();
    // First, before post_fork and the import, which can take long: a QUIT meanwhile (a
    // stop, a reload that was superseded, the master's death) is remembered and acted on
    // once the loop runs. Until here the master's handlers, inert in a child, ignore it
    // (master/signals.rs).
    signals::remember_master();
    signals::arm_quit_flag();
    signals::catch_usr1_early();
    // gunicorn's post_fork: a failure is the worker's boot failure.
    if let Err(tb) = crate::python::hooks::forked_child() {
        tracing::error!(
            "Exception in worker process (post_fork hook)\n{}",
            tb.trim_end()
        );
        std::process::exit(WORKER_BOOT_ERROR);
    }
    scrub_env::remove_master_only_vars();
    let settings = Arc::clone(&boot.settings);
    crate::proctitle::set(
        settings.proc_name.as_deref(),
        "worker",
        settings.wsgi_app.as_deref(),
    );
    // The worker's own StatsD socket (the master's is not shared), before the import, whose
    // failure is counted too.
    let statsd = crate::statsd::install_from(&settings);
    let loaded = match crate::python::preloaded_app() {
        Some(app) => Ok(app),
        None => crate::python::load_app(&settings),
    };
    let app = match loaded {
        Ok(app) => app,
        Err(message) => {
            tracing::error!("Exception in worker process\n{message}");
            std::process::exit(APP_LOAD_ERROR);
        }
    };
    if let Err(tb) = crate::python::hooks::post_worker_init(&app) {
        tracing::error!(
            "Exception in worker process (post_worker_init hook)\n{}",
            tb.trim_end()
        );
        crate::python::hooks::worker_exit();
        std::process::exit(WORKER_BOOT_ERROR);
    }
    // `reload`: the master learns what to watch before this worker counts as ready.
    let modules = settings.reload.then(|| {
        let mut report = module_report::ModuleReport::default();
        report.report();
        report
    });
    if signals::quit_received() {
        tracing::info!(
            "Worker exiting (pid: {}) before serving",
            std::process::id()
        );
        crate::python::hooks::worker_exit();
        std::process::exit(0);
    }
    let extras = Extras { statsd, modules };
    let served = if boot.settings.worker_class == crate::config::WorkerClass::Gevent {
        gevent::serve(boot, app, extras)
    } else {
        serve(boot, app, None, extras)
    };
    crate::python::hooks::worker_exit();
    match served {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            tracing::error!("worker failed: {message}");
            std::process::exit(WORKER_BOOT_ERROR);
        }
    }
}

/// What a worker may add to serving: StatsD metrics, the module report of `reload`.
pub(crate) struct Extras {
    statsd: Option<Arc<crate::statsd::Client>>,
    modules: Option<module_report::ModuleReport>,
}

/// Serve on this thread's runtime; with `hub` the app runs in its greenlets, as many at
/// once as `worker_connections`, instead of on app threads.
fn serve(
    boot: WorkerBoot,
    app: Py<PyAny>,
    hub: Option<Arc<gevent::Bridge>>,
    extras: Extras,
) -> Result<(), String> {
    let Extras { statsd, modules } = extras;
    let settings = &boot.settings;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
    // Greenlets, not app threads, run a gevent worker's requests (gunicorn ignores
    // `threads` there too).
    let threads = match hub {
        Some(_) => 1,
        None => settings.threads.max(1) as usize,
    };
    let pool = AppPool::start(threads).map_err(|e| format!("cannot start app threads: {e}"))?;
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let heartbeat_every = heartbeat_interval(settings.timeout);
    let asgi_wanted = asgi::wanted(settings, &app)?;
    // One deadline entry per call that can be in progress at once: an app thread's, or
    // (greenlets, asyncio tasks) a connection's.
    let calls = match hub {
        Some(_) => settings.worker_connections.max(1) as usize,
        None if asgi_wanted => settings.worker_connections.max(1) as usize,
        None => threads,
    };
    let policy = match asgi_wanted {
        true => Policy::CancelTask,
        false => Policy::ReplaceWorker,
    };
    let deadlines = Deadlines::new(calls, policy, Arc::clone(&boot.scoreboard), boot.slot);
    if let Some(hub) = &hub {
        let hub = Arc::clone(hub);
        deadlines.on_expire(Box::new(move |expired| hub.expired(expired.index)));
    }
    if let Err(e) = abort_hook::arm() {
        tracing::warn!("the worker_abort hook will not be called: {e}");
    }
    if let Err(e) = crate::python::dump_tracebacks_on_fatal_signals(boot.error_log.raw_fd()) {
        tracing::warn!("cannot arm the traceback dump for timeouts: {e}");
    }
    let asgi = if asgi_wanted {
        Some(Arc::new(asgi::Asgi::start(asgi::StartArgs {
            settings,
            app: &app,
            scoreboard: Arc::clone(&boot.scoreboard),
            slot: boot.slot,
            stopping: stopping.clone(),
            heartbeat_every,
            deadlines: Arc::clone(&deadlines),
        })?))
    } else {
        None
    };
    deadlines
        .watch(Duration::from_secs(settings.timeout))
        .map_err(|e| format!("cannot start the deadline watcher: {e}"))?;
    let worker = Rc::new(Worker {
        app: Arc::new(app),
        deadlines: Arc::clone(&deadlines),
        retire_after: retire_after(settings),
        inline: threads == 1,
        pool,
        spool: Arc::new(spool::SpoolLimits::from_settings(settings)),
        limits: Limits {
            request_line: settings.limit_request_line as usize,
            // 0 is gunicorn's default, as gunicorn reads it (its corpus's limit_header_default_01)
            field_size: match settings.limit_request_field_size {
                0 => 8190,
                n => n as usize,
            },
            body: settings.limit_request_body,
            any_method: settings.permit_unconventional_http_method,
            casefold_method: settings.casefold_http_method,
        },
        body: request_body::BodyPolicy {
            pace: request_body::Pace {
                idle: body_timeout(settings.body_timeout),
                min_rate: settings.body_min_rate,
            },
            limit: settings.limit_request_body,
            in_memory: settings.body_buffer_size,
            spool: settings.body_spool_size,
            spool_dir: settings
                .tmp_upload_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        },
        runtime: runtime.handle().clone(),
        access_log: open_access_log(settings)?.map(Rc::new),
        scoreboard: Arc::clone(&boot.scoreboard),
        slot: boot.slot,
        proxies: forwarded::Proxies::from_settings(settings),
        request_hooks: crate::python::hooks::request_hooks().map(Rc::new),
        gevent: hub.clone(),
        metrics: statsd.map(|client| Rc::new(metrics::RequestMetrics::new(client))),
        asgi: asgi.clone(),
    });
    let script_name = std::env::var("SCRIPT_NAME").unwrap_or_default();
    let statics = Python::attach(|py| {
        wsgi::static_environ(py, calls > 1, settings.workers > 1).map(Bound::unbind)
    })
    .map_err(|e| format!("cannot build the WSGI environ: {e}"))?;

    let http = Rc::new(http_builder(settings));
    let proxy = proxy_protocol::Mode::from_setting(&settings.proxy_protocol).map(|mode| {
        Rc::new(accept::ProxyPolicy {
            mode,
            allowed: forwarded::AllowList::new(&settings.proxy_allow_ips),
        })
    });
    let connections = Arc::new(Semaphore::new(settings.worker_connections.max(1) as usize));
    let local = tokio::task::LocalSet::new();
    let asgi_in_loop = asgi.clone();
    let error_log = boot.error_log.clone();
    let access_log = worker.access_log.clone();
    let served = local.block_on(&runtime, async move {
        tokio::task::spawn_local(signals::reopen_logs_on_usr1(error_log, access_log));
        if let Some(metrics) = &worker.metrics {
            tokio::task::spawn_local(Rc::clone(metrics).send_lingering());
        }
        if let Some(modules) = modules {
            tokio::task::spawn_local(modules.keep_reporting());
        }
        match &asgi_in_loop {
            Some(asgi) => tokio::task::spawn_local(Arc::clone(asgi).beat(heartbeat_every)),
            None => tokio::task::spawn_local(beat(
                Arc::clone(&boot.scoreboard),
                boot.slot,
                heartbeat_every,
                hub,
            )),
        };
        tokio::task::spawn_local(signals::stop_gracefully_on_quit(
            stop_tx,
            Arc::clone(&boot.scoreboard),
            boot.slot,
            Duration::from_secs(settings.graceful_timeout),
        ));
        let mut tasks = Vec::new();
        let accept_errors = Rc::new(accept::AcceptErrors::default());
        for listener in boot.listeners {
            let (name, port) = listener.server_name_port();
            let environ = Python::attach(|py| {
                EnvironBuilder::new(py, statics.bind(py), name, port, script_name.clone())
            })
            .map_err(|e| format!("cannot build the WSGI environ: {e}"))?;
            let ctx = AcceptCtx {
                worker: Rc::clone(&worker),
                environ: Arc::new(environ),
                http: Rc::clone(&http),
                strict: strict::Policy {
                    permit_folding: settings.permit_obsolete_folding,
                    header_timeout: Duration::from_secs(settings.header_timeout.max(1)),
                },
                stop_linger: stop_linger(settings.keepalive),
                connections: Arc::clone(&connections),
                scoreboard: Arc::clone(&boot.scoreboard),
                slot: boot.slot,
                stopping: stopping.clone(),
                proxy: proxy.clone(),
                accept_errors: Rc::clone(&accept_errors),
            };
            tasks.push(tokio::task::spawn_local(accept::accept_loop(listener, ctx)));
        }
        // The app is imported and the listeners are watched: the master may now count on
        // this worker (and retire the one it replaces).
        boot.scoreboard
            .slot(boot.slot)
            .ready
            .store(1, std::sync::atomic::Ordering::Release);
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(format!("accept loop failed: {e}")),
            }
        }
        // Stopping: the accept loops are done; wait for every connection to finish its
        // last response (the master's graceful_timeout bounds the wait).
        let open = &boot.scoreboard.slot(boot.slot).connections;
        while open.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            tokio::time::sleep(CONNECTIONS_POLL).await;
        }
        if let Some(metrics) = &worker.metrics {
            metrics.send();
        }
        Ok(())
    });
    if let Some(asgi) = &asgi {
        asgi.shutdown(Duration::from_secs(settings.graceful_timeout.max(1)));
    }
    served
}

fn body_timeout(seconds: u64) -> Duration {
    if seconds == 0 {
        NO_BODY_TIMEOUT
    } else {
        Duration::from_secs(seconds)
    }
}

/// How long a stopping worker waits for the next request of an idle keep-alive
/// connection (answered with `Connection: close`) before closing it: the keep-alive
/// timeout, within bounds that keep reloads quick.
fn stop_linger(keepalive: u64) -> Duration {
    const MAX_LINGER: Duration = Duration::from_secs(5);
    Duration::from_secs(keepalive).min(MAX_LINGER)
}

/// How often a stopping worker checks whether its last connection closed.
const CONNECTIONS_POLL: Duration = Duration::from_millis(10);

/// With `body_timeout = 0` a client may take as long as it likes to send a body.
const NO_BODY_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Often enough that a worker whose I/O loop is alive never looks stuck to the master.
fn heartbeat_interval(timeout: u64) -> Duration {
    const MAX_BEAT: Duration = Duration::from_secs(1);
    if timeout == 0 {
        return MAX_BEAT;
    }
    (Duration::from_secs(timeout) / 4).clamp(Duration::from_millis(50), MAX_BEAT)
}

/// The heartbeat: the I/O loop is alive (it stalls while the app runs inline, which the
/// master tolerates up to `timeout`, as it does a long request); with gevent, the hub's
/// loop too (a CPU-bound greenlet stalls it).
async fn beat(
    scoreboard: Arc<crate::scoreboard::Scoreboard>,
    slot: usize,
    every: Duration,
    hub: Option<Arc<gevent::Bridge>>,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let now = crate::scoreboard::now_ms();
        let alive = hub.as_ref().map_or(now, |hub| hub.hub_beat_ms().min(now));
        scoreboard
            .slot(slot)
            .heartbeat_ms
            .store(alive, std::sync::atomic::Ordering::Release);
    }
}

/// `max_requests` plus this worker's share of `max_requests_jitter`; `None`: never.
fn retire_after(settings: &Settings) -> Option<u64> {
    if settings.max_requests == 0 {
        return None;
    }
    let jitter = if settings.max_requests_jitter == 0 {
        0
    } else {
        use std::hash::{BuildHasher, Hasher};
        // A fresh RandomState is seeded per process: enough to spread the workers.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish() % (settings.max_requests_jitter + 1)
    };
    Some(settings.max_requests + jitter)
}

fn open_access_log(settings: &Settings) -> Result<Option<crate::logging::AccessLog>, String> {
    let Some(target) = settings.accesslog.as_deref() else {
        return Ok(None);
    };
    let format = if settings.access_log_format.is_empty() {
        crate::logging::AccessFormat::default()
    } else {
        crate::logging::AccessFormat::parse(&settings.access_log_format)
            .map_err(|e| e.to_string())?
    };
    let log = crate::logging::AccessLog::open(target).map_err(|e| format!("{e:#}"))?;
    Ok(Some(log.with_format(format)))
}

fn http_builder(settings: &Settings) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new());
    // hyper's header timer, stopped at a head's first byte (idle_clock.rs; each connection
    // gets its own timer), is the wait for a request: gunicorn's `keepalive`, between
    // requests and before the first. The head itself is bounded from its first byte by
    // `header_timeout` (strict.rs).
    if settings.keepalive > 0 {
        http.keep_alive(true);
        http.header_read_timeout(Duration::from_secs(settings.keepalive));
    } else {
        http.keep_alive(false);
        // No idle time between requests: the wait for the only one.
        http.header_read_timeout(Duration::from_secs(settings.header_timeout.max(1)));
    }
    let fields = settings.limit_request_fields.max(1) as usize;
    http.max_headers(fields);
    let line = settings.limit_request_line.max(8190) as usize;
    let field = settings.limit_request_field_size.max(8190) as usize;
    http.max_buf_size((line + fields * (field + 2)).clamp(8192, 4 << 20));
    http.title_case_headers(true);
    http
}
