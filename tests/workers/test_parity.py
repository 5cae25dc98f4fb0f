"""Issue 13, Must have 2: one request pipeline for every worker class. Each case runs the
same request against the four classes — sync (one thread: the app runs inline), gthread
(`--threads 4`), gevent (`-k gevent`) and ASGI (`-k asgi`) — and expects the same answer
and the same error log line naming the app's mistake:

- request body intake: `limit_request_body` → 413 (declared, a chunked body that grows
  past it before the app, and one that grows past it while the app reads it); a stalled
  body → 408 within body_timeout, a trickled one (behind body_min_rate) → 408 about
  body_timeout into it; a body past body_buffer_size reaches the app exact (spooled for
  WSGI, streamed for ASGI);
- the response head check: hop-by-hop headers from the app dropped; a Content-Length the
  body does not match closes the connection; a bad status, bad headers, a bad
  Content-Length, the head given twice, a body that is not bytes → 500;
- the deadline table: an app that hangs past `--timeout` → 504;
- the request hooks: pre_request/post_request called, with the same arguments.

The apps are tests/apps/parity_wsgi.py (sync, gthread, gevent) and parity_asgi.py, the
same routes making the same mistakes in each protocol's terms. Where a class differs by
design (WSGI has no WebSocket; the wording of a protocol's own mistake), the case says so
in its table, with the reason.
"""

import re
import textwrap
import time

import pytest

from conftest import addr_of
from harness import (APPS, Server, alive, base_env, build_request, chunked, free_port,
                     pgrp_members, server_cmd)

pytestmark = pytest.mark.unitcorn_only("unitcorn's worker classes and error log lines")

# class -> (app, arguments)
CLASSES = {
    "sync": ("parity_wsgi:app", []),
    "gthread": ("parity_wsgi:app", ["--threads", "4"]),
    "gevent": ("parity_wsgi:app", ["-k", "gevent"]),
    "asgi": ("parity_asgi:app", ["-k", "asgi"]),
}
KINDS = list(CLASSES)


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    """serve(kind, *args) -> a running server of that class with those arguments, started
    once per module and shared by the cases that ask for the same; all killed at the end,
    and a process left alive fails the module."""
    started = {}

    def get(kind, *args):
        key = (kind,) + tuple(str(a) for a in args)
        if key not in started:
            app, class_args = CLASSES[kind]
            bind = "127.0.0.1:%d" % free_port()
            cmd = list(server_cmd()) + ["-b", bind, "-w", "1"] + class_args + list(key[1:])
            cmd.append(app)
            logdir = tmp_path_factory.mktemp("parity-%s" % kind)
            s = Server(cmd, base_env(), APPS, logdir, addr=addr_of(bind), name=kind)
            started[key] = s
            s.wait_ready(timeout=60)
        return started[key]

    yield get
    leaks = []
    for s in started.values():
        s.kill_all()
        leaks += [p for p in set(pgrp_members(s.pid)) | s._seen if alive(p)]
    assert not leaks, "processes left after the tests: %r" % leaks


def plain(serve, kind):
    """The class's server with a small limit_request_body (the other cases do not mind)."""
    return serve(kind, "--limit-request-body", "1000", "--keep-alive", "5")


def closed_after(s, request, method="GET"):
    """Send `request` on a keep-alive connection: (response, closed by the server after)."""
    with s.conn() as c:
        c.send(request)
        r = c.read_response(method)
        return r, c.closed_by_peer(timeout=5)


# ------------------------------------------------------------------ request body intake

