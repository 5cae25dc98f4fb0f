"""HTTP/1.1 over raw sockets: HTTP/1.0, pipelining, an unread request body skipped before
the next request, chunked request bodies, Expect: 100-continue, streamed responses, HEAD,
204/304.

Elsewhere in tests/http/: keep-alive, test_keepalive.py; limits and garbage (400/413/414/431,
header_timeout), test_limits.py; the strict parsing rules of RFC 9110/9112, test_strict.py."""

import time

import pytest

from harness import build_request, chunked


def test_http10_response_and_close(start_server):
    s = start_server()
    with s.conn() as c:
        c.send(build_request("GET", "/hello", version="HTTP/1.0"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"Hello, World!\n"
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        assert c.closed_by_peer(timeout=5), "HTTP/1.0 request without keep-alive left open"


def test_http10_without_host_header(start_server):
    s = start_server()
    with s.conn() as c:
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!\n"


def test_pipelining_three_requests_in_one_send(start_server):
    s = start_server()
    with s.conn() as c:
        c.send(build_request("GET", "/hello")
               + build_request("POST", "/echo?via=read", body=b"second-body")
               + build_request("GET", "/osenv?k=NO_SUCH_VAR_XYZ"))
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
    assert (r1.status, r1.body) == (200, b"Hello, World!\n")
    assert (r2.status, r2.body) == (200, b"second-body")
    assert (r3.status, r3.body) == (200, b"<unset>")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_unread_request_body_is_skipped_before_next_request(start_server, framing):
    """The app ignores a request body: the next request on the connection is still parsed
    right (the body is drained, or the connection is closed — never read as a request)."""
    s = start_server("wsgiapp:app", "--keep-alive", "5")
    body = b"GET /osenv?k=SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n" + b"z" * 20000
    if framing == "chunked":
        first = build_request("POST", "/ignore_body", [("Transfer-Encoding", "chunked")]) + \
            chunked([body[:1000], body[1000:]])
    else:
        first = build_request("POST", "/ignore_body", body=body)
    with s.conn() as c:
        c.send(first + build_request("GET", "/hello"))
        r1 = c.read_response()
        assert r1.status == 200 and r1.body == b"ignored"
        try:
            r2 = c.read_response(timeout=5)
        except Exception:
            assert c.eof, "neither a response nor a close after an unread body"
            return
    assert r2.status == 200 and r2.body == b"Hello, World!\n", r2


def test_chunked_request_body_echoed(start_server):
    s = start_server()
    parts = [b"hello ", b"chunked", b" world\n", b"x" * 5000]
    with s.conn() as c:
        c.send(build_request("POST", "/echo?via=read",
                             [("Transfer-Encoding", "chunked")]) + chunked(parts))
        r = c.read_response()
    assert r.status == 200
    assert r.body == b"".join(parts)


def test_chunked_request_body_sent_slowly(start_server):
    """Chunks that arrive over time are all delivered to the app."""
    s = start_server()
    with s.conn() as c:
        c.send(build_request("POST", "/echo?via=read", [("Transfer-Encoding", "chunked")]))
        for p in (b"one,", b"two,", b"three"):
            time.sleep(0.2)
            c.send(b"%x\r\n%s\r\n" % (len(p), p))
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.body == b"one,two,three"


def test_expect_100_continue_when_app_reads_body(start_server):
    s = start_server()
    body = b"body-after-100"
    with s.conn() as c:
        c.send(build_request("POST", "/echo?via=read",
                             [("Content-Length", str(len(body))), ("Expect", "100-continue")]))
        head = c.read_until(b"\r\n\r\n", timeout=5)
        assert head.startswith(b"HTTP/1.1 100"), head
        c.send(body)
        r = c.read_response()
    assert r.status == 200
    assert r.body == body


@pytest.mark.unitcorn_only("gunicorn sends 100 Continue before calling the app")
def test_expect_100_continue_not_sent_when_app_ignores_body(start_server):
    s = start_server()
    with s.conn() as c:
        c.send(build_request("POST", "/ignore_body",
                             [("Content-Length", "1000"), ("Expect", "100-continue")]))
        r = c.read_response(timeout=5)
    assert r.status == 200, r
    assert r.interim == [], "a 100 Continue was sent although the app never read the body"
    assert r.body == b"ignored"


def test_streamed_response_first_chunk_before_generator_sleeps(start_server):
    s = start_server()
    with s.conn() as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/stream?n=3&delay=1.5", close=True))
        head = c.read_until(b"\r\n\r\n", timeout=5)
        assert b" 200 " in head.split(b"\r\n")[0]
        # the first chunk ("chunk 0") must arrive while the generator sleeps 1.5 s
        c.read_until(b"chunk 0\n", timeout=5)
        t_first = time.monotonic() - t0
        c.read_until(b"chunk 1\n", timeout=5)
        t_second = time.monotonic() - t0
        c.read_until(b"chunk 2\n", timeout=5)
        t_third = time.monotonic() - t0
    assert t_first < 1.0, "first chunk arrived after %.2f s (held back)" % t_first
    assert 1.2 <= t_second < 2.7, t_second
    assert t_third >= 2.7, t_third


def test_streamed_response_body_is_complete(start_server):
    s = start_server()
    r = s.get("/stream?n=4&delay=0.05")
    assert r.status == 200 and r.complete
    assert r.body == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n"


def test_head_has_headers_but_no_body(start_server):
    s = start_server()
    get = s.get("/hello")
    with s.conn() as c:
        c.send(build_request("HEAD", "/hello", close=True))
        head = c.read_until(b"\r\n\r\n")
        rest = c.read_to_eof(timeout=5)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"\r\ncontent-length: 14\r\n" in head.lower(), head
    assert rest == b"", "HEAD response carried a body: %r" % rest
    assert get.header("content-length") == "14"


def test_head_then_get_on_keepalive_connection(start_server):
    s = start_server()
    with s.conn() as c:
        c.send(build_request("HEAD", "/hello") + build_request("GET", "/hello"))
        h = c.read_response("HEAD")
        g = c.read_response("GET")
    assert h.status == 200 and h.body == b""
    assert g.status == 200 and g.body == b"Hello, World!\n"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(start_server, code):
    s = start_server()
    with s.conn() as c:
        # pipelined: anything the server wrongly sends as a body (e.g. a chunked
        # terminator) would corrupt the next response on the connection
        c.send(build_request("GET", "/status?code=%d" % code) + build_request("GET", "/hello"))
        r = c.read_response()
        assert r.status == code
        assert r.header("transfer-encoding") is None, r.headers
        assert r.header("x-status") == str(code)
        nxt = c.read_response()
    assert nxt.status == 200 and nxt.body == b"Hello, World!\n", nxt
