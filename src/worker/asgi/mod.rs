//! ASGI 3 apps: an asyncio loop per worker, in a Python thread, runs the app; the I/O thread
//! (hyper on tokio) parses requests and writes responses without ever taking the GIL.
//!
//! - I/O → loop: `bridge` (a job queue and an eventfd the loop reads).
//! - loop → I/O: a tokio channel per request, sent to without blocking from `send`;
//!   back-pressure through `flow`.
//! - `http`: requests; `websocket`: the upgrade and the socket; `scope`: the scope dict;
//!   `lifespan` runs in Python (src/python/asgi.py), as does the loop thread itself.
//!
//! What every worker class shares is not here: the body intake (`request_body.rs`), the
//! response head check (`response_head.rs`), the deadline table (`deadlines.rs`, with the
//! `CancelTask` policy: a request past `timeout` has its task cancelled, the worker lives
//! on), the finish and error responses (`responses.rs`), the request hooks.

mod awaitable;
mod bridge;
mod exchange;
mod flow;
mod http;
mod scope;
mod websocket;

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::{HeaderName, Response};
use hyper::upgrade::OnUpgrade;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyModule};
use tokio::sync::watch;

use super::body::ResponseBody;
use super::deadlines::{Deadlines, Expired};
use super::request_body::BodySource;
use super::service::Conn;
use super::wsgi::environ::RequestHead;
use crate::config::Settings;
use crate::scoreboard::Scoreboard;
use bridge::Bridge;
use scope::ScopeSource;

const HELPERS_SOURCE: &str = include_str!("../../python/asgi.py");

pub use super::deadlines::TaskSlot;

/// On the loop thread: build the scope of one cycle (a request, or a WebSocket), make its
/// cycle object (`receive` and `send` are its methods) and start the app's task, kept in
/// `task` for a deadline to cancel. False, logged, when it could not start.
fn start_cycle<C>(
    py: Python<'_>,
    ctx: &AppCtx,
    src: &ScopeSource,
    task: &TaskSlot,
    cycle: impl FnOnce() -> C,
) -> bool
where
    C: pyo3::PyClass + Into<pyo3::PyClassInitializer<C>>,
{
    let websocket = src.websocket;
    let started = (|| -> PyResult<()> {
        let scope = scope::build(py, ctx, src)?;
        let cycle = Bound::new(py, cycle())?.into_any();
        let receive = cycle.getattr(pyo3::intern!(py, "receive"))?;
        let send = cycle.getattr(pyo3::intern!(py, "send"))?;
        let coro = ctx
            .run
            .call1(py, (ctx.app.bind(py), scope, receive, send, cycle))?;
        let started = ctx.create_task.call1(py, (coro,))?;
        if ctx.track_tasks {
            *task.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
        }
        Ok(())
    })();
    if let Err(e) = &started {
        tracing::error!(
            "cannot start the ASGI app for a {}\n{}",
            if websocket { "WebSocket" } else { "request" },
            crate::python::format_exception(py, e).trim_end()
        );
    }
    started.is_ok()
}

/// A request's or WebSocket's task has ended: forget it, and log what it raised (a
/// cancellation is ours: a deadline, a stop). True when it raised anything.
fn task_ended(task: &TaskSlot, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>, what: &str) -> bool {
    task.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(exc) = exc else { return false };
    if !exc.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>() {
        let err = PyErr::from_value(exc.clone());
        tracing::error!(
            "Exception in ASGI application{what}\n{}",
            crate::python::format_exception(py, &err).trim_end()
        );
    }
    true
}

/// What the loop thread needs for every request, built once.
pub struct AppCtx {
    app: Py<PyAny>,
    /// asgi.py's `run(app, scope, receive, send, cycle)`.
    run: Py<PyAny>,
    create_task: Py<PyAny>,
    create_future: Py<PyAny>,
    asgi_info: Py<PyDict>,
    /// The lifespan state, copied into each scope (when the app supports lifespan).
    state: Option<Py<PyDict>>,
    root_path: String,
    /// The awaitable `send` returns when it need not wait (stateless, shared).
    done: Py<PyAny>,
    /// Keep each request's task at hand (`timeout` is set).
    track_tasks: bool,
    bridge: Arc<Bridge>,
    /// `loop.call_soon(flush)`: schedules the delivery of this turn's replies.
    call_soon: Py<PyAny>,
    flush: Py<PyAny>,
    /// Header names as bytes objects: clients send few distinct ones.
    header_names: Mutex<HashMap<HeaderName, Py<PyBytes>>>,
}

