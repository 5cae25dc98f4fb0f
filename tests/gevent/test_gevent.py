"""The gevent worker (`-k gevent`): the app runs in greenlets on gevent's hub with the
standard library monkey-patched, up to worker_connections requests at once in one worker;
bodies stream both ways with back-pressure; deadlines, recycling and graceful stop hold.

The app is tests/apps/geventapp.py (Flask). Against gunicorn (TEST_SERVER=gunicorn) these
run with its gthread worker, which is not what they test: they are unitcorn-only.
"""

import hashlib
import os
import selectors
import signal
import socket
import threading
import time

import pytest

from harness import alive, build_request, chunked, rss_kib, wait_for

pytestmark = pytest.mark.unitcorn_only("gevent worker; the harness runs gunicorn as gthread")

APP = "geventapp:app"


def gevent_server(start_server, *args):
    return start_server(APP, "-k", "gevent", "-w", "1", *args)


def tasks(pid):
    """The threads of a process."""
    return len(os.listdir("/proc/%d/task" % pid))


def concurrent_gets(addr, path, n, timeout):
    """n GETs at once, each on its own connection, driven by this one thread (so that the
    client is never the bottleneck). Returns ([status or error], seconds until the last)."""
    request = build_request("GET", path, close=True)
    sel = selectors.DefaultSelector()
    results = [None] * n
    t0 = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(addr)
        sel.register(s, selectors.EVENT_WRITE, [i, b""])
    pending, deadline = n, t0 + timeout
    while pending and time.monotonic() < deadline:
        for key, events in sel.select(timeout=0.2):
            s, state = key.fileobj, key.data
            try:
                if events & selectors.EVENT_WRITE:
                    s.sendall(request)
                    sel.modify(s, selectors.EVENT_READ, state)
                    continue
                data = s.recv(65536)
            except OSError as e:
                data, state[1] = b"", repr(e).encode()
            if data:
                state[1] += data
                continue
            sel.unregister(s)
            s.close()
            pending -= 1
            head = state[1].split(b"\r\n", 1)[0].split(b" ")
            ok = len(head) > 1 and head[1].isdigit()
            results[state[0]] = int(head[1]) if ok else state[1][:200]
    elapsed = time.monotonic() - t0
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return results, elapsed


def drain(sock, timeout):
    """Read to EOF, counting (not keeping) the bytes."""
    sock.settimeout(timeout)
    total, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = sock.recv(1 << 20)
        if not data:
            break
        total += len(data)
    return total


def test_app_imported_patched_and_served(start_server):
    s = gevent_server(start_server)
    assert s.get("/patched").json() == {"socket": True, "time.sleep": True}
    r = s.get("/sleep?s=0.1")
    assert r.status == 200 and r.body == b"slept\n"


def test_preloaded_app_is_imported_patched_too(start_server):
    s = gevent_server(start_server, "--preload")
    assert s.get("/patched").json() == {"socket": True, "time.sleep": True}


def test_500_sleeping_requests_at_once_in_one_worker(start_server):
    """(a) 500 clients of a Flask route that sleeps 1 s (time.sleep, patched): about 1 s."""
    s = gevent_server(start_server)
    (w,) = s.wait_workers(1)
    results, elapsed = concurrent_gets(s.addr, "/sleep?s=1", 500, timeout=30)
    failed = [r for r in results if r != 200]
    print("\n500 concurrent 1 s sleeps in one gevent worker: %.2f s" % elapsed)
    assert not failed, "%d failed, e.g. %r" % (len(failed), failed[:5])
    assert elapsed < 3.0, "500 × 1 s sleeps took %.2f s in one worker" % elapsed
    assert s.workers() == [w]


