"""Keep-alive: several requests on one connection; an idle connection closed after
--keep-alive seconds, not before; HTTP/1.0 asking for keep-alive; the client's
Connection: close."""

import time

from harness import build_request


def test_keepalive_several_requests_one_connection(start_server):
    s = start_server("wsgiapp:app", "--keep-alive", "5")
    with s.conn() as c:
        pids = set()
        for i in range(5):
            c.send(build_request("GET", "/pid"))
            r = c.read_response()
            assert r.status == 200 and r.complete, r
            assert (r.header("connection") or "").lower() != "close", r
            pids.add(int(r.body))
        # all on one connection: one worker served them all
        assert len(pids) == 1
        c.send(build_request("GET", "/hello"))
        r = c.read_response()
        assert r.body == b"Hello, World!\n"


def test_keepalive_idle_connection_closed_after_timeout(start_server):
    """--keep-alive 2: the server closes an idle connection after ≈2 s, not before ≈1 s."""
    s = start_server("wsgiapp:app", "--keep-alive", "2")
    with s.conn() as c:
        c.send(build_request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=8), "idle keep-alive connection not closed within 8 s"
        idle = time.monotonic() - t0
    assert 1.0 <= idle <= 6.0, "closed after %.2f s idle, keep-alive is 2 s" % idle


def test_keepalive_timeout_is_the_setting(start_server):
    """The idle timeout follows --keep-alive: with 5 s the connection is still open at 3 s."""
    s = start_server("wsgiapp:app", "--keep-alive", "5")
    with s.conn() as c:
        c.send(build_request("GET", "/hello"))
        assert c.read_response().status == 200
        assert c.nothing_within(3.0), "connection closed (or data sent) before keep-alive 5 s"
        c.send(build_request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!\n"


def test_http10_keepalive_requested(start_server):
    s = start_server("wsgiapp:app", "--keep-alive", "5")
    with s.conn() as c:
        c.send(build_request("GET", "/hello", [("Connection", "keep-alive")], version="HTTP/1.0"))
        r = c.read_response()
        assert r.status == 200 and r.complete
        assert r.header("content-length") == "14"
        c.send(build_request("GET", "/pid", [("Connection", "keep-alive")], version="HTTP/1.0"))
        r2 = c.read_response()
        assert r2.status == 200 and int(r2.body) > 0


def test_connection_close_from_client(start_server):
    s = start_server("wsgiapp:app", "--keep-alive", "10")
    with s.conn() as c:
        c.send(build_request("GET", "/hello", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!\n"
        assert (r.header("connection") or "").lower() == "close", r.headers
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=5)
        assert time.monotonic() - t0 < 3
