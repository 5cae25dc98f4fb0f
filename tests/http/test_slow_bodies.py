"""Slow request bodies: body_timeout (the longest gap between body bytes) and
body_min_rate (a body trickled a byte at a time is cut off after about body_timeout), both
408 before the app; a WSGI body read whole before the app is called (in memory up to
body_buffer_size, then spooled to an unlinked temporary file in tmp_upload_dir up to
body_spool_size, the rest then streamed), so that dripping clients never hold a sync
worker's one app slot, thousands of them included.

Elsewhere: the same per worker class, tests/workers/test_parity.py; limit_request_body,
test_limits.py; head trickling, test_concurrency.py and test_limits.py."""

import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import time

import pytest

from harness import VENV, build_request, chunked, wait_for

pytestmark = pytest.mark.unitcorn_only("body_timeout, body_min_rate and spooling are unitcorn's")


def _hash_response(r, body):
    assert r.status == 200, r
    assert json.loads(r.body) == {"length": len(body),
                                  "sha256": hashlib.sha256(body).hexdigest()}, r


def _config(tmp_path, text):
    path = tmp_path / "unitcorn.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def _files_open_in(pid, directory):
    """The worker's descriptors open on a file under `directory` (named or not)."""
    out = []
    fds = "/proc/%d/fd" % pid
    for fd in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, fd))
        except OSError:
            continue
        if target.startswith(str(directory) + "/"):
            out.append(target)
    return out


def test_a_body_trickled_a_byte_at_a_time_is_408_after_about_body_timeout(start_server):
    """--body-timeout 3 and the default body_min_rate (500 bytes/s): one byte every 0.5 s
    is never a 3 s gap, but it is far behind the rate, so the client is answered 408 and
    dropped ≈3 s into its body; the app is never called."""
    s = start_server("countapp:app", "-w", "1", "--body-timeout", "3")
    before = int(s.get("/count").body)
    with s.conn(timeout=15) as c:
        c.send(build_request("POST", "/echo", [("Content-Length", "1000")]))
        t0 = time.monotonic()
        got = None
        for _ in range(30):
            try:
                c.send(b"x")
            except OSError:
                break
            if not c.nothing_within(0.5):
                got = time.monotonic() - t0
                break
        assert got is not None, "a body trickled for 15 s was not cut off"
        r = c.read_response(timeout=5)
        assert r.status == 408, r
        assert 2.5 <= got <= 5, "408 after %.2f s with a 3 s body_timeout" % got
        assert c.closed_by_peer(timeout=5)
    s.wait_log(r"Invalid request from ip=127\.0\.0\.1: request body timed out: the client "
               r"sent its request body slower than body_min_rate \(500 bytes/s\)")
    assert int(s.get("/count").body) == before + 1, "the app saw the trickled request"


def test_body_timeout_is_the_longest_gap_between_body_bytes(start_server):
    """--body-min-rate 0 --body-timeout 2: a body with 1.2 s pauses arrives whole; one that
    stops for 2 s is answered 408."""
    s = start_server("wsgiapp:app", "-w", "1", "--body-min-rate", "0", "--body-timeout", "2")
    body = b"a" * 300 + b"b" * 300 + b"c" * 300
    with s.conn(timeout=15) as c:
        c.send(build_request("POST", "/hash", [("Content-Length", str(len(body)))]))
        for i in range(3):
            time.sleep(1.2)
            c.send(body[300 * i:300 * (i + 1)])
        _hash_response(c.read_response(timeout=5), body)
    with s.conn(timeout=15) as c:
        c.send(build_request("POST", "/hash", [("Content-Length", "100")]) + b"x" * 10)
        t0 = time.monotonic()
        r = c.read_response(timeout=10)
        took = time.monotonic() - t0
        assert r.status == 408 and 1.8 <= took <= 4, (r, took)
    s.wait_log(r"request body timed out: the client sent no request body data for 2s "
               r"\(body_timeout\)")