impl AppCtx {
    /// On the loop thread: a reply for the I/O thread (see `Bridge::reply`).
    fn reply(&self, reply: bridge::Reply) {
        if self.bridge.reply(reply) {
            Python::attach(|py| {
                if let Err(e) = self.call_soon.call1(py, (self.flush.bind(py),)) {
                    tracing::error!("cannot schedule the delivery of ASGI responses: {e}");
                }
            });
        }
    }

    fn header_name<'py>(&self, py: Python<'py>, name: &HeaderName) -> Bound<'py, PyBytes> {
        const MAX_CACHED: usize = 256;
        // Only the loop thread gets here: never contended.
        let mut cache = self.header_names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = cache.get(name) {
            return bytes.bind(py).clone();
        }
        let bytes = PyBytes::new(py, name.as_str().as_bytes());
        if cache.len() < MAX_CACHED {
            cache.insert(name.clone(), bytes.clone().unbind());
        }
        bytes
    }
}

/// The ASGI side of a worker.
pub struct Asgi {
    bridge: Arc<Bridge>,
    ctx: Arc<AppCtx>,
    /// The worker's deadline table (policy `CancelTask`).
    deadlines: Arc<Deadlines>,
    helpers: Py<PyModule>,
    event_loop: Py<PyAny>,
    lifespan: Option<Py<PyAny>>,
    ws_max_message: usize,
    stopping: watch::Receiver<bool>,
    scoreboard: Arc<Scoreboard>,
    slot: usize,
}

/// Whether to serve `app` as ASGI: `worker_class = "asgi"`, or an app whose call is a
/// coroutine function.
pub fn wanted(settings: &Settings, app: &Py<PyAny>) -> Result<bool, String> {
    if settings.worker_class == crate::config::WorkerClass::Asgi {
        return Ok(true);
    }
    Python::attach(|py| {
        helpers(py)
            .and_then(|h| h.getattr("is_asgi")?.call1((app.bind(py),))?.is_truthy())
            .map_err(|e| crate::python::format_exception(py, &e))
    })
}

fn helpers(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static HELPERS: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    HELPERS
        .get_or_try_init(py, || {
            let code = CString::new(HELPERS_SOURCE).expect("asgi.py contains no NUL byte");
            PyModule::from_code(py, &code, c"unitcorn/asgi.py", c"_unitcorn_asgi")
                .map(Bound::unbind)
        })
        .map(|m| m.bind(py).clone())
}

/// Everything `Asgi::start` is given.
pub struct StartArgs<'a> {
    pub settings: &'a Settings,
    pub app: &'a Py<PyAny>,
    pub scoreboard: Arc<Scoreboard>,
    pub slot: usize,
    pub stopping: watch::Receiver<bool>,
    pub heartbeat_every: Duration,
    /// The worker's deadline table: its expiries cancel the task, on the loop.
    pub deadlines: Arc<Deadlines>,
}

