"""unitcorn's gevent worker, the Python side: the hub loop, one greenlet per request.

The Rust side (src/worker/gevent/) parses HTTP on its own thread and hands requests over
through a queue and one eventfd that a watcher of the hub's loop reads. Everything here
runs on the hub's thread; nothing here may block it. A request's greenlet runs the request
in Rust (`req.run`), which calls back `wait(id)` whenever it must wait for the client; the
Rust side wakes it with a NOTIFY job.
"""
import traceback

import gevent
from gevent.hub import Waiter, get_hub
from greenlet import getcurrent

# Job kinds, as src/worker/gevent/bridge.rs numbers them.
START, NOTIFY, KILL, STOP = 0, 1, 2, 3


class RequestTimeout(BaseException):
    """Raised into a request's greenlet past `timeout` (its client got a 504 already).

    A BaseException, so that an app's `except Exception` does not keep the greenlet alive.
    """


def patch():
    """Monkey-patch the standard library, once per process (before the app is imported)."""
    from gevent import monkey
    if not monkey.is_module_patched("socket"):
        monkey.patch_all()


def serve(bridge, app, beat_every):
    """Run the hub until the Rust side says STOP."""
    # A hub made before the fork (a preloaded app that used gevent at import) must not
    # share its loop with the master's: gevent does this in its own os.fork, not ours.
    gevent.reinit()
    hub = get_hub()
    waiters = {}
    running = {}
    stopped = Waiter()

    def wait(rid):
        waiter = Waiter()
        waiters[rid] = waiter
        try:
            waiter.get()
        finally:
            if waiters.get(rid) is waiter:
                del waiters[rid]

    def run(req):
        rid = req.id
        running[rid] = getcurrent()
        try:
            req.run(app, wait)
        except RequestTimeout:
            pass
        except BaseException:
            bridge.log_error("Error in a request's greenlet\n" + traceback.format_exc())
        finally:
            running.pop(rid, None)

    def kill(rid):
        greenlet = running.get(rid)
        if greenlet is None:
            return
        frame = greenlet.gr_frame
        where = "".join(traceback.format_stack(frame)) if frame is not None else "(not started)\n"
        bridge.log_error("The request's greenlet, past its timeout, was here (killing it):\n"
                         "Traceback (most recent call last):\n" + where)
        greenlet.kill(RequestTimeout("the request ran past timeout"), block=False)

    def on_wake():
        # Runs in the hub greenlet (a watcher callback): Waiter.switch may be called here.
        for kind, arg in bridge.take():
            try:
                if kind == START:
                    gevent.spawn(run, arg)
                elif kind == NOTIFY:
                    waiter = waiters.pop(arg, None)
                    if waiter is not None:
                        waiter.switch(None)
                elif kind == KILL:
                    kill(arg)
                elif kind == STOP:
                    stopped.switch(None)
            except BaseException:
                bridge.log_error("Error in the gevent hub\n" + traceback.format_exc())

    def beat():
        while True:
            bridge.beat()
            gevent.sleep(beat_every)

    watcher = hub.loop.io(bridge.fd, 1)
    watcher.start(on_wake)
    beater = gevent.spawn(beat)
    try:
        stopped.get()
    finally:
        watcher.stop()
        beater.kill(block=False)
