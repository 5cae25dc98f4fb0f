"""Limits on a request, each answered with its status while the worker lives on:
limit_request_line (414), limit_request_fields and limit_request_field_size (431),
limit_request_body (413), header_timeout (a head sent too slowly is cut off, counted from
its first byte) apart from keepalive (the wait for a request), and garbage where a request
should be (400).

Elsewhere: worker_connections and slow clients, test_concurrency.py; the strict parsing
rules, test_strict.py; the open-file limit, tests/master/test_open_files.py."""

import time

import pytest

from harness import build_request, chunked


def _worker_pid(s):
    r = s.get("/pid")
    assert r.status == 200
    return int(r.body)


def _raw_exchange(s, data, timeout=5):
    with s.conn() as c:
        c.send(data)
        r = c.read_response(timeout=timeout)
        closed = c.closed_by_peer(timeout=5)
    return r, closed


def test_limit_request_line_414(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "--limit-request-line", "200")
    pid = _worker_pid(s)
    ok = s.get("/osenv?k=" + "A" * 100)
    assert ok.status == 200, "a request line under the limit was refused"
    r, _ = _raw_exchange(s, build_request("GET", "/osenv?k=" + "A" * 400))
    assert r.status == 414, r
    assert _worker_pid(s) == pid, "worker replaced after a 414"


def test_limit_request_fields_431(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "--limit-request-fields", "10")
    pid = _worker_pid(s)
    ok = s.get("/hello", headers=[("X-H%d" % i, "v") for i in range(5)])
    assert ok.status == 200
    r, _ = _raw_exchange(s, build_request("GET", "/hello",
                                          [("X-H%d" % i, "v") for i in range(30)]))
    assert r.status == 431, r
    assert _worker_pid(s) == pid


def test_limit_request_field_size_431(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "--limit-request-field_size", "200")
    pid = _worker_pid(s)
    ok = s.get("/hello", headers=[("X-Small", "v" * 100)])
    assert ok.status == 200
    r, _ = _raw_exchange(s, build_request("GET", "/hello", [("X-Big", "v" * 1000)]))
    assert r.status == 431, r
    assert _worker_pid(s) == pid


@pytest.mark.unitcorn_only("hyper's own limits (its 65534-byte target, its header count)")
def test_heads_hyper_refuses_are_logged_with_the_status_it_answered(start_server, tmp_path):
    """Heads hyper refuses itself, before the app: a target longer than hyper takes (with
    limit_request_line off) is 414, more header lines than limit_request_fields is 431;
    the access log has the status the client got, the error log says why."""
    log = tmp_path / "access.log"
    s = start_server("wsgiapp:app", "-w", "1", "--limit-request-line", "0",
                     "--limit-request-fields", "10", "--access-logfile", str(log),
                     "--access-logformat", "%(s)s %(r)s")
    pid = _worker_pid(s)
    r, closed = _raw_exchange(s, build_request("GET", "/hello?k=" + "A" * 70000))
    assert r.status == 414 and closed, r
    r, closed = _raw_exchange(s, build_request("GET", "/hello",
                                               [("X-H%d" % i, "v") for i in range(30)]))
    assert r.status == 431 and closed, r
    s.wait_log(r"Invalid request from ip=127\.0\.0\.1: URI too long")
    s.wait_log(r"Invalid request from ip=127\.0\.0\.1: message head is too large")
    lines = [ln for ln in log.read_text().splitlines() if not ln.startswith("200 ")]
    assert lines == ["414 - - -", "431 - - -"], lines
    assert _worker_pid(s) == pid


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


def _trickle(c, parts, seconds):
    """Send `parts` spread over `seconds`; the time the last one went out."""
    for part in parts:
        time.sleep(seconds / len(parts))
        c.send(part)
    return time.monotonic()


@pytest.mark.unitcorn_only("header_timeout is unitcorn's own setting")
def test_a_head_trickled_past_keepalive_completes_within_header_timeout(start_server):
    """--keep-alive 2 --header-timeout 10: the head's clock runs from its first byte, not
    from the connection's start or the previous response, so a head that takes 5 s is
    served, on a new connection and on a kept-alive one after an idle second."""
    s = start_server("wsgiapp:app", "-w", "1", "--keep-alive", "2", "--header-timeout", "10")
    head = [b"GET /hello HTTP/1.1\r\n", b"Host: x\r\n"] + \
        [b"X-Slow-%d: y\r\n" % i for i in range(8)] + [b"\r\n"]
    with s.conn(timeout=15) as c:
        t0 = time.monotonic()
        _trickle(c, head, 5.0)
        r = c.read_response(timeout=5)
        assert r.status == 200 and r.body == b"Hello, World!\n", r
        assert time.monotonic() - t0 >= 4.5
        time.sleep(1.0)
        _trickle(c, head, 5.0)
        r = c.read_response(timeout=5)
        assert r.status == 200 and r.body == b"Hello, World!\n", r


@pytest.mark.unitcorn_only("header_timeout is unitcorn's own setting")
def test_a_head_unfinished_at_header_timeout_is_closed_unanswered(start_server):
    """--keep-alive 2 --header-timeout 4: a head whose bytes keep coming is cut off ≈4 s
    after its first byte (not at keepalive), with no response, on a kept-alive connection
    too."""
    s = start_server("wsgiapp:app", "-w", "1", "--keep-alive", "2", "--header-timeout", "4")
    with s.conn(timeout=15) as c:
        c.send(build_request("GET", "/hello"))
        assert c.read_response().status == 200
        time.sleep(1.0)
        t0 = time.monotonic()
        c.send(b"GET /hello HTTP/1.1\r\n")
        closed_at = None
        for i in range(40):
            time.sleep(0.25)
            try:
                c.send(b"X-Slow-%d: y\r\n" % i)
            except OSError:
                closed_at = time.monotonic() - t0
                break
            if c.closed_by_peer(timeout=0.01):
                closed_at = time.monotonic() - t0
                break
        assert closed_at is not None, "a head trickled for 10 s was not cut off"
        assert 3.5 <= closed_at <= 5.5, "cut off after %.2f s, header_timeout is 4 s" % closed_at
        assert c.buf == b"", "a response was sent: %r" % c.buf


@pytest.mark.unitcorn_only("header_timeout is unitcorn's own setting")
def test_an_idle_connection_closes_at_keepalive_not_header_timeout(start_server):
    """--keep-alive 2 --header-timeout 10: a connection that sends nothing, new or after a
    response, is closed after ≈2 s, the idle clock's."""
    s = start_server("wsgiapp:app", "-w", "1", "--keep-alive", "2", "--header-timeout", "10")
    with s.conn(timeout=15) as c:
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=8), "a new idle connection was not closed within 8 s"
        fresh = time.monotonic() - t0
    with s.conn(timeout=15) as c:
        c.send(build_request("GET", "/hello"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=8), "an idle kept-alive connection was not closed"
        kept = time.monotonic() - t0
    assert 1.5 <= fresh <= 3.5 and 1.5 <= kept <= 3.5, (fresh, kept)


@pytest.mark.parametrize("garbage", [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
], ids=["binary", "words", "header-no-colon", "bad-content-length"])
def test_garbage_request_400_and_worker_survives(start_server, garbage):
    s = start_server("wsgiapp:app", "-w", "1")
    pid = _worker_pid(s)
    r, closed = _raw_exchange(s, garbage)
    assert r.status == 400, r
    assert closed, "connection left open after a 400 on a malformed request"
    assert _worker_pid(s) == pid
    assert s.get("/hello").body == b"Hello, World!\n"