impl Asgi {
    /// Start the loop thread and run the lifespan startup (before the worker says it is
    /// ready). The error is for the operator; the worker cannot serve.
    pub fn start(args: StartArgs<'_>) -> Result<Asgi, String> {
        let settings = args.settings;
        let bridge = Bridge::new().map_err(|e| format!("cannot create the loop's eventfd: {e}"))?;
        let timeout = Duration::from_secs(settings.timeout);
        let started = Python::attach(|py| -> PyResult<_> {
            let helpers = helpers(py)?;
            let (event_loop, name): (Bound<'_, PyAny>, String) =
                helpers.getattr("new_loop")?.call0()?.extract()?;
            helpers.getattr("start_loop")?.call1((
                &event_loop,
                bridge.wake_fd(),
                bridge::Drain(Arc::clone(&bridge)),
                bridge::Beat(Arc::clone(&bridge)),
                args.heartbeat_every.as_secs_f64(),
                bridge::LogError,
            ))?;
            tracing::info!("ASGI app on an {name} loop");
            Ok((helpers.unbind(), event_loop.unbind()))
        });
        let (helpers_mod, event_loop) =
            started.map_err(|e| Python::attach(|py| crate::python::format_exception(py, &e)))?;

        let lifespan = if settings.lifespan == "off" {
            None
        } else {
            Some(run_lifespan_startup(
                &helpers_mod,
                &event_loop,
                args.app,
                &settings.lifespan,
            )?)
        };
        let ctx = Python::attach(|py| -> PyResult<AppCtx> {
            let helpers = helpers_mod.bind(py);
            let event_loop = event_loop.bind(py);
            let state = match &lifespan {
                Some(l) if l.bind(py).getattr("supported")?.is_truthy()? => {
                    Some(l.bind(py).getattr("state")?.cast_into::<PyDict>()?.unbind())
                }
                _ => None,
            };
            Ok(AppCtx {
                app: args.app.clone_ref(py),
                run: helpers.getattr("run")?.unbind(),
                create_task: event_loop.getattr("create_task")?.unbind(),
                create_future: event_loop.getattr("create_future")?.unbind(),
                asgi_info: helpers
                    .getattr("ASGI_INFO")?
                    .cast_into::<PyDict>()?
                    .unbind(),
                state,
                root_path: settings.root_path.clone(),
                done: awaitable::Ready::awaitable(py, None)?,
                track_tasks: !timeout.is_zero(),
                bridge: Arc::clone(&bridge),
                call_soon: event_loop.getattr("call_soon")?.unbind(),
                flush: Py::new(py, bridge::Flush(Arc::clone(&bridge)))?.into_any(),
                header_names: Mutex::new(HashMap::new()),
            })
        })
        .map_err(|e| Python::attach(|py| crate::python::format_exception(py, &e)))?;

        let stack = Python::attach(|py| {
            helpers_mod
                .bind(py)
                .getattr("task_stack")
                .map(Bound::unbind)
        })
        .map_err(|e| e.to_string())?;
        let stack = Arc::new(stack);
        let loop_bridge = Arc::clone(&bridge);
        args.deadlines.on_expire(Box::new(move |expired| {
            let stack = Arc::clone(&stack);
            // The loop may be the one that is stuck: the 504 went out without it.
            loop_bridge.post(Box::new(move |py| log_and_cancel(py, &expired, &stack)));
        }));
        Ok(Asgi {
            bridge,
            ctx: Arc::new(ctx),
            deadlines: args.deadlines,
            helpers: helpers_mod,
            event_loop,
            lifespan,
            ws_max_message: usize::try_from(settings.websocket_max_message_size)
                .unwrap_or(usize::MAX),
            stopping: args.stopping,
            scoreboard: args.scoreboard,
            slot: args.slot,
        })
    }

    /// Serve one request (or WebSocket handshake) that hyper parsed.
    pub async fn call(
        &self,
        conn: &Conn,
        head: &RequestHead,
        body: BodySource,
        upgrade: Option<OnUpgrade>,
    ) -> Response<ResponseBody> {
        if websocket::is_upgrade(head) {
            websocket::serve(self, conn, head, upgrade).await
        } else {
            http::serve(self, conn, head, body).await
        }
    }

    fn scope_source(&self, conn: &Conn, head: &RequestHead, websocket: bool) -> ScopeSource {
        ScopeSource {
            head: head.clone(),
            server: conn.environ.server(),
            websocket,
        }
    }

    /// A deadline slot for one cycle, whose task is `task`; the 503 of a stopping worker.
    async fn deadline(
        &self,
        conn: &Conn,
        task: &TaskSlot,
    ) -> Result<super::deadlines::AppSlot, Response<ResponseBody>> {
        self.deadlines
            .acquire_for(&conn.hangup, false, Some(Arc::clone(task)))
            .await
            .ok_or_else(|| {
                super::responses::error_response(
                    ::http::StatusCode::SERVICE_UNAVAILABLE,
                    "worker stopping",
                )
            })
    }

    /// The heartbeat of an ASGI worker: the I/O loop beats, but only as recently as the
    /// asyncio loop did, so the master sees a loop blocked by the app (`time.sleep` in an
    /// `async def`) as a worker that stopped answering.
    pub async fn beat(self: Arc<Self>, every: Duration) {
        // The replies' delivery runs as long as the beat: the worker's whole life.
        let bridge = Arc::clone(&self.bridge);
        tokio::task::spawn_local(async move { bridge.deliver_replies().await });
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let now = crate::scoreboard::now_ms();
            let beat = now.min(self.bridge.loop_beat_ms() + every.as_millis() as u64);
            self.scoreboard
                .slot(self.slot)
                .heartbeat_ms
                .store(beat, std::sync::atomic::Ordering::Release);
        }
    }