def test_a_slow_large_body_is_spooled_while_the_sync_worker_serves_on(start_server, tmp_path):
    """-w 1 --threads 1, a 300 kB body stopped halfway: the app is not called yet, the
    received part is in an unlinked file in tmp_upload_dir, and the one app slot serves
    another client at once. The rest arrives: the app reads the body exact, and the file
    is gone with the request."""
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = _config(tmp_path, 'tmp_upload_dir = "%s"\n' % spool)
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "1", "-c", cfg)
    worker = s.wait_workers(1)[0]
    body = os.urandom(300_000)
    with s.conn(timeout=15) as c:
        c.send(build_request("POST", "/hash", [("Content-Length", str(len(body)))]))
        c.send(body[:150_000])
        assert wait_for(lambda: _files_open_in(worker, spool), 5), "nothing spooled"
        assert os.listdir(spool) == [], "the spool file has a name"
        t0 = time.monotonic()
        r = s.get("/hello", timeout=5)
        assert r.status == 200 and time.monotonic() - t0 < 0.5, "the half-sent body held the worker"
        assert c.nothing_within(0.5), "the app answered before the body was in"
        c.send(body[150_000:])
        _hash_response(c.read_response(timeout=10), body)
    assert wait_for(lambda: not _files_open_in(worker, spool), 5), "the spool file stayed open"


def test_a_body_past_body_spool_size_is_spooled_then_read_as_it_arrives(start_server):
    """--body-buffer-size 1000 --body-spool-size 100000: a 250 kB chunked body is held in
    memory, then in a file, then read by the app from the connection; it gets it exact,
    on one thread and on a pool thread."""
    body = os.urandom(250_000)
    parts = [body[i:i + 25_000] for i in range(0, len(body), 25_000)]
    for threads in ("1", "4"):
        s = start_server("wsgiapp:app", "-w", "1", "--threads", threads,
                         "--body-buffer-size", "1000", "--body-spool-size", "100000")
        with s.conn(timeout=15) as c:
            c.send(build_request("POST", "/hash", [("Transfer-Encoding", "chunked")])
                   + chunked(parts))
            _hash_response(c.read_response(timeout=10), body)


def test_a_body_that_cannot_be_spooled_is_503_and_logged(start_server, tmp_path):
    cfg = _config(tmp_path, 'tmp_upload_dir = "%s"\n' % (tmp_path / "missing"))
    s = start_server("wsgiapp:app", "-w", "1", "-c", cfg)
    r = s.request("POST", "/hash", body=b"x" * 100_000)
    assert r.status == 503, r
    s.wait_log(r"Error handling request: cannot spool a request body to a temporary file "
               r"in %s \(tmp_upload_dir\): No such file or directory"
               % (tmp_path / "missing"))
    assert s.get("/hello").status == 200


# ----- thousands of dripping clients

DRIPPER = textwrap.dedent("""
    import resource, select, socket, sys, time
    port, n, every, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 500), hard))
    # Half the clients declare a small body (read ahead in memory), half a large one
    # (spooled): each sends its head and one body byte, then a byte every `every` s.
    heads = [b"POST /echo HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: %d\\r\\n\\r\\nx" % size
             for size in (1000, 1 << 20)]
    socks = {}
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks[s.fileno()] = [s, heads[i % 2], None]     # socket, unsent, answer
    poll = select.poll()
    for fd in socks:
        poll.register(fd, select.POLLOUT | select.POLLIN)
    t0 = time.monotonic()
    unsent = n
    while unsent and time.monotonic() - t0 < 20:
        for fd, ev in poll.poll(1000):
            entry = socks[fd]
            if ev & select.POLLOUT and entry[1]:
                entry[1] = entry[1][entry[0].send(entry[1]):]
                if not entry[1]:
                    unsent -= 1
                    poll.modify(fd, select.POLLIN)
    print("connected", unsent, flush=True)
    # Drip; read each answer as it comes (an answered client drips no more).
    start = time.monotonic()
    next_drip = start + every
    while time.monotonic() - start < seconds:
        for fd, ev in poll.poll(100):
            entry = socks[fd]
            try:
                data = entry[0].recv(4096)
            except OSError:
                data = b""
            entry[2] = (data[:12].decode("latin-1") or "closed", round(time.monotonic() - start, 2))
            poll.unregister(fd)
        if time.monotonic() >= next_drip:
            next_drip += every
            for entry in socks.values():
                if entry[2] is None:
                    try:
                        entry[0].send(b"x")
                    except OSError:
                        pass
    answers = [entry[2] for entry in socks.values()]
    statuses = {}
    for a in answers:
        key = a[0] if a else "open"
        statuses[key] = statuses.get(key, 0) + 1
    last = max((a[1] for a in answers if a), default=None)
    print("done", statuses, last, flush=True)
""")


