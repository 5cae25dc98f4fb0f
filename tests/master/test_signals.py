"""The master's signals, all in one place (DESIGN.md's signal contract): INT and TERM stop
at once, QUIT stops gracefully (the request in flight finishes, queued requests and the
connections waiting in the listen backlog are served, requests past graceful_timeout are
killed, a worker still importing the app stops cleanly), TTIN/TTOU change the worker count
oldest first, WINCH stops the workers and keeps the listener, USR1 reopens the logs.

The other signals have a file of their own: HUP (reload by generation) test_reload.py, USR2
(binary upgrade) test_upgrade.py. QUIT per worker class: tests/asgi/test_asgi.py,
tests/asgi/test_websockets.py (1001 on a graceful stop), tests/gevent/test_gevent.py; under
systemd (`systemctl stop`): tests/systemd/test_real_systemd.py."""

import os
import signal
import threading
import time

import pytest

from harness import (BOOTING, ConnClosed, alive, build_request, in_thread, listening_inodes,
                     socket_inodes, wait_for)

# unitcorn's own signal contract: not run against gunicorn (TEST_SERVER=gunicorn).
CONTRACT = pytest.mark.unitcorn_only(
    "unitcorn's signal contract and log lines (gunicorn's TERM is graceful, it has no "
    "boot back-off, 504 on timeout, max_worker_lifetime/memory)")


# ----------------------------------------------------------------------------------------
# QUIT, INT, TERM


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


@CONTRACT
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_immediate_stop_does_not_wait_for_slow_request(start_server, sig):
    s = start_server("wsgiapp:app", "-w", "1", "--graceful-timeout", "30")
    (w,) = s.wait_workers(1)
    with s.conn(timeout=10) as c:
        c.send(build_request("GET", "/sleep?s=5"))
        time.sleep(0.5)                 # the request is in the app
        t0 = time.monotonic()
        s.signal(sig)
        rc = s.wait_exit(5)
        took = time.monotonic() - t0
        assert rc == 0, "exit status %r; log:\n%s" % (rc, s.stderr()[-3000:])
        assert took < 2.0, "master took %.2f s to exit on %s" % (took, sig.name)
        assert wait_for(lambda: not alive(w), 2), "worker %d still alive" % w
        data = c.read_to_eof(timeout=2)
        assert b"200 OK" not in data, data


PTRACE_SEIZE = 0x4206
WALL = 0x40000000           # waitpid's __WALL: a tracee that is not our child