    /// On a graceful stop, once the connections are done: the lifespan shutdown.
    pub fn shutdown(&self, within: Duration) {
        let Some(lifespan) = &self.lifespan else {
            return;
        };
        let outcome = Python::attach(|py| -> PyResult<Option<String>> {
            let coro = lifespan.bind(py).call_method0("shutdown")?;
            self.helpers
                .bind(py)
                .getattr("call_in_loop")?
                .call1((self.event_loop.bind(py), coro, within.as_secs_f64()))?
                .extract()
        });
        match outcome {
            Ok(None) => {}
            Ok(Some(problem)) => tracing::error!("{problem}"),
            Err(e) => tracing::error!(
                "ASGI lifespan shutdown: {}",
                Python::attach(|py| crate::python::format_exception(py, &e)).trim_end()
            ),
        }
    }
}

/// On the loop thread: log where the task of a timed-out request is, and cancel it.
fn log_and_cancel(py: Python<'_>, expired: &Expired, stack: &Py<PyAny>) {
    let (secs, what) = (expired.timeout.as_secs(), expired.outcome());
    let task = expired.task.as_ref().and_then(|task| {
        task.lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| t.clone_ref(py))
    });
    let Some(task) = task else {
        tracing::error!("request timed out after {secs}s (timeout); {what}");
        return;
    };
    let text = stack
        .call1(py, (task.bind(py),))
        .and_then(|s| s.extract::<String>(py))
        .unwrap_or_else(|e| format!("(no stack: {e})\n"));
    tracing::error!(
        "request timed out after {secs}s (timeout); {what}; its task is cancelled. \
         Where it was:\n{}",
        text.trim_end()
    );
    if let Err(e) = task.bind(py).call_method0("cancel") {
        tracing::warn!("cannot cancel the timed-out task: {e}");
    }
}

/// Run the app's startup on the loop; a failure the mode makes fatal is an error.
fn run_lifespan_startup(
    helpers: &Py<PyModule>,
    event_loop: &Py<PyAny>,
    app: &Py<PyAny>,
    mode: &str,
) -> Result<Py<PyAny>, String> {
    Python::attach(|py| -> PyResult<Result<Py<PyAny>, String>> {
        let helpers = helpers.bind(py);
        let lifespan = helpers.getattr("Lifespan")?.call1((app.bind(py), mode))?;
        let coro = lifespan.call_method0("startup")?;
        // No bound: boot_timeout bounds the whole boot, the master kills a worker past it.
        let problem: Option<String> = helpers
            .getattr("call_in_loop")?
            .call1((event_loop.bind(py), coro, py.None()))?
            .extract()?;
        if let Some(problem) = problem {
            return Ok(Err(problem));
        }
        if !lifespan.getattr("supported")?.is_truthy()? {
            tracing::info!(
                "ASGI 'lifespan' protocol appears unsupported by the app (lifespan = auto)"
            );
        }
        Ok(Ok(lifespan.unbind()))
    })
    .map_err(|e| Python::attach(|py| crate::python::format_exception(py, &e)))?
}