def _normal_latencies(s, until):
    """GET /hello on fresh connections, one at a time, until `until()`: latencies in ms
    (a request that fails or takes over 2 s counts as 2000)."""
    out = []
    for _ in range(2000):
        if until():
            break
        t0 = time.perf_counter()
        try:
            ok = s.get("/hello", timeout=2).status == 200
        except OSError:
            ok = False
        out.append((time.perf_counter() - t0) * 1000 if ok else 2000.0)
        time.sleep(0.02)
    return out


def _drip(s, n, every, seconds):
    """Run the dripper against `s` while a normal client measures: (latencies in ms, the
    dripper's report: {status line or 'open': count}, time of the last answer)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 500:
        pytest.skip("the open-file limit (%d) is too low for %d clients" % (hard, n))
    dripper = subprocess.Popen([str(VENV / "bin" / "python"), "-c", DRIPPER, str(s.addr[1]),
                                str(n), str(every), str(seconds)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = dripper.stdout.readline().split()
        assert line == ["connected", "0"], (line, dripper.stderr.read())
        latencies = _normal_latencies(s, lambda: dripper.poll() is not None)
        out, err = dripper.communicate(timeout=seconds + 30)
    finally:
        if dripper.poll() is None:
            dripper.kill()
            dripper.wait(10)
    assert dripper.returncode == 0, err
    report = out.strip().split(" ", 1)[1]
    return latencies, report


def _figures(ms):
    ms = sorted(ms)
    return {"n": len(ms), "p50": round(statistics.median(ms), 2),
            "p99": round(ms[int(len(ms) * 0.99) - 1], 2), "max": round(ms[-1], 2)}


def test_two_thousand_dripping_clients_do_not_delay_the_others(start_server):
    """-w 1 --threads 1, default body settings: 2000 clients send a head with a
    Content-Length (1000 bytes or 1 MiB) and then a body byte every 2 s. Their bodies are
    read by the I/O loop (the large ones spooled), never by the one app thread, so a normal
    client's p99 stays under 100 ms throughout."""
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "1",
                     "--worker-connections", "2500")
    latencies, report = _drip(s, 2000, 2.0, 8.0)
    figures = _figures(latencies)
    print("\nnormal client with 2000 dripping, ms: %s; dripper: %s" % (figures, report),
          file=sys.stderr)
    assert figures["n"] >= 50 and figures["p99"] < 100, (figures, report)
    assert report.startswith("{'open': 2000}"), report


def test_two_thousand_dripping_clients_are_cut_off_at_body_timeout(start_server):
    """--body-timeout 4: the same 2000 dripping clients are all answered 408 about 4 s
    into their bodies (they are far behind body_min_rate), and the burst of refusals does
    not delay a normal client past 100 ms at p99 either."""
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "1",
                     "--worker-connections", "2500", "--body-timeout", "4")
    latencies, report = _drip(s, 2000, 2.0, 9.0)
    figures = _figures(latencies)
    print("\nnormal client with 2000 dripping cut at 4 s, ms: %s; dripper: %s"
          % (figures, report), file=sys.stderr)
    assert figures["n"] >= 50 and figures["p99"] < 100, (figures, report)
    statuses, last = report.rsplit(" ", 1)
    assert statuses == "{'HTTP/1.1 408': 2000}", report
    assert float(last) <= 7.5, "the last dripper was answered after %s s" % last