@pytest.mark.parametrize("kind", KINDS)
def test_limit_request_body_413_declared_and_chunked(serve, kind):
    s = plain(serve, kind)
    ok = s.request("POST", "/echo", body=b"x" * 1000)
    assert (ok.status, ok.body) == (200, b"got 1000"), ok
    r, closed = closed_after(s, build_request("POST", "/echo", [("Content-Length", "1001")]))
    assert r.status == 413 and (r.header("connection") or "").lower() == "close", r
    assert closed
    # Chunked, growing past the limit while it is read ahead: the same 413, the same log.
    before = len(s.log_findall(r"Invalid request from ip=127\.0\.0\.1: request body too large"))
    r, closed = closed_after(s, build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                             + chunked([b"y" * 600, b"y" * 600]))
    assert r.status == 413 and closed, r
    s.wait_log(r"Invalid request from ip=127\.0\.0\.1: request body too large", count=before + 1)
    assert s.get("/hello").body == b"Hello, parity\n"


@pytest.mark.parametrize("kind", KINDS)
def test_stalled_body_is_408_within_the_body_timeout(serve, kind):
    s = serve(kind, "-t", "2", "--body-timeout", "2")
    with s.conn(timeout=15) as c:
        c.send(build_request("POST", "/echo", [("Content-Length", "100")]) + b"z" * 50)
        t0 = time.monotonic()
        r = c.read_response(timeout=15)
        took = time.monotonic() - t0
        assert r.status == 408, r
        assert 1.5 <= took < 5, "408 after %.2f s with a 2 s body timeout" % took
        assert c.closed_by_peer(timeout=5)
    s.wait_log(r"Invalid request from ip=127\.0\.0\.1: request body timed out")


@pytest.mark.parametrize("kind", KINDS)
def test_a_trickled_body_is_408_about_body_timeout_into_it(serve, kind):
    s = serve(kind, "-t", "2", "--body-timeout", "2")
    with s.conn(timeout=15) as c:
        c.send(build_request("POST", "/echo", [("Content-Length", "100")]))
        t0 = time.monotonic()
        for _ in range(30):
            c.send(b"z")
            if not c.nothing_within(0.4):
                break
        took = time.monotonic() - t0
        r = c.read_response(timeout=5)
        assert r.status == 408, r
        assert 1.5 <= took < 4, "408 after %.2f s with a 2 s body timeout" % took
        assert c.closed_by_peer(timeout=5)
    s.wait_log(r"Invalid request from ip=127\.0\.0\.1: request body timed out: the client "
               r"sent its request body slower than body_min_rate \(500 bytes/s\)")


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_past_body_buffer_size_reaches_the_app_exact(serve, kind):
    s = serve(kind, "-t", "2", "--body-timeout", "2")
    for headers, body in (([("Content-Length", "300000")], b"q" * 300000),
                          ([("Transfer-Encoding", "chunked")], chunked([b"q" * 100000] * 3))):
        with s.conn(timeout=15) as c:
            c.send(build_request("POST", "/echo", headers) + body)
            r = c.read_response(timeout=10)
            assert (r.status, r.body) == (200, b"got 300000"), r


