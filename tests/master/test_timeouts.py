"""The deadlines the master enforces: boot_timeout (a worker stuck importing the app is
killed, and its respawns back off) and the request deadline `timeout` (a hung request gets
its 504 at the deadline, its traceback in the error log, and its worker is replaced; a
worker that stopped sending heartbeats is replaced; idle workers and short requests live
through a short timeout).

Elsewhere: the same per worker class, tests/asgi/ and tests/gevent/; graceful_timeout,
test_signals.py; the keep-alive and header timeouts, tests/http/."""

import os
import signal
import time

import pytest

from harness import BOOTING, alive, wait_for

pytestmark = pytest.mark.unitcorn_only(
    "unitcorn's signal contract and log lines (gunicorn's TERM is graceful, it has no "
    "boot back-off, 504 on timeout, max_worker_lifetime/memory)")


# ----------------------------------------------------------------------------------------
# boot timeout


def test_boot_timeout_kills_a_worker_stuck_importing(start_server):
    s = start_server("slow_boot:app", "-w", "1", "--boot-timeout", "1", wait=False)
    seen = s.log_times(BOOTING, 4.5)
    assert not s.exited(), s.stderr()[-3000:]
    pids = [int(m) for _, m in seen]
    times = [t for t, _ in seen]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("\nboot timeout 1 s: spawns %r, gaps %s" % (pids, ["%.2f" % g for g in gaps]))
    assert 3 <= len(pids) <= 5, (pids, gaps)
    assert all(g >= 0.95 for g in gaps), gaps
    kills = s.log_findall(r"\(pid:(\d+)\) did not load the app within boot_timeout \(1s\)")
    assert [int(p) for p in kills[:len(pids) - 1]] == pids[:-1], (kills, pids)
    assert not any(alive(p) for p in pids[:-1])


def test_boot_timeout_respawn_backs_off(start_server):
    """Workers killed by boot_timeout are restarted with the same exponential back-off as
    workers that die while booting: the gaps between starts grow (1.1, 1.2, 1.4, 1.8 s)."""
    s = start_server("slow_boot:app", "-w", "1", "--boot-timeout", "1", wait=False)
    seen = s.log_times(BOOTING, 6.5)
    times = [t for t, _ in seen]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("\nboot timeout back-off: gaps %s" % ["%.2f" % g for g in gaps])
    assert len(gaps) >= 3, gaps
    assert gaps[-1] - gaps[0] >= 0.25, "no back-off between boot-timeout restarts: %s" % gaps


# ----------------------------------------------------------------------------------------
# request deadlines


def test_hung_request_gets_504_then_traceback_and_replacement(start_server):
    s = start_server("arbiterapp:app", "-w", "1", "-t", "2")
    (w,) = s.wait_workers(1)
    t0 = time.monotonic()
    r = s.get("/hang", timeout=10)
    took = time.monotonic() - t0
    assert r.status == 504 and r.complete, r
    assert 1.9 <= took < 3.5, "504 after %.2f s with -t 2" % took
    s.wait_log(r"WORKER TIMEOUT \(pid:%d\)" % w, timeout=5)
    t_timeout = time.monotonic() - t0
    s.wait_log(r'File "[^"]*arbiterapp\.py", line \d+ in hang_here_forever', timeout=5)
    log = s.stderr()
    assert log.index("WORKER TIMEOUT (pid:%d)" % w) < log.index("in hang_here_forever")
    assert wait_for(lambda: not alive(w), 4), "worker %d alive after its timeout" % w
    t_gone = time.monotonic() - t0
    r = s.wait_ready(timeout=10, path="/pid")
    assert r.status == 200 and int(r.body) != w
    print("\ndeadline -t 2: 504 at %.2f s, WORKER TIMEOUT at %.2f s, worker gone at %.2f s" % (
        took, t_timeout, t_gone))
    assert t_timeout - took < 2.0


def test_stopped_worker_without_heartbeat_is_replaced(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "-t", "2")
    (w,) = s.wait_workers(1)
    os.kill(w, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        s.wait_log(r"WORKER TIMEOUT \(pid:%d\)[^\n]*heartbeat" % w, timeout=6)
        took = time.monotonic() - t0
        assert wait_for(lambda: not alive(w), 4), "stopped worker %d never killed" % w
    finally:
        if alive(w):
            os.kill(w, signal.SIGKILL)
    assert took < 4.0, "missed heartbeat noticed after %.2f s with -t 2" % took
    r = s.wait_ready(timeout=10, path="/pid")
    assert int(r.body) != w


def test_idle_workers_and_short_requests_survive_a_short_timeout(start_server):
    s = start_server("wsgiapp:app", "-w", "2", "-t", "1")
    ws = s.wait_workers(2)
    r = s.get("/sleep?s=0.5")
    assert r.status == 200
    time.sleep(3)
    assert s.workers() == ws
    assert "WORKER TIMEOUT" not in s.stderr()