@CONTRACT
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_immediate_stop_does_not_wait_for_a_worker_the_kernel_holds(start_server, sig):
    """A worker that SIGKILL cannot make reapable (here this test traces it: its parent
    cannot reap it until the tracer has; a D-state process on a hung mount is the real
    case) does not keep the master from exiting: it waits its bounded while, names the
    pid, and goes on."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    s = start_server("wsgiapp:app", "-w", "2")
    held, free = s.wait_workers(2)
    if libc.ptrace(PTRACE_SEIZE, held, None, None) != 0:
        pytest.fail("cannot trace worker %d: errno %d" % (held, ctypes.get_errno()))
    try:
        t0 = time.monotonic()
        s.signal(sig)
        rc = s.wait_exit(10)
        took = time.monotonic() - t0
        assert rc == 0, "master still running %.1f s after %s (exit %r); log:\n%s" % (
            took, sig.name, rc, s.stderr()[-3000:])
        assert took < 5, "master took %.2f s to exit" % took
        assert s.log_findall(r"not reaped \d+ ms after SIGKILL \(pid %d\)" % held), \
            s.stderr()[-3000:]
        assert wait_for(lambda: not alive(free), 2), "worker %d still alive" % free
        print("\nmaster exited %.2f s after %s with a worker it could not reap" % (
            took, sig.name))
    finally:
        # The tracer reaps it: the corpse goes back to its parent, or PID 1's care.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(held, os.WNOHANG | WALL)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)


@CONTRACT
def test_quit_kills_requests_past_graceful_timeout(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "--graceful-timeout", "1")
    (w,) = s.wait_workers(1)
    with s.conn(timeout=10) as c:
        c.send(build_request("GET", "/sleep?s=10"))
        time.sleep(0.5)
        t0 = time.monotonic()
        s.signal(signal.SIGQUIT)
        rc = s.wait_exit(8)
        took = time.monotonic() - t0
    assert rc == 0, rc
    assert 0.9 <= took < 3.0, "QUIT with graceful-timeout 1 took %.2f s" % took
    assert not alive(w)


@CONTRACT
def test_quit_serves_queued_requests_and_closes_keepalive(start_server):
    """QUIT: the request in the app and the one queued behind it (one app thread) are both
    served, each answered with Connection: close."""
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "1", "--graceful-timeout", "10",
                     "--keep-alive", "10")
    (w,) = s.wait_workers(1)
    c1, c2 = s.conn(), s.conn()
    try:
        c1.send(build_request("GET", "/sleep?s=1.5"))
        time.sleep(0.3)
        c2.send(build_request("GET", "/pid"))
        time.sleep(0.2)
        s.signal(signal.SIGQUIT)
        r1 = c1.read_response(timeout=10)
        r2 = c2.read_response(timeout=10)
        assert r1.status == 200 and r1.body == str(w).encode(), r1
        assert r2.status == 200 and r2.body == str(w).encode(), r2
        assert (r1.header("connection") or "").lower() == "close", r1
        assert (r2.header("connection") or "").lower() == "close", r2
        assert c1.closed_by_peer(5) and c2.closed_by_peer(5)
    finally:
        c1.close()
        c2.close()
    assert s.wait_exit(10) == 0


@CONTRACT
@pytest.mark.parametrize("sig", ["QUIT", "HUP"])
def test_graceful_stop_serves_a_connection_already_accepted(start_server, sig):
    """A worker told to stop still answers the first request of a connection it had already
    accepted when the request arrives just after (a client sends right after connect(); under
    load a stopping worker closed such connections without a word: a failed request)."""
    s = start_server("wsgiapp:app", "-w", "1", "--graceful-timeout", "10", "--keep-alive", "10")
    (w,) = s.wait_workers(1)
    with s.conn() as c:
        time.sleep(0.2)                 # accepted by the idle worker by now
        s.signal(getattr(signal, "SIG" + sig))
        if sig == "HUP":                # the old worker is stopped once the new one is ready
            s.wait_log(r"stopping 1 old worker", timeout=10)
        time.sleep(0.05)
        c.send(build_request("GET", "/pid"))
        try:
            r = c.read_response(timeout=5)
        except ConnClosed as e:
            raise AssertionError("connection accepted before the %s closed without an answer "
                                 "(%r); log:\n%s" % (sig, e, s.stderr()[-2000:])) from None
    assert r.status == 200 and int(r.body) == w, r
    assert (r.header("connection") or "").lower() == "close", r


@pytest.mark.unitcorn_only("gunicorn's QUIT is its quick stop")
@pytest.mark.parametrize("extra", [(), ("--worker-connections", "1")],
                         ids=["default", "worker-connections-1"])
def test_quit_serves_the_connections_waiting_in_the_backlog(start_server, extra):
    """QUIT while the only worker thread sleeps in the app and 3 more requests wait. With
    --worker-connections 1 the worker cannot hold them: they are in the kernel's backlog."""
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "1", "--graceful-timeout", "10",
                     *extra)
    (w,) = s.wait_workers(1)
    slow = s.conn(timeout=15)
    waiting = []
    try:
        slow.send(build_request("GET", "/sleep?s=1.5"))
        time.sleep(0.4)                 # the worker is inside the app now
        for _ in range(3):
            c = s.conn(timeout=15)
            waiting.append(c)
            c.send(build_request("GET", "/pid"))
        time.sleep(0.2)
        assert all(c.nothing_within(0.05) for c in [slow] + waiting), \
            "answered while the only worker thread sleeps"
        t0 = time.monotonic()
        s.signal(signal.SIGQUIT)
        results = []
        for i, c in enumerate([slow] + waiting):
            try:
                results.append(c.read_response(timeout=12))
            except (OSError, ConnClosed) as e:
                results.append(ConnClosed("%s (connection %s)" % (
                    e, "reset" if c.reset else "closed")))
        took = time.monotonic() - t0
        bad = [(i, r) for i, r in enumerate(results)
               if isinstance(r, Exception) or r.status != 200 or not r.complete]
        assert not bad, "requests failed after QUIT: %r; log:\n%s" % (bad, s.stderr()[-3000:])
        for r in results:
            assert int(r.body) == w, r
            assert (r.header("connection") or "").lower() == "close", r
        for c in [slow] + waiting:
            assert c.closed_by_peer(5), "connection left open after Connection: close"
    finally:
        for c in [slow] + waiting:
            c.close()
    rc = s.wait_exit(15)
    assert rc == 0, "master exit status %r; log:\n%s" % (rc, s.stderr()[-3000:])
    assert not alive(w)
    print("\nQUIT with 1 request in the app and 3 waiting: all answered in %.2f s" % took)


# ----------------------------------------------------------------------------------------
# TTIN, TTOU, WINCH, USR1


def boot_order(s):
    """Worker pids in the order the master started them."""
    return [int(p) for p in s.log_findall(BOOTING)]


@CONTRACT
def test_ttin_ttou_change_the_worker_count_oldest_first(start_server):
    s = start_server("wsgiapp:app", "-w", "2")
    s.wait_workers(2)
    for n in (3, 4):
        s.signal(signal.SIGTTIN)
        s.wait_workers(n)
    order = boot_order(s)
    assert sorted(order) == s.workers(), (order, s.workers())
    for i, n in enumerate((3, 2, 1)):
        s.signal(signal.SIGTTOU)
        ws = s.wait_workers(n)
        assert ws == sorted(order[i + 1:]), "TTOU did not stop the oldest: %r, %r" % (
            order, ws)
    s.signal(signal.SIGTTOU)            # never below one
    time.sleep(1)
    assert s.workers() == [order[-1]]
    assert int(s.get("/pid").body) == order[-1]


