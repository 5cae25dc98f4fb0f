"""unitcorn's ASGI helpers: the worker's asyncio loop thread, the lifespan protocol, and the
coroutine every request's task runs.

Kept in Python because they are asyncio's own rules: a task per request, an event loop
run in a thread, the lifespan handshake (once per worker, never per request). The HTTP and
WebSocket `receive`/`send` callables are Rust (src/worker/asgi/).
"""
import asyncio
import inspect
import threading
import traceback

ASGI_INFO = {"version": "3.0", "spec_version": "2.4"}


def is_asgi(app):
    """An ASGI 3 app: `async def app(scope, receive, send)`, or an object whose class has an
    `async def __call__` (Starlette, FastAPI, most ASGI middleware)."""
    if inspect.iscoroutinefunction(app):
        return True
    if inspect.isfunction(app) or inspect.ismethod(app) or inspect.isclass(app):
        return False
    return inspect.iscoroutinefunction(getattr(type(app), "__call__", None))


def new_loop():
    """uvloop's loop when the app's venv has it, else asyncio's; and its name for the log."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop %s" % getattr(uvloop, "__version__", "")


def start_loop(loop, wake_fd, drain, beat, beat_every, log_error):
    """Run `loop` forever in a daemon thread. `drain` runs whenever the I/O thread writes to
    `wake_fd` (the hand-off queue has work); `beat` proves the loop turns, for the master's
    heartbeat check; errors nobody else handles go to the error log."""
    def exception_handler(loop, context):
        message = context.get("message") or "unhandled error on the asyncio loop"
        exc = context.get("exception")
        if exc is not None:
            message += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log_error(message.rstrip())

    def tick():
        beat()
        loop.call_later(beat_every, tick)

    def run():
        asyncio.set_event_loop(loop)
        loop.run_forever()

    loop.set_exception_handler(exception_handler)
    loop.add_reader(wake_fd, drain)
    loop.call_soon(tick)
    thread = threading.Thread(target=run, name="asgi-loop", daemon=True)
    thread.start()
    return thread


async def run(app, scope, receive, send, cycle):
    """A request's task: the app, then the server's side of the end of the exchange."""
    try:
        await app(scope, receive, send)
    except BaseException as exc:  # CancelledError included: the cycle tells them apart
        cycle.finish(exc)
    else:
        cycle.finish(None)


def task_stack(task):
    """Where a task is stuck, as the error log shows it (for a request past `timeout`): the
    whole chain of awaits down to the innermost coroutine (Task.print_stack shows only the
    outermost frame of a suspended coroutine)."""
    frames = []
    coro = task.get_coro()
    for _ in range(1000):
        if coro is None:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append((frame, frame.f_lineno))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    stack = traceback.StackSummary.extract(frames)
    return "Stack for %r (most recent call last):\n%s" % (task, "".join(stack.format()))


def call_in_loop(loop, coro, timeout):
    """Run `coro` on the loop thread from another thread; its result, or TimeoutError."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


class Lifespan:
    """The ASGI lifespan protocol for one worker (https://asgi.readthedocs.io, lifespan).

    mode: "auto" (an app that raises before starting up does not support it: carry on),
    "on" (any failure is fatal). startup() and shutdown() return None or what went wrong."""

    def __init__(self, app, mode):
        self.app = app
        self.mode = mode
        self.state = {}
        self.supported = True
        self.error = None          # traceback of an exception the app raised
        self.failed = None         # the message of lifespan.startup.failed / shutdown.failed
        self.task = None

    async def startup(self):
        self.inbox = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._main())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failed is not None:
            return "lifespan startup failed: %s" % (self.failed or "(no message)")
        if not self.startup_complete:
            if self.mode == "auto":
                self.supported = False
                return None
            return "lifespan startup failed (lifespan = on):\n%s" % (
                self.error or "the app returned without completing its startup")
        return None

    async def shutdown(self):
        if not self.supported or self.task is None or self.task.done():
            return None
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.stopped.wait()
        if self.failed is not None:
            return "lifespan shutdown failed: %s" % (self.failed or "(no message)")
        if self.error is not None:
            return "lifespan shutdown failed:\n%s" % self.error
        return None

    startup_complete = False

    async def _main(self):
        scope = {"type": "lifespan", "asgi": dict(ASGI_INFO), "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:
            self.error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        finally:
            self.started.set()
            self.stopped.set()

    async def receive(self):
        return await self.inbox.get()

    async def send(self, message):
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.startup_complete = True
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failed = message.get("message", "")
            self.started.set()
        elif kind == "lifespan.shutdown.complete":
            self.stopped.set()
        elif kind == "lifespan.shutdown.failed":
            self.failed = message.get("message", "")
            self.stopped.set()
        else:
            raise RuntimeError("unexpected lifespan message %r" % (kind,))
