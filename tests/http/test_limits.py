"""Issue 5, point 4: limits beyond gunicorn's three — limit_request_body (413),
header_timeout (a head sent too slowly is cut off), and slow clients: hundreds of
connections trickling their heads must not delay a normal client of the same one-thread
worker. (limit_request_line/fields/field_size are in test_http.py, worker_connections in
test_concurrency.py.)"""

import statistics
import subprocess
import sys
import textwrap
import time

import pytest

from harness import VENV, build_request, chunked


@pytest.mark.unitcorn_only("limit_request_body is unitcorn's own setting")
def test_limit_request_body_413(start_server):
    s = start_server("countapp:app", "-w", "1", "--limit-request-body", "1000")
    before = int(s.get("/count").body)
    ok = s.request("POST", "/echo", body=b"x" * 1000)
    assert (ok.status, ok.body) == (200, b"POST /echo 1000"), ok
    # Declared too large: refused before the app runs, without reading the body.
    with s.conn() as c:
        c.send(build_request("POST", "/echo", [("Content-Length", "1001")]))
        r = c.read_response()
        assert r.status == 413 and (r.header("connection") or "").lower() == "close", r
        assert c.closed_by_peer(timeout=5)
    # Chunked, growing past the limit.
    with s.conn() as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
               + chunked([b"y" * 600, b"y" * 600]))
        r = c.read_response()
        assert r.status == 413, r
        assert c.closed_by_peer(timeout=5)
    # Only the good request and this /count reached the app since the first /count.
    assert int(s.get("/count").body) == before + 2


@pytest.mark.unitcorn_only("header_timeout is unitcorn's own setting")
def test_header_timeout_cuts_off_a_trickled_head(start_server):
    """--header-timeout 1 with --keep-alive 30: a head still arriving after ≈1 s is cut
    off (closed, no response), however steadily its bytes come; a head sent in pieces
    within the time is served."""
    s = start_server("wsgiapp:app", "-w", "1", "--keep-alive", "30", "--header-timeout", "1")
    with s.conn() as c:
        t0 = time.monotonic()
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        closed_at = None
        for i in range(40):
            time.sleep(0.1)
            try:
                c.send(b"X-Slow-%d: y\r\n" % i)
            except OSError:
                closed_at = time.monotonic() - t0
                break
            if c.closed_by_peer(timeout=0.01):
                closed_at = time.monotonic() - t0
                break
        assert closed_at is not None, "a head trickled for 4 s was not cut off"
        assert 0.8 <= closed_at <= 2.5, "cut off after %.2f s, header_timeout is 1 s" % closed_at
        assert c.buf == b"", "a response was sent: %r" % c.buf
    with s.conn() as c:
        for part in (b"GET /hello HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n"):
            c.send(part)
            time.sleep(0.2)
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!\n"


TRICKLER = textwrap.dedent("""
    import socket, sys, time
    port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    head = b"GET /hello HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: " + b"a" * 100000
    print("connected", flush=True)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        tick = time.monotonic()
        for s in socks:
            s.send(head[i:i + 1])
        i += 1
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    print("sent", i, flush=True)
""")


def _latencies(s, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = s.get("/hello", timeout=5)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200
        time.sleep(0.005)
    return out


def _figures(ms):
    ms = sorted(ms)
    return {"p50": statistics.median(ms), "p99": ms[int(len(ms) * 0.99) - 1], "max": ms[-1]}


def test_slow_clients_do_not_delay_a_normal_client(start_server):
    """-w 1 --threads 1: 500 connections trickle their heads one byte per 100 ms each
    (5000 reads a second) while a normal client makes requests on fresh connections; its
    latency stays within milliseconds of the latency without them."""
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "1", "--keep-alive", "60",
                     "--header-timeout", "60")
    _latencies(s, 20)                    # warm up
    quiet = _figures(_latencies(s, 150))
    trickler = subprocess.Popen([str(VENV / "bin" / "python"), "-c", TRICKLER,
                                 str(s.addr[1]), "500", "6"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert trickler.stdout.readline().strip() == "connected", trickler.stderr.read()
        time.sleep(0.5)
        busy = _figures(_latencies(s, 150))
        out, err = trickler.communicate(timeout=30)
    finally:
        if trickler.poll() is None:
            trickler.kill()
            trickler.wait(10)
    assert trickler.returncode == 0, err
    print("\nnormal client, ms: alone p50 %.2f p99 %.2f max %.2f; with 500 trickling "
          "p50 %.2f p99 %.2f max %.2f (%s)" % (quiet["p50"], quiet["p99"], quiet["max"],
                                               busy["p50"], busy["p99"], busy["max"],
                                               out.strip()), file=sys.stderr)
    assert busy["p50"] < quiet["p50"] + 5, (quiet, busy)
    assert busy["max"] < 50, (quiet, busy)


# ----- open files: the limit raised, worker_connections within it, failed accepts counted

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
