"""Slow readers never hold a sync or gthread worker's app thread: a response is walked
ahead of the client into memory (response_buffer_size), then a temporary file
(response_spool_max), and the app slot is freed once the app's iterable is done. Past
both caps the app's iteration waits (back-pressure), and memory stays bounded.

200 readers of 1 KiB/s (or not reading at all) each hold a large response while a normal
client's requests are measured; the worker's RSS is read from /proc."""

import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import VENV, ConnClosed, build_request, rss_kib, wait_for

pytestmark = pytest.mark.unitcorn_only("response_buffer_size and response_spool_max are unitcorn's")

SLOW = 200
BUFFER = 64 * 1024
# hyper's buffer per connection: its max_buf_size, which is the largest request head
# (limit_request_line + limit_request_fields × limit_request_field_size, by default
# 8190 + 100 × 8192), plus the one frame it takes past it.
HYPER_BUFFER = 8190 + 100 * (8190 + 2) + 64 * 1024

# Readers in a process of their own (the test's own client must not share their GIL):
# connect n sockets with a small receive buffer, ask each for PATH over HTTP/1.0 (the body
# ends at EOF), then read `rate` bytes a second from each (0: the head only). Prints
# "ready N" once N heads are in (all of them, or after 10 s), then a JSON summary.
READERS = textwrap.dedent("""
    import hashlib, json, socket, sys, time
    port, n, path, rate, seconds = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                    int(sys.argv[4]), float(sys.argv[5]))
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(("GET %s HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n" % path).encode())
        s.setblocking(False)
        socks.append(s)
    state = [{"head": b"", "started": False, "body": hashlib.sha256(), "len": 0,
              "eof": False} for _ in socks]
    t0 = time.monotonic()
    ready = False
    tick = 0.1
    while time.monotonic() - t0 < seconds:
        t = time.monotonic()
        for s, st in zip(socks, state):
            if st["eof"] or (st["started"] and rate == 0):
                continue
            want = 1024 if not st["started"] else max(1, int(rate * tick))
            try:
                data = s.recv(want)
            except BlockingIOError:
                continue
            except OSError:
                st["eof"] = True
                continue
            if not data:
                st["eof"] = True
                continue
            if not st["started"]:
                st["head"] += data
                if b"\\r\\n\\r\\n" in st["head"]:
                    st["started"] = True
                    data = st["head"].split(b"\\r\\n\\r\\n", 1)[1]
                else:
                    continue
            st["body"].update(data)
            st["len"] += len(data)
        heads = sum(st["started"] for st in state)
        if not ready and (heads == n or time.monotonic() - t0 > 10):
            ready = True
            print("ready", heads, flush=True)
        if rate and all(st["eof"] for st in state):
            break
        time.sleep(max(0.0, tick - (time.monotonic() - t)))
    done = [st for st in state if st["eof"]]
    print(json.dumps({
        "heads": sum(st["started"] for st in state),
        "complete": len(done),
        "lengths": sorted({st["len"] for st in done}),
        "digests": sorted({st["body"].hexdigest() for st in done}),
        "status": sorted({st["head"].split(b"\\r\\n", 1)[0].decode() for st in state}),
    }), flush=True)
""")


