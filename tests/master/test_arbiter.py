"""The master's workers: it forks -w workers, binds once before forking (every worker
accepts on the one listener), replaces a worker that dies (kill -9 repaired within a
second; a worker dying at boot respawned with back-off), lives through a worker's crash
mid-request, and keeps the scoreboard the workers report to.

Elsewhere in tests/master/: deadlines and boot_timeout, test_timeouts.py; recycling,
test_recycling.py; the workers of a master that died, test_orphans.py; the worker count
changed by TTIN/TTOU, test_signals.py."""

import os
import signal
import threading
import time

import pytest

from harness import (BOOTING, hup, in_thread, listening_inodes, read_scoreboard, socket_inodes,
                     wait_for)

# unitcorn's own signal contract: not run against gunicorn (TEST_SERVER=gunicorn).
CONTRACT = pytest.mark.unitcorn_only(
    "unitcorn's signal contract and log lines (gunicorn's TERM is graceful, it has no "
    "boot back-off, 504 on timeout, max_worker_lifetime/memory)")


def test_three_workers_are_children_of_the_master(start_server):
    s = start_server("wsgiapp:app", "-w", "3")
    workers = s.wait_workers(3)
    assert s.pid not in workers
    # the workers are the ones serving: a served pid is one of them, never the master
    served = {int(s.get("/pid").body) for _ in range(6)}
    assert served <= set(workers), (served, workers)
    assert s.pid not in served


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


# ----------------------------------------------------------------------------------------
# dead workers: repair, boot back-off


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


@CONTRACT
def test_kill9_of_a_worker_repaired_within_a_second(start_server):
    s = start_server("wsgiapp:app", "-w", "1")
    (w,) = s.wait_workers(1)
    os.kill(w, signal.SIGKILL)
    t0 = time.monotonic()
    th, out = in_thread(lambda: s.get("/pid", timeout=10))
    new = wait_for(lambda: [p for p in s.workers() if p != w], 3, interval=0.01)
    t_proc = time.monotonic() - t0
    th.join(12)
    t_served = time.monotonic() - t0
    assert new, "no new worker 3 s after kill -9; log:\n%s" % s.stderr()[-3000:]
    assert "e" not in out, out
    r = out["r"]
    assert r.status == 200 and int(r.body) == new[0], (r, new)
    print("\nkill -9: new worker in /proc after %.0f ms, serving after %.0f ms" % (
        t_proc * 1000, t_served * 1000))
    assert t_proc < 1.0, "new worker after %.2f s" % t_proc
    assert t_served < 1.0, "served again after %.2f s" % t_served


@CONTRACT
def test_worker_dying_at_boot_respawned_with_backoff(start_server, tmp_path):
    log = tmp_path / "imports.log"
    s = start_server("dies_at_boot:app", "-w", "1", wait=False, env_extra={"IMPORT_LOG": log})
    seen = s.log_times(BOOTING, 4.0)
    assert not s.exited(), "master exited with %s; log:\n%s" % (s.proc.returncode,
                                                               s.stderr()[-3000:])
    times = [t for t, _ in seen]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("\nboot back-off: %d spawns in 4 s, gaps %s" % (
        len(seen), ["%.2f" % g for g in gaps]))
    # 100, 200, 400, 800, 1600 ms apart: about 6 in 4 s; without back-off, hundreds
    assert 3 <= len(seen) <= 9, (len(seen), gaps)
    assert gaps[-1] > 2 * gaps[0], gaps
    imports = log.read_text().count("dies_at_boot imported")
    assert len(seen) - 1 <= imports <= len(seen) + 1, (imports, len(seen))
    port = s.addr[1]
    assert set(listening_inodes(port)) & socket_inodes(s.pid), "master dropped its listener"
    s.signal(signal.SIGTERM)
    assert s.wait_exit(5) == 0


# ----------------------------------------------------------------------------------------
# the scoreboard (harness.read_scoreboard reads it from the master's memory)


def now_ms():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)


@CONTRACT
def test_scoreboard_figures(start_server):
    s = start_server("wsgiapp:app", "-w", "2", "--threads", "2", "-t", "30")
    ws = s.wait_workers(2)
    for _ in range(9):
        assert s.get("/hello").status == 200

    def settled():          # both workers have imported the app, every request counted
        b = read_scoreboard(s.pid)
        return b if (sorted(b) == ws and all(x["ready"] for x in b.values())
                     and sum(x["requests"] for x in b.values()) == 10) else None
    board = wait_for(settled, 5) or read_scoreboard(s.pid)
    assert sorted(board) == ws, board
    assert sum(x["requests"] for x in board.values()) == 10, board    # with wait_ready's
    for x in board.values():
        assert (x["generation"], x["ready"], x["retire"], x["in_flight"], x["oldest_ms"]) \
            == (1, 1, 0, 0, 0), x
        assert 0 <= now_ms() - x["heartbeat_ms"] < 30_000, x
    th, out = in_thread(lambda: s.get("/sleep?s=1.5", timeout=10))
    t_sent = now_ms()
    busy = wait_for(lambda: [x for x in read_scoreboard(s.pid).values() if x["in_flight"]], 1)
    assert busy and len(busy) == 1, busy
    (x,) = busy
    assert x["in_flight"] == 1 and x["connections"] >= 1, x
    assert abs(x["oldest_ms"] - t_sent) < 500, (x, t_sent)
    th.join(10)
    assert out["r"].status == 200
    assert wait_for(lambda: all(x["in_flight"] == 0 and x["oldest_ms"] == 0
                                for x in read_scoreboard(s.pid).values()), 2)
    _, new = hup(s, ws, 2)
    wait_for(lambda: sorted(read_scoreboard(s.pid)) == new, 2)     # old slots released
    board = read_scoreboard(s.pid)
    assert sorted(board) == new, board
    assert {x["generation"] for x in board.values()} == {2}, board