@CONTRACT
def test_ttou_lets_the_oldest_finish_its_request(start_server):
    s = start_server("wsgiapp:app", "-w", "2", "--threads", "1", "--graceful-timeout", "10")
    s.wait_workers(2)
    oldest = boot_order(s)[0]
    results = [in_thread(lambda: s.get("/sleep?s=2", timeout=10)) for _ in range(2)]
    time.sleep(0.5)
    s.signal(signal.SIGTTOU)
    for th, _ in results:
        th.join(12)
    outs = [out for _, out in results]
    assert all("r" in o and o["r"].status == 200 for o in outs), outs
    assert wait_for(lambda: not alive(oldest), 5)
    assert len(s.wait_workers(1)) == 1


@CONTRACT
@pytest.mark.parametrize("restart", ["TTIN", "HUP"])
def test_winch_stops_workers_master_keeps_listener(start_server, restart):
    s = start_server("wsgiapp:app", "-w", "2", "--graceful-timeout", "10")
    old = s.wait_workers(2)
    th, out = in_thread(lambda: s.get("/sleep?s=1", timeout=10))
    time.sleep(0.3)
    s.signal(signal.SIGWINCH)
    th.join(12)
    assert "r" in out and out["r"].status == 200, out          # finished gracefully
    assert wait_for(lambda: not s.workers(), 10), "workers after WINCH: %r" % s.workers()
    time.sleep(0.5)
    assert not s.exited() and s.workers() == []
    port = s.addr[1]
    inodes = listening_inodes(port)
    assert len(inodes) == 1 and inodes[0] in socket_inodes(s.pid), "listener lost"
    with s.conn(timeout=10) as c:               # the kernel still accepts
        c.send(build_request("GET", "/pid"))
        assert c.nothing_within(1.0), "answered with no worker running"
        s.signal(getattr(signal, "SIG" + restart))
        r = c.read_response(timeout=10)
    assert r.status == 200 and int(r.body) not in old, r
    s.wait_workers(1 if restart == "TTIN" else 2)


@CONTRACT
def test_usr1_reopens_the_logs_in_master_and_workers(start_server, tmp_path):
    err, acc = tmp_path / "error.log", tmp_path / "access.log"
    s = start_server("wsgiapp:app", "-w", "2", "--error-logfile", err,
                     "--access-logfile", acc)
    ws = s.wait_workers(2)
    s.get("/errors?msg=before-rotation")
    s.wait_log("before-rotation", path=err)
    os.rename(err, str(err) + ".1")
    os.rename(acc, str(acc) + ".1")
    s.signal(signal.SIGUSR1)
    s.wait_log(r"Handling signal: usr1", path=str(err) + ".1")

    def nothing_holds_rotated():
        for p in [s.pid] + ws:
            for fd in os.listdir("/proc/%d/fd" % p):
                try:
                    target = os.readlink("/proc/%d/fd/%s" % (p, fd))
                except OSError:
                    continue
                if target.endswith(".log.1"):
                    return False
        return err.exists() and acc.exists()
    assert wait_for(nothing_holds_rotated, 5), "a process still writes the rotated logs"
    for i in range(6):
        assert s.get("/errors?msg=after-rotation-%d" % i).status == 200
    s.wait_log("after-rotation", path=err, count=6)
    assert wait_for(lambda: acc.read_text().count("after-rotation") == 6, 5), acc.read_text()
    assert "after-rotation" not in (tmp_path / "error.log.1").read_text()
    assert "after-rotation" not in (tmp_path / "access.log.1").read_text()


@CONTRACT
def test_usr1_while_a_worker_boots_does_not_kill_it(start_server, tmp_path):
    """logrotate's USR1 can come at any time, also while a worker imports the app: the
    worker must live on and reopen its logs once it serves."""
    err = tmp_path / "error.log"
    s = start_server("slow_boot:app", "-w", "1", "--error-logfile", err,
                     env_extra={"SLOW_BOOT_S": "1"}, wait=False)
    (worker,) = s.wait_workers(1)
    os.rename(err, str(err) + ".1")
    s.signal(signal.SIGUSR1)
    s.wait_ready(timeout=15)
    assert s.workers() == [worker]
    log = open(str(err) + ".1").read()
    assert "was sent SIGUSR1" not in log, log[-2000:]
    # The worker reopened the error log after its boot: no fd of it on the moved file.

    def worker_on_new_file():
        targets = []
        for fd in os.listdir("/proc/%d/fd" % worker):
            try:
                targets.append(os.readlink("/proc/%d/fd/%s" % (worker, fd)))
            except OSError:
                pass
        return str(err) in targets and not any(t.endswith(".log.1") for t in targets)
    assert wait_for(worker_on_new_file, 5)