@pytest.mark.parametrize("spooling", ["spooled", "unspooled"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_body_growing_past_limit_request_body_is_413(serve, kind, spooling):
    """Spooled, the body grows past the limit before the app runs; unspooled
    (--body-spool-size 0), while the app reads it (past the 64 KiB read ahead): the app's
    read fails, and the client gets the same 413, not the app's 500."""
    extra = ["--body-spool-size", "0"] if spooling == "unspooled" else []
    s = serve(kind, "--limit-request-body", "100000", *extra)
    before = len(s.log_findall(r"Invalid request from ip=127\.0\.0\.1: request body too large"))
    r, closed = closed_after(s, build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                             + chunked([b"y" * 70000, b"y" * 70000]))
    assert r.status == 413 and closed, r
    s.wait_log(r"Invalid request from ip=127\.0\.0\.1: request body too large", count=before + 1)
    assert "Error handling request" not in s.stderr()
    assert s.get("/hello").body == b"Hello, parity\n"


# -------------------------------------------------------------- the response head check

HOP_BY_HOP = [("Connection", "x-parity"), ("Transfer-Encoding", "chunked"),
              ("Keep-Alive", "timeout=77"), ("Upgrade", "x-parity/1")]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name,value", HOP_BY_HOP, ids=[h for h, _ in HOP_BY_HOP])
def test_hop_by_hop_header_from_the_app_is_dropped(serve, kind, name, value):
    s = plain(serve, kind)
    r = s.get("/hop?h=%s" % name)
    assert r.status == 200 and r.body == b"hop\n" and r.complete, r
    assert r.header("x-kept") == "yes", r
    # The server's own framing and connection headers only: never the app's.
    assert all(value not in v for v in r.header_all(name)), r
    if name != "Connection":
        assert r.header(name) is None, r


@pytest.mark.parametrize("kind", KINDS)
def test_body_longer_than_content_length_closes_the_connection(serve, kind):
    s = plain(serve, kind)
    r, closed = closed_after(s, build_request("GET", "/cl_long"))
    assert r.status == 200 and r.header("content-length") == "5" and r.body == b"01234", r
    assert (r.header("connection") or "").lower() == "close", r
    assert closed
    s.wait_log(r"the app's response body \(10 bytes\) is longer than its Content-Length "
               r"\(5 bytes\)")


@pytest.mark.parametrize("kind", KINDS)
def test_body_shorter_than_content_length_closes_the_connection(serve, kind):
    s = plain(serve, kind)
    with s.conn() as c:
        c.send(build_request("GET", "/cl_short"))
        r = c.read_response(timeout=5)
        assert r.status == 200 and r.header("content-length") == "100", r
        assert r.body == b"0123456789" and not r.complete, r
        assert c.eof, "the connection stayed open after a short body"
    s.wait_log(r"the app's response body \(10 bytes\) is shorter than its Content-Length "
               r"\(100 bytes\)")


# The app's mistake before its response started: 500, and the log line that names it.
# The wording of a protocol's own callable differs by design (start_response is WSGI's,
# http.response.start ASGI's); everything else is the same rule, worded the same.
MISTAKES = {
    "bad_status": {"wsgi": r"invalid status \"99 Too Low\"", "asgi": r"invalid status 99"},
    "bad_header": {"wsgi": r"invalid header name \"Bad Name\"",
                   "asgi": r"invalid header name \"bad name\""},
    "bad_cl": {"wsgi": r"invalid Content-Length \"12abc\"",
               "asgi": r"invalid Content-Length \"12abc\""},
    "twice": {"wsgi": r"start_response called a second time without exc_info",
              "asgi": r"http\.response\.start sent twice"},
    "not_iterable": {"wsgi": r"the app must return an iterable of bytes, not int",
                     "asgi": r"http\.response\.body's body must be bytes, not int"},
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_an_app_that_breaks_the_protocol_gets_a_500_in_every_class(serve, kind, mistake):
    s = plain(serve, kind)
    r, closed = closed_after(s, build_request("GET", "/" + mistake))
    assert r.status == 500 and r.body == b"500 Internal Server Error\n", r
    assert closed
    protocol = "asgi" if kind == "asgi" else "wsgi"
    s.wait_log(MISTAKES[mistake][protocol])
    # The worker lives on.
    assert s.get("/hello").body == b"Hello, parity\n"


# ------------------------------------------------------------------- deadlines and 504

@pytest.mark.parametrize("kind", KINDS)
def test_an_app_past_timeout_gets_504(serve, kind):
    s = serve(kind, "-t", "2", "--body-timeout", "2")
    t0 = time.monotonic()
    r = s.get("/hang", timeout=15)
    took = time.monotonic() - t0
    assert r.status == 504 and r.body == b"504 Gateway Timeout\n", r
    assert 1.9 <= took < 4, "504 after %.2f s with -t 2" % took
    s.wait_log(r"request timed out after 2s \(timeout\); answered 504")


def _read_all(sock, seconds):
    """Everything the server sends until it closes (bounded in time)."""
    data = bytearray()
    deadline = time.monotonic() + seconds
    for _ in range(1_000_000):
        left = deadline - time.monotonic()
        assert left > 0, "the server did not close within %ss (%d bytes read)" % (seconds, len(data))
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("kind", KINDS)
def test_a_504_never_lands_inside_a_pipelined_response(serve, kind):
    """A request past its deadline, pipelined behind a response larger than the socket's
    buffers: the client reads the first response whole, then the 504, never the 504 in
    the middle of the first body. (The 504 goes through hyper, after what it holds; only
    where the app holds the I/O thread, sync, does the deadline watcher write it, and only
    when hyper holds nothing unwritten.)"""
    s = serve(kind, "-t", "2")
    n = 32 << 20
    with s.conn(timeout=15) as c:
        c.send(build_request("GET", "/big?n=%d" % n) + build_request("GET", "/hang"))
        time.sleep(1)       # the first response fills the buffers, waits for the client
        data = _read_all(c.sock, 12)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    start = data.index(b"\r\n\r\n") + 4
    body, rest = data[start:start + n], data[start + n:]
    stray = body.find(b"HTTP/1.1 504")
    assert body == b"x" * n, "%d of %d body bytes; foreign bytes at %d: %r" % (
        len(body), n, stray, body[max(stray, 0):max(stray, 0) + 80])
    assert rest.startswith(b"HTTP/1.1 504 ") and rest.endswith(b"504 Gateway Timeout\n"), \
        rest[:300]


# -------------------------------------------------------------------------- the hooks

HOOKS = textwrap.dedent('''
    def pre_request(worker, req):
        worker.log.info("HOOK pre_request %s %s query=%s", req.method, req.path, req.query)
        if req.path == "/refuse":
            raise KeyError("pre_request refused")

    def post_request(worker, req, environ, resp):
        worker.log.info("HOOK post_request %s %s path_info=%s method=%s sent=%s",
                        req.uri, resp.status, environ.get("PATH_INFO"),
                        environ.get("REQUEST_METHOD"), resp.sent)
''')

# What post_request's environ is, per class: the same keys, by design from two sources.
ENVIRON_SOURCE = {
    "sync": "the environ the app was called with",
    "gthread": "the environ the app was called with",
    "gevent": "the environ the app was called with",
    "asgi": "the WSGI environ of the same head (the app got a scope instead)",
}


@pytest.mark.parametrize("kind", KINDS)
def test_pre_and_post_request_hooks_are_called(serve, kind, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("hooks-%s" % kind) / "hooks.conf.py"
    cfg.write_text(HOOKS)
    s = serve(kind, "-c", cfg)
    assert ENVIRON_SOURCE[kind]
    r = s.get("/hello?x=1")
    assert r.status == 200 and r.body == b"Hello, parity\n", r
    s.wait_log(r"HOOK pre_request GET /hello query=x=1")
    s.wait_log(r"HOOK post_request /hello\?x=1 200 OK path_info=/hello method=GET sent=14")
    # pre_request raising: the app is not called, the client gets a 500, in every class.
    assert s.get("/refuse").status == 500
    s.wait_log(r"KeyError: 'pre_request refused'")


# -------------------------------------------------------- what a class cannot do: by design

# A WebSocket handshake, per class: (status, why).
WEBSOCKET = {
    "sync": (200, "WSGI has no WebSocket: the handshake is a plain GET for the app"),
    "gthread": (200, "WSGI has no WebSocket: the handshake is a plain GET for the app"),
    "gevent": (200, "WSGI has no WebSocket: the handshake is a plain GET for the app"),
    "asgi": (101, "an ASGI app may accept a WebSocket"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_websocket_handshake_is_served_as_the_protocol_allows(serve, kind):
    s = plain(serve, kind)
    status, why = WEBSOCKET[kind]
    with s.conn() as c:
        c.send(build_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                            ("Sec-WebSocket-Version", "13")]))
        head = c.read_head(timeout=5)
        assert head.status == status, (why, head)
        if status == 101:
            assert head.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        else:
            # The app's own answer; no switch it never made.
            assert head.header("upgrade") is None, head
            assert c.read_exact(int(head.header("content-length"))) == b"no websocket"