def test_long_polls_hold_no_thread(start_server):
    """(b) 200 long polls at once: the worker's thread count does not grow, and a plain
    request is answered meanwhile."""
    s = gevent_server(start_server)
    (w,) = s.wait_workers(1)
    s.get("/")
    idle = tasks(w)
    out = {}
    poller = threading.Thread(
        target=lambda: out.update(zip(("results", "elapsed"),
                                      concurrent_gets(s.addr, "/sleep?s=4", 200, 30))))
    poller.start()
    try:
        assert wait_for(lambda: s.get("/").status == 200, 5)
        time.sleep(1)                       # the polls are in flight now
        during = tasks(w)
        t0 = time.monotonic()
        r = s.get("/pid")
        answered_in = time.monotonic() - t0
    finally:
        poller.join(40)
    print("\nthreads idle %d, during 200 long polls %d; a plain request took %.3f s; the polls "
          "%.2f s" % (idle, during, answered_in, out.get("elapsed", -1)))
    assert r.status == 200 and int(r.body) == w
    assert answered_in < 0.5
    assert during <= idle + 1, "threads grew from %d to %d with 200 long polls" % (idle, during)
    assert out["results"] == [200] * 200, out["results"][:5]
    assert out["elapsed"] < 7


def test_chunked_upload_streams_to_the_app(start_server):
    """(c) a chunked upload, sent in pieces with pauses, is read by the app as it comes."""
    s = gevent_server(start_server)
    piece = os.urandom(256 * 1024)
    parts = [piece] * 24                   # 6 MiB
    with s.conn(timeout=20) as c:
        c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")]))
        body = chunked(parts)
        step = len(body) // 6
        for i in range(0, len(body), step):
            c.send(body[i:i + step])
            time.sleep(0.05)
        r = c.read_response()
    assert r.status == 200, r
    assert r.json() == {"size": len(piece) * 24,
                        "sha256": hashlib.sha256(piece * 24).hexdigest()}


def test_large_upload_with_content_length(start_server):
    s = gevent_server(start_server)
    data = os.urandom(3 * 1024 * 1024 + 17)
    r = s.request("PUT", "/upload", body=data, timeout=20)
    assert r.json() == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_streamed_response_arrives_chunk_by_chunk(start_server):
    """(c) a generator that gevent.sleeps between chunks: each chunk leaves as it is made."""
    s = gevent_server(start_server)
    with s.conn() as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/stream?n=5&size=16&pause=0.3", close=True))
        head = c.read_head()
        first = c.read_until(b"x" * 8)
        t_first = time.monotonic() - t0
        rest = c.read_to_eof()
        t_all = time.monotonic() - t0
    assert head.status == 200 and head.header("transfer-encoding") == "chunked"
    assert b"00000000" in first and b"00000004" in rest
    print("\nstreamed: first chunk at %.2f s, all at %.2f s" % (t_first, t_all))
    assert t_first < 0.3 and t_all >= 1.2


def test_slow_reader_does_not_make_the_worker_buffer(start_server):
    """(c) back-pressure: 256 MiB streamed to a client that stops reading: the generator
    waits (a few MiB ahead at most) and the worker's RSS stays flat; then it all arrives."""
    s = gevent_server(start_server)
    (w,) = s.wait_workers(1)
    s.get("/stream?n=10&size=65536&pause=0")     # warm up the allocator
    base = rss_kib(w)
    n, size = 4096, 65536
    with s.conn(timeout=60) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.send(build_request("GET", "/stream?n=%d&size=%d&pause=0&id=slow" % (n, size),
                             close=True))
        c.read_head()
        c.read_exact(1024 * 1024)
        time.sleep(2)                                 # the client stops reading
        produced = int(s.get("/produced?id=slow").body)
        grown = rss_kib(w) - base
        total = 1024 * 1024 + len(c.buf) + drain(c.sock, 60)
    print("\nslow reader: %d of %d chunks produced while it paused, RSS +%d KiB" % (
        produced, n, grown))
    assert produced * size < 32 * 1024 * 1024, "generator ran %d chunks ahead" % produced
    assert grown < 48 * 1024, "worker RSS grew %d KiB for a stalled client" % grown
    # chunked framing adds a few bytes per chunk
    assert total >= n * size


