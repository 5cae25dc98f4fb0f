"""Point 8: the minimal master — forks -w workers, binds once before forking (every worker
accepts on the one listener), replaces a worker that dies, stops everything on INT, TERM and
QUIT."""

import os
import signal
import threading
import time

import pytest

from harness import alive, listening_inodes, socket_inodes, wait_for


def test_three_workers_are_children_of_the_master(start_server):
    s = start_server("wsgiapp:app", "-w", "3")
    workers = s.wait_workers(3)
    assert s.pid not in workers
    # the workers are the ones serving: a served pid is one of them, never the master
    served = {int(s.get("/pid").body) for _ in range(6)}
    assert served <= set(workers), (served, workers)
    assert s.pid not in served


def test_killed_worker_is_replaced(start_server):
    s = start_server("wsgiapp:app", "-w", "3")
    before = s.wait_workers(3)
    victim = before[1]
    os.kill(victim, signal.SIGKILL)
    def replaced():
        ws = s.workers()
        return ws if len(ws) == 3 and victim not in ws else None

    after = wait_for(replaced, 10)
    assert after, "workers after killing %d: %r" % (victim, s.workers())
    assert set(after) - set(before), "no new worker pid"
    assert set(before) - {victim} <= set(after), "other workers were disturbed"
    assert not s.exited()
    # and the server still serves
    for _ in range(5):
        assert s.get("/hello").status == 200


def test_killed_worker_replaced_repeatedly(start_server):
    s = start_server("wsgiapp:app", "-w", "1")
    seen = set()
    for i in range(3):
        (w,) = s.wait_workers(1)
        assert w not in seen
        seen.add(w)
        os.kill(w, signal.SIGKILL)
        assert wait_for(lambda: any(p != w for p in s.workers()), 10), "round %d" % i
    r = s.wait_ready(timeout=15, path="/pid")
    assert int(r.body) not in seen


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT],
                         ids=["INT", "TERM", "QUIT"])
def test_signal_stops_master_and_workers(start_server, sig):
    s = start_server("wsgiapp:app", "-w", "3", "--graceful-timeout", "3")
    workers = s.wait_workers(3)
    t0 = time.monotonic()
    s.signal(sig)
    rc = s.wait_exit(15)
    assert rc is not None, "master still running 15 s after %s" % sig.name
    assert rc == 0, "exit code %s after %s" % (rc, sig.name)
    assert time.monotonic() - t0 < 10
    assert wait_for(lambda: not any(alive(p) for p in workers), 5), \
        [p for p in workers if alive(p)]
    assert wait_for(lambda: not any(alive(p) for p in s._seen), 5)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT],
                         ids=["INT", "TERM", "QUIT"])
def test_signal_stop_removes_unix_socket_file(start_server, tmp_path, sig):
    path = tmp_path / "stop.sock"
    s = start_server("wsgiapp:app", "-w", "2", bind="unix:%s" % path)
    s.wait_workers(2)
    s.signal(sig)
    assert s.wait_exit(15) == 0
    assert wait_for(lambda: not path.exists(), 5), "unix socket file left behind"


def test_quit_lets_in_flight_request_finish(start_server):
    """QUIT is graceful: a request already being served completes."""
    s = start_server("wsgiapp:app", "-w", "1", "--graceful-timeout", "10")
    result = {}

    def slow():
        try:
            result["r"] = s.get("/sleep?s=1.5", timeout=15)
        except Exception as e:  # reported below
            result["r"] = e

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.5)
    s.signal(signal.SIGQUIT)
    th.join(20)
    r = result.get("r")
    assert not isinstance(r, Exception) and r is not None, r
    assert r.status == 200
    assert s.wait_exit(15) == 0


def test_listener_bound_once_and_shared_by_all_workers(start_server):
    s = start_server("wsgiapp:app", "-w", "3")
    workers = s.wait_workers(3)
    port = s.addr[1]
    inodes = listening_inodes(port)
    assert len(inodes) == 1, "expected one listening socket on :%d, found %r" % (port, inodes)
    (inode,) = inodes
    assert inode in socket_inodes(s.pid), "the master does not hold the listener"
    for w in workers:
        assert inode in socket_inodes(w), "worker %d does not hold the listener" % w


@pytest.mark.unitcorn_only("gunicorn's gthread worker queues connections in a busy worker "
                           "(its sync worker, whose semantics --threads 1 has, would not)")
def test_all_workers_accept(start_server):
    """With 3 single-threaded workers, 3 concurrent 1 s requests run in parallel, each in a
    different worker."""
    s = start_server("wsgiapp:app", "-w", "3", "--threads", "1")
    workers = s.wait_workers(3)
    for _ in range(6):      # every worker has loaded the app
        s.get("/pid")
    time.sleep(0.5)
    res = [None] * 3
    barrier = threading.Barrier(3)

    def one(i):
        barrier.wait(5)
        res[i] = s.get("/sleep?s=1", timeout=15)

    ths = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    t0 = time.monotonic()
    for t in ths:
        t.start()
    for t in ths:
        t.join(20)
    elapsed = time.monotonic() - t0
    pids = {int(r.body) for r in res}
    assert pids <= set(workers)
    assert elapsed < 1.8, "3 × 1 s requests on 3 workers took %.2f s (pids %r)" % (elapsed, pids)
    assert len(pids) == 3


def test_master_survives_worker_crash_during_request(start_server):
    s = start_server("wsgiapp:app", "-w", "1")
    (w,) = s.wait_workers(1)
    c = s.conn()
    try:
        c.send(b"GET /sleep?s=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        os.kill(w, signal.SIGKILL)
        assert c.closed_by_peer(5), "the killed worker's connection stayed open"
    finally:
        c.close()
    r = s.wait_ready(timeout=15, path="/pid")
    assert int(r.body) != w


def test_pidfile_written_and_removed(start_server, tmp_path):
    pidfile = tmp_path / "run" / "app.pid"
    pidfile.parent.mkdir()
    s = start_server("wsgiapp:app", "-w", "2", "-p", str(pidfile))
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 5)
    assert int(pidfile.read_text().strip()) == s.pid
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    assert wait_for(lambda: not pidfile.exists(), 5), "pidfile left behind after TERM"


def test_quit_while_a_worker_imports_the_app_stops_it_cleanly(start_server):
    """QUIT reaching a worker still importing the app: no death by signal (core dump), the
    worker exits 0 once the import is done and the master with it."""
    s = start_server("slow_boot:app", "-w", "1", env_extra={"SLOW_BOOT_S": "1.5"},
                     wait=False)
    (worker,) = s.wait_workers(1)
    time.sleep(0.3)
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0, s.stderr()[-2000:]
    log = s.stderr()
    assert "was sent SIGQUIT" not in log and "core" not in log.lower(), log[-2000:]
    assert "Worker exiting (pid: %d) before serving" % worker in log, log[-2000:]


# ----- a master killed outright leaves no worker behind

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
