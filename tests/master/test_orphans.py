"""Workers of a master that died (kill -9: an OOM kill, an operator's mistake): reparented,
they notice, finish the request in flight within graceful_timeout, exit and free the port,
in every worker class."""

import os
import signal
import threading
import time

import pytest

from harness import alive, listening_inodes, wait_for


ORPHAN_CASES = [
    pytest.param("wsgiapp:app", [], id="sync"),
    pytest.param("wsgiapp:app", ["--threads", "4"], id="gthread"),
    pytest.param("geventapp:app", ["-k", "gevent"], id="gevent"),
    pytest.param("asgiapp:app", [], id="asgi"),
]


@pytest.mark.parametrize("app,args", ORPHAN_CASES)
def test_workers_of_a_killed_master_exit_and_free_the_port(start_server, app, args):
    """kill -9 of the master (an OOM kill, an operator's mistake): its workers, reparented,
    used to serve old code for ever and hold the port. Now they stop within 2 s, and a new
    master binds the same address at once."""
    s = start_server(app, "-w", "2", *args)
    workers = s.wait_workers(2)
    bind = "%s:%d" % s.addr
    os.kill(s.pid, signal.SIGKILL)
    t0 = time.monotonic()
    assert wait_for(lambda: not any(alive(p) for p in workers), 2.0), \
        [p for p in workers if alive(p)]
    # A process whose main thread is gone but not its others still holds the socket.
    assert wait_for(lambda: not listening_inodes(s.addr[1]), 2.0 - (time.monotonic() - t0))
    assert time.monotonic() - t0 < 2.0
    again = start_server(app, "-w", "1", *args, bind=bind)
    assert again.get("/").status == 200


def test_an_orphaned_worker_finishes_its_request_within_graceful_timeout(start_server):
    """The worker's stop at its master's death is graceful: the request in flight is
    answered, then the worker exits (and `graceful_timeout` bounds that, since no master
    is left to enforce it)."""
    s = start_server("wsgiapp:app", "-w", "1", "--graceful-timeout", "5")
    [worker] = s.wait_workers(1)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=s.get("/sleep?s=1", timeout=10)))
    t.start()
    time.sleep(0.3)
    os.kill(s.pid, signal.SIGKILL)
    t.join(10)
    assert out["r"].status == 200, out
    assert wait_for(lambda: not alive(worker), 3.0)