def test_sleeping_greenlet_past_timeout_gets_504_and_its_stack_logged(start_server):
    """A greenlet asleep past timeout: 504 at timeout, its stack (gr_frame) in the error
    log, the greenlet killed — and the worker, whose hub is fine, keeps serving."""
    s = gevent_server(start_server, "-t", "2")
    (w,) = s.wait_workers(1)
    t0 = time.monotonic()
    r = s.get("/hang", timeout=10)
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert 1.9 <= took < 3.0, "504 after %.2f s with -t 2" % took
    s.wait_log(r"greenlet, past its timeout.*\n(?:.*\n)*?.*in sleep_here_forever", timeout=3)
    time.sleep(1.5)                            # past the master's own deadline check
    r = s.get("/pid")
    assert r.status == 200 and int(r.body) == w
    assert "WORKER TIMEOUT" not in s.stderr()


def test_cpu_bound_greenlet_gets_504_and_the_worker_is_replaced(start_server):
    """A CPU loop blocks the whole hub: 504 at timeout (the deadline thread needs no hub),
    then the master's deadline check replaces the worker, with the loop's traceback."""
    s = gevent_server(start_server, "-t", "2")
    (w,) = s.wait_workers(1)
    t0 = time.monotonic()
    r = s.get("/spin", timeout=10)
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert 1.9 <= took < 3.0, "504 after %.2f s with -t 2" % took
    s.wait_log(r"WORKER TIMEOUT \(pid:%d\)" % w, timeout=5)
    s.wait_log(r'File "[^"]*geventapp\.py", line \d+ in spin_here_forever', timeout=5)
    assert wait_for(lambda: not alive(w), 4), "worker %d alive after its timeout" % w
    r = s.wait_ready(timeout=15, path="/pid")
    assert r.status == 200 and int(r.body) != w


def test_hub_blocked_without_a_request_misses_its_heartbeat(start_server):
    """A greenlet spinning outside any request (no request deadline to see it) stops the
    hub's heartbeat: the master replaces the worker."""
    s = gevent_server(start_server, "-t", "2")
    (w,) = s.wait_workers(1)
    assert s.get("/spin-later").status == 200
    s.wait_log(r"WORKER TIMEOUT \(pid:%d\)[^\n]*heartbeat" % w, timeout=6)
    assert wait_for(lambda: not alive(w), 4), "worker %d alive after its timeout" % w
    r = s.wait_ready(timeout=15, path="/pid")
    assert r.status == 200 and int(r.body) != w


def test_max_requests_recycles_gevent_workers(start_server):
    s = gevent_server(start_server, "--max-requests", "20")
    (w,) = s.wait_workers(1)
    results, _ = concurrent_gets(s.addr, "/sleep?s=0.05", 30, timeout=20)
    assert results == [200] * 30, results
    assert wait_for(lambda: s.workers() and w not in s.workers(), 10), \
        "worker %d not replaced after max_requests" % w
    assert s.wait_ready(path="/pid").status == 200


def test_quit_lets_a_long_poll_finish(start_server):
    s = gevent_server(start_server, "--graceful-timeout", "10")
    s.wait_workers(1)
    out = {}

    def poll():
        out["r"] = s.get("/sleep?s=3", timeout=15)
    t = threading.Thread(target=poll)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.5)
    s.signal(signal.SIGQUIT)
    t.join(15)
    code = s.wait_exit(15)
    r = out.get("r")
    assert r is not None and r.status == 200 and r.body == b"slept\n", r
    assert r.header("connection") == "close"
    assert 2.9 <= time.monotonic() - t0
    assert code == 0, s.stderr()[-3000:]


def test_threads_with_gevent_is_said_not_silently_ignored(start_server):
    s = gevent_server(start_server, "--threads", "4")
    assert "threads = 4 is not used with worker_class = gevent" in s.stderr()
