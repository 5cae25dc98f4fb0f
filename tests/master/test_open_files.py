"""The open-file limit: raised from the soft limit to the hard one, worker_connections
clamped to what it allows, and a worker out of descriptors pausing its accepts and logging
a count, not a flood.

Elsewhere: worker_connections itself, tests/http/test_concurrency.py."""

import os
import time

import pytest

from harness import build_request


def _limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        line = next(l for l in f if l.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


@pytest.mark.unitcorn_only("unitcorn raises its own open-file limit")
def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(start_server):
    s = start_server("wsgiapp:app", "-w", "1", prefix=["prlimit", "--nofile=256:4096"])
    [worker] = s.wait_workers(1)
    assert _limits(s.pid) == (4096, 4096)
    assert _limits(worker) == (4096, 4096)
    assert "does not fit the open-file limit" not in s.stderr()


@pytest.mark.unitcorn_only("unitcorn clamps worker_connections to the open-file limit")
def test_worker_connections_is_clamped_to_what_the_limit_allows(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "--worker-connections", "1000",
                     prefix=["prlimit", "--nofile=256:256"])
    # (256 - 64 reserved) / 2: a connection's socket, the file of a body it spools.
    s.wait_log(r"worker_connections = 1000 does not fit the open-file limit \(256, "
               r"RLIMIT_NOFILE\): each worker takes at most 96 connections")
    # Past the clamp, connections wait in the listen queue instead of failing: 300
    # clients at once against 256 descriptors are all answered.
    conns = []
    try:
        for _ in range(300):
            c = s.conn(timeout=20)
            c.send(build_request("GET", "/", close=True))
            conns.append(c)
        answered = sum(1 for c in conns if c.read_response("GET", 20).status == 200)
    finally:
        for c in conns:
            c.close()
    assert answered == 300
    assert "accept failed" not in s.stderr()


@pytest.mark.unitcorn_only("unitcorn's accept errors are counted")
def test_out_of_descriptors_the_worker_pauses_and_logs_a_count_not_a_flood(start_server):
    s = start_server("fdhog:app", "-w", "1", "--keep-alive", "30",
                     prefix=["prlimit", "--nofile=256:256"])
    with s.conn(timeout=20) as keep:
        # On a connection accepted before the worker runs out, kept alive.
        keep.send(build_request("GET", "/hog"))
        r = keep.read_response("GET", 20)
        assert r.status == 200 and r.body.startswith(b"holding "), r
        waiting = [s.conn(timeout=20) for _ in range(50)]
        try:
            for c in waiting:
                c.send(build_request("GET", "/", close=True))
            # The worker fails to accept them again and again, pausing between tries.
            time.sleep(2.5)
            lines = s.log_findall(r"accept failed on .*\(os error 24\): out of file "
                                  r"descriptors.*\((\d+) time\(s\) since the last such line")
            assert 1 <= len(lines) <= 2, s.stderr()[-3000:]
            keep.send(build_request("GET", "/release"))
            assert keep.read_response("GET", 20).body == b"released\n"
            # Nothing was lost: the queued clients are answered once descriptors are back.
            assert all(c.read_response("GET", 20).status == 200 for c in waiting)
        finally:
            for c in waiting:
                c.close()


@pytest.mark.unitcorn_only("unitcorn's own descriptors")
def test_an_open_connection_costs_the_worker_one_descriptor(start_server):
    """Each client connection is one socket in the worker, no duplicate beside it: 200
    kept-alive connections grow its descriptor table by about 200, not 400."""
    n = 200
    s = start_server("wsgiapp:app", "-w", "1", "--keep-alive", "30")
    [worker] = s.wait_workers(1)
    assert s.get("/").status == 200
    before = len(os.listdir("/proc/%d/fd" % worker))
    conns = []
    try:
        for _ in range(n):
            c = s.conn(timeout=20)
            c.send(build_request("GET", "/"))
            conns.append(c)
        answered = sum(1 for c in conns if c.read_response("GET", 20).status == 200)
        after = len(os.listdir("/proc/%d/fd" % worker))
    finally:
        for c in conns:
            c.close()
    assert answered == n
    print("\n%d open connections: the worker's descriptors %d -> %d" % (n, before, after))
    # (the first request's connection may be closing while `before` is counted)
    assert n - 5 <= after - before <= n + 10, (before, after)