def pattern(n):
    block = bytes(range(256)) * 256
    return (block * (n // len(block) + 1))[:n]


class Readers:
    """The READERS process: started, waited for until its heads are in, ended."""

    def __init__(self, s, n, path, rate, seconds):
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "python"), "-c", READERS, str(s.addr[1]), str(n), path,
             str(rate), str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ready(self):
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "ready", self.proc.stderr.read()
        return int(line[1])

    def summary(self, timeout):
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def latencies(s, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = s.get("/hello", timeout=5)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200 and r.body == b"hello\n"
        time.sleep(0.01)
    return out


def p99(ms):
    ms = sorted(ms)
    return ms[int(len(ms) * 0.99) - 1]


def start(start_server, threads, *extra):
    s = start_server("spoolapp:app", "-w", "1", "--threads", str(threads), "-t", "60",
                     "--response-buffer", str(BUFFER), *extra, ready_path="/hello")
    (worker,) = s.wait_workers(1)
    return s, worker


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("route", ["gen", "whole"])
def test_slow_readers_leave_normal_requests_answered(start_server, threads, route):
    """200 clients reading an 8 MiB response at 1 KiB/s (a generator's 64 KiB chunks, or
    one piece; more than the loopback socket buffers take): every one of them gets its
    response started, and 50 sequential requests of a normal client on the same worker
    are answered within 100 ms p99. The worker's RSS stays under what the settings allow:
    200 × (response_buffer_size + hyper's buffer), plus the body being produced."""
    body = 8 << 20
    s, worker = start(start_server, threads)
    base = rss_kib(worker)
    readers = Readers(s, SLOW, "/%s?n=%d" % (route, body), 1024, 15)
    try:
        heads = readers.ready()
        time.sleep(1)
        ms = latencies(s, 50)
        peak = rss_kib(worker)
        summary = readers.summary(60)
    finally:
        readers.stop()
    # Each app thread may hold a body twice while spooling it: the app's bytes and a copy.
    bound = base + (SLOW * (BUFFER + HYPER_BUFFER) + threads * 2 * body) // 1024 + 32 * 1024
    print("\n%s threads=%d: heads %d/%d, normal client p50 %.1f p99 %.1f max %.1f ms; "
          "worker RSS %d -> %d KiB (bound %d)" % (
              route, threads, heads, SLOW, statistics.median(ms), p99(ms), max(ms), base,
              peak, bound), file=sys.stderr)
    assert heads == SLOW and summary["heads"] == SLOW, summary
    assert summary["status"] == ["HTTP/1.0 200 OK"], summary
    assert p99(ms) <= 100, ms
    assert peak < bound, (peak, bound)


@pytest.mark.parametrize("threads", [1, 4])
def test_slow_readers_receive_complete_bodies(start_server, threads, tmp_path):
    """Spooled bodies arrive whole and in order, from memory then the file: 20 clients
    read a 1 MiB generator response and 20 a 1 MiB one-piece response at 200 KiB/s each,
    with a memory buffer of 64 KiB; each gets exactly the app's bytes."""
    n = 1 << 20
    s, _ = start(start_server, threads)
    want = hashlib.sha256(pattern(n)).hexdigest()
    gen = Readers(s, 20, "/gen?n=%d&chunk=10000" % n, 200 * 1024, 30)
    whole = Readers(s, 20, "/whole?n=%d" % n, 200 * 1024, 30)
    try:
        assert gen.ready() == 20 and whole.ready() == 20
        for summary in (gen.summary(45), whole.summary(45)):
            assert summary["complete"] == 20, summary
            assert summary["lengths"] == [n] and summary["digests"] == [want], summary
    finally:
        gen.stop()
        whole.stop()


@pytest.mark.parametrize("threads", [1, 4])
def test_past_the_disk_cap_the_app_waits(start_server, threads, tmp_path):
    """response_spool_max = 256 KiB: a client that reads nothing of a 64 MiB generator
    response stops the app's iteration once memory, the spool file and the socket
    buffers are full (its yields stop growing) and the worker's memory does not grow
    with the body. With one thread the app slot is held meanwhile (back-pressure: a
    normal request waits), and is freed once the client goes."""
    spool_max = 256 * 1024
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    s, worker = start(start_server, threads, "--response-spool", str(spool_max),
                      "--worker-tmp-dir", str(spool_dir))
    base = rss_kib(worker)
    log = tmp_path / "yielded"
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(10)
    slow.connect(s.addr)
    try:
        slow.sendall(build_request("GET", "/gen?n=%d&log=%s" % (64 << 20, log)))
        assert slow.recv(1024).startswith(b"HTTP/1.1 200")
        assert wait_for(log.exists, 10)

        def settled():
            before = int(log.read_text())
            time.sleep(1)
            return before == int(log.read_text()) and before
        yielded = wait_for(settled, 15, interval=0.01)
        # The spool file is the worker's, in worker_tmp_dir, and has no name there.
        assert list(spool_dir.iterdir()) == []
        fds = [os.readlink(p) for p in Path("/proc/%d/fd" % worker).iterdir()]
        assert any(f.startswith(str(spool_dir)) and f.endswith("(deleted)") for f in fds), fds
        rss = rss_kib(worker)
        print("\nthreads=%d: the app stopped after %d bytes; worker RSS %d -> %d KiB" % (
            threads, yielded, base, rss), file=sys.stderr)
        # Memory, the file, hyper's buffer and the loopback socket buffers, not 64 MiB.
        assert yielded and yielded < 16 << 20, yielded
        assert rss < base + 24 * 1024, (base, rss)
        if threads == 1:
            with pytest.raises((OSError, ConnClosed)):
                s.get("/hello", timeout=1)
        else:
            assert s.get("/hello", timeout=5).status == 200
    finally:
        slow.close()
    t0 = time.monotonic()
    assert s.get("/hello", timeout=10).status == 200
    assert time.monotonic() - t0 < 2
