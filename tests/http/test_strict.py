"""Issue 5, point 5: strict HTTP/1.1 parsing (RFC 9110 / RFC 9112), at least as strict as
gunicorn 23+.

Each rule has a vector that breaks it and a positive control, the same request in its
correct form: the bad one must get the exact status, `Connection: close`, a closed
connection, no app call (the app counts its calls), an access log line with the status,
and the worker must live on; the good one must reach the app. A test cannot pass by
refusing everything.

With TEST_SERVER=gunicorn the same vectors run against gunicorn (gthread), with its own
status where it differs; the few rules where gunicorn accepts what unitcorn refuses are
marked unitcorn_only.
"""

import re
import socket

import pytest

from harness import (APPS, IS_GUNICORN, ConnClosed, Conn, Server, base_env, free_port,
                     server_cmd, wait_for)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server (one worker) for every vector: each test checks it is still the same
    worker afterwards."""
    logdir = tmp_path_factory.mktemp("strict")
    access = logdir / "access.log"
    port = free_port()
    cmd = server_cmd() + ["-w", "1", "-b", "127.0.0.1:%d" % port, "--keep-alive", "5",
                          "--access-logfile", str(access), "--log-level", "info",
                          "countapp:app"]
    s = Server(cmd, base_env(), APPS, logdir, addr=("127.0.0.1", port), name="strict")
    s.access_path = access
    try:
        s.wait_ready(path="/count")
        yield s
    finally:
        s.kill_all()


def count(s):
    """(calls so far, worker pid), by a /count call (which counts itself)."""
    r = s.get("/count")
    assert r.status == 200, r
    return int(r.body), int(r.header("x-pid"))


def access_lines(s):
    try:
        return s.access_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def exchange(s, data, half_close=False):
    """Send data on a new connection; (first response or None, closed by the server)."""
    with Conn(s.addr, timeout=5) as c:
        c.send(data)
        if half_close:
            c.sock.shutdown(socket.SHUT_WR)
        try:
            r = c.read_response(timeout=5)
        except ConnClosed:
            r = None
        closed = c.closed_by_peer(timeout=5)
    return r, closed


H = b"Host: example\r\n"


def req(line=b"POST /echo HTTP/1.1", headers=H, body=b""):
    return line + b"\r\n" + headers + b"Connection: close\r\n\r\n" + body


def chunked_req(body, headers=b""):
    return req(headers=H + headers + b"Transfer-Encoding: chunked\r\n", body=body)


GOOD_CHUNKED = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"

# gunicorn closes without an answer.
CLOSE = "close"

# (id, bad request, its correct form, unitcorn's status, gunicorn's status)
# bad may be (bytes, "half-close"): the client then shuts its sending side.
VECTORS = [
    # RFC 9112 2.2: lines end with CRLF; a bare LF is refused.
    ("bare-lf-request-line", b"GET /echo HTTP/1.1\n" + H + b"\r\n",
     req(b"GET /echo HTTP/1.1"), 400, 400),
    ("bare-lf-header-line", b"GET /echo HTTP/1.1\r\nHost: example\nX-A: b\r\n\r\n",
     req(b"GET /echo HTTP/1.1", H + b"X-A: b\r\n"), 400, 400),
    ("bare-lf-end-of-head", b"GET /echo HTTP/1.1\r\n" + H + b"\n",
     req(b"GET /echo HTTP/1.1"), 400, 400),
    # RFC 9112 5.2: obsolete line folding.
    ("obs-fold", req(b"GET /echo HTTP/1.1", H + b"X-A: one\r\n two\r\n"),
     req(b"GET /echo HTTP/1.1", H + b"X-A: one two\r\n"), 400, 400),
    ("obs-fold-tab", req(b"GET /echo HTTP/1.1", H + b"X-A: one\r\n\ttwo\r\n"),
     req(b"GET /echo HTTP/1.1", H + b"X-A: one\ttwo\r\n"), 400, 400),
    # RFC 9112 6.1, 6.3: Content-Length with Transfer-Encoding is a smuggling vector.
    ("cl-then-te", req(headers=H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                       body=GOOD_CHUNKED),
     chunked_req(GOOD_CHUNKED), 400, 400),
    ("te-then-cl", req(headers=H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                       body=GOOD_CHUNKED),
     chunked_req(GOOD_CHUNKED), 400, 400),
    # RFC 9112 6.3 / RFC 9110 8.6: one Content-Length, digits only.
    ("cl-repeated-same", req(headers=H + b"Content-Length: 3\r\nContent-Length: 3\r\n",
                             body=b"abc"),
     req(headers=H + b"Content-Length: 3\r\n", body=b"abc"), 400, 400),
    ("cl-repeated-differing", req(headers=H + b"Content-Length: 3\r\nContent-Length: 4\r\n",
                                  body=b"abcd"),
     req(headers=H + b"Content-Length: 3\r\n", body=b"abc"), 400, 400),
    ("cl-list", req(headers=H + b"Content-Length: 3, 3\r\n", body=b"abc"),
     req(headers=H + b"Content-Length: 3\r\n", body=b"abc"), 400, 400),
    ("cl-signed", req(headers=H + b"Content-Length: +3\r\n", body=b"abc"),
     req(headers=H + b"Content-Length: 3\r\n", body=b"abc"), 400, 400),
    # RFC 9110 7.2 / 5.3: Host is a singleton.
    ("host-repeated", req(b"GET /echo HTTP/1.1", H + b"Host: other\r\n"),
     req(b"GET /echo HTTP/1.1", H), 400, 400),
    # RFC 9112 7.1.1: whitespace after a chunk size only before an extension's ';'
    # (gunicorn's corpus: chunked_09 is the last chunk's).
    ("chunk-size-trailing-space", chunked_req(b"5 \r\nhello\r\n0\r\n\r\n"),
     chunked_req(b"5 ;x\r\nhello\r\n0\r\n\r\n"), 400, 400),
    ("chunk-last-size-trailing-space", chunked_req(b"5\r\nhello\r\n0 \r\n\r\n"),
     chunked_req(b"5\r\nhello\r\n0\r\n\r\n"), 400, 400),
    # RFC 9112 7.1: chunk framing; never a silently truncated body.
    ("chunk-size-not-hex", chunked_req(b"zz\r\nabc\r\n0\r\n\r\n"),
     chunked_req(GOOD_CHUNKED), 400, 400),
    ("chunk-size-bare-lf", chunked_req(b"3\nabc\r\n0\r\n\r\n"),
     chunked_req(GOOD_CHUNKED), 400, 400),
    ("chunk-data-no-crlf", chunked_req(b"3\r\nabcX\r\n0\r\n\r\n"),
     chunked_req(GOOD_CHUNKED), 400, 400),
    ("chunk-early-eof", (chunked_req(b"5\r\nab"), "half-close"),
     chunked_req(GOOD_CHUNKED), 400, CLOSE),
    ("chunked-http10", req(b"POST /echo HTTP/1.0", H + b"Transfer-Encoding: chunked\r\n",
                           GOOD_CHUNKED),
     req(b"POST /echo HTTP/1.0", H + b"Content-Length: 5\r\n", b"abcde"), 400, 400),
    # RFC 9112 6.1: chunked must be the final (here: the only) coding.
    ("te-gzip", req(headers=H + b"Transfer-Encoding: gzip\r\n", body=b"abc"),
     chunked_req(GOOD_CHUNKED), 400, 400),
    ("te-unknown", req(headers=H + b"Transfer-Encoding: foo\r\n", body=b"abc"),
     chunked_req(GOOD_CHUNKED), 400, 501),
    ("te-chunked-twice", req(headers=H + b"Transfer-Encoding: chunked\r\n"
                             b"Transfer-Encoding: chunked\r\n", body=GOOD_CHUNKED),
     chunked_req(GOOD_CHUNKED), 400, 400),
    # RFC 9110 9.1: a method is a token; gunicorn's convention also refuses lowercase,
    # '#', and lengths outside 3..20 (permit_unconventional_http_method lifts it).
    ("method-lowercase", req(b"get /echo HTTP/1.1"), req(b"GET /echo HTTP/1.1"), 400, 400),
    ("method-hash", req(b"GE#T /echo HTTP/1.1"), req(b"GETT /echo HTTP/1.1"), 400, 400),
    ("method-short", req(b"GE /echo HTTP/1.1"), req(b"GET /echo HTTP/1.1"), 400, 400),
    ("method-not-token", req(b"GE(T /echo HTTP/1.1"), req(b"GET /echo HTTP/1.1"), 400, 400),
    # RFC 9112 2.3: HTTP/1.0 and HTTP/1.1 only; the HTTP/2 preface over h1 is refused.
    ("version-2", req(b"GET /echo HTTP/2.0"), req(b"GET /echo HTTP/1.1"), 400, 400),
    ("version-lowercase", req(b"GET /echo http/1.1"), req(b"GET /echo HTTP/1.1"), 400, 400),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", req(b"GET /echo HTTP/1.1"), 400, 400),
    # RFC 9110 5.5: no NUL, CR, LF or other controls in a field value.
    ("value-nul", req(b"GET /echo HTTP/1.1", H + b"X-A: a\x00b\r\n"),
     req(b"GET /echo HTTP/1.1", H + b"X-A: ab\r\n"), 400, 400),
    ("value-cr", req(b"GET /echo HTTP/1.1", H + b"X-A: a\rb\r\n"),
     req(b"GET /echo HTTP/1.1", H + b"X-A: ab\r\n"), 400, 400),
    ("value-del", req(b"GET /echo HTTP/1.1", H + b"X-A: a\x7fb\r\n"),
     req(b"GET /echo HTTP/1.1", H + b"X-A: ab\r\n"), 400, 400),
    # RFC 9112 5.1: no whitespace between a field name and its colon.
    ("space-before-colon", req(b"GET /echo HTTP/1.1", H + b"X-A : b\r\n"),
     req(b"GET /echo HTTP/1.1", H + b"X-A: b\r\n"), 400, 400),
    # RFC 9112 3.2: the target is printable ASCII.
    ("target-raw-utf8", req(b"GET /caf\xc3\xa9 HTTP/1.1"), req(b"GET /caf%C3%A9 HTTP/1.1"),
     400, 400),
    ("target-space", req(b"GET /a b HTTP/1.1"), req(b"GET /a%20b HTTP/1.1"), 400, 400),
    # RFC 9112 3.2.3: the authority form is CONNECT's only.
    ("target-authority-form", req(b"GET example.com:80 HTTP/1.1"),
     req(b"GET /echo HTTP/1.1"), 400, 400),
]

# What gunicorn lets through and unitcorn refuses.
UNITCORN_ONLY = [
    # RFC 9112 3.2: an HTTP/1.1 request has a Host (an HTTP/1.0 one need not).
    ("host-missing", b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n",
     b"GET /echo HTTP/1.0\r\nConnection: close\r\n\r\n", 400, None),
    # RFC 9112 3.2, RFC 9110 7.2: Host is uri-host [":" port].
    ("host-space", req(b"GET /echo HTTP/1.1", b"Host: a b\r\n"),
     req(b"GET /echo HTTP/1.1", b"Host: a-b\r\n"), 400, None),
    ("host-slash", req(b"GET /echo HTTP/1.1", b"Host: a/b\r\n"),
     req(b"GET /echo HTTP/1.1", b"Host: a.b\r\n"), 400, None),
    ("host-port-not-digits", req(b"GET /echo HTTP/1.1", b"Host: a:8x\r\n"),
     req(b"GET /echo HTTP/1.1", b"Host: a:80\r\n"), 400, None),
    ("host-ip-literal-invalid", req(b"GET /echo HTTP/1.1", b"Host: [::g]:80\r\n"),
     req(b"GET /echo HTTP/1.1", b"Host: [::1]:80\r\n"), 400, None),
    ("host-userinfo", req(b"GET /echo HTTP/1.1", b"Host: u@a\r\n"),
     req(b"GET /echo HTTP/1.1", b"Host: a%41\r\n"), 400, None),
    ("host-invalid-http10", req(b"GET /echo HTTP/1.0", b"Host: a b\r\n"),
     req(b"GET /echo HTTP/1.0", b"Host: a\r\n"), 400, None),
    # RFC 9110 4.2.4: userinfo in an http URI is an error.
    ("target-absolute-form-userinfo", req(b"GET http://u@example/echo HTTP/1.1"),
     req(b"GET http://example/echo HTTP/1.1"), 400, None),
    # No tunnels: CONNECT, whatever its target, is not implemented.
    ("connect", req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443\r\n"),
     req(b"GET /echo HTTP/1.1"), 501, None),
    ("connect-origin-form", req(b"CONNECT /echo HTTP/1.1"), req(b"GET /echo HTTP/1.1"),
     501, None),
    # gunicorn accepts any HTTP/1.x; httparse knows only 1.0 and 1.1.
    ("version-1-2", req(b"GET /echo HTTP/1.2"), req(b"GET /echo HTTP/1.1"), 400, None),
    # (gzip before chunked, which gunicorn accepts and hands the app compressed, is now
    # accepted too: gunicorn's corpus cases 025, 029, 030 and rfc9112_smuggle_gzip_chunked_01
    # in tests/http/test_gunicorn_corpus.py check the app gets exactly gunicorn's environ.)
]


def params():
    out = [pytest.param(*v, id=v[0]) for v in VECTORS]
    out += [pytest.param(*v, id=v[0], marks=pytest.mark.unitcorn_only(
        "gunicorn accepts this form")) for v in UNITCORN_ONLY]
    return out


@pytest.mark.parametrize("name,bad,good,status,gunicorn_status", params())
def test_rule(server, name, bad, good, status, gunicorn_status):
    s = server
    expected = gunicorn_status if IS_GUNICORN else status
    calls, pid = count(s)
    half_close = False
    if isinstance(bad, tuple):
        bad, half_close = bad[0], True
    logged = len(access_lines(s))

    r, closed = exchange(s, bad, half_close)
    if expected == CLOSE:
        assert r is None and closed, "%s: %r" % (name, r)
        assert count(s) == (calls + 2, pid), "%s: the app was not called once" % name
        return
    assert r is not None, "%s: connection closed without a response" % name
    assert r.status == expected, "%s: %r" % (name, r)
    assert (r.header("connection") or "").lower() == "close", r.headers
    assert closed, "%s: connection left open after a %d" % (name, r.status)
    after, pid_after = count(s)
    assert pid_after == pid, "%s: the worker was replaced" % name
    # The body vectors reach gunicorn's app before it reads the body.
    if not (IS_GUNICORN and name.startswith("chunk")):
        assert after == calls + 1, "%s: the app was called for a refused request" % name
    if not IS_GUNICORN:
        # The refused request's line, then /count's: its status is logged.
        lines = wait_for(lambda: access_lines(s)[logged:] if len(access_lines(s)) >= logged + 2
                         else None, 5)
        assert lines and re.search(r'" %d ' % expected, lines[0]), lines

    # The positive control: the same request done right reaches the app.
    r, _ = exchange(s, good)
    assert r is not None and r.status == 200, "%s (correct form): %r" % (name, r)
    final, pid_final = count(s)
    assert final == after + 2 and pid_final == pid


def test_pipelined_refusal_comes_after_the_good_responses(server):
    """A bad head after good pipelined requests: the good ones are answered, in order,
    then the 400, then the close; the bodies between them are not mistaken for heads."""
    s = server
    calls, pid = count(s)
    first = b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n\r\n\n\n\n\n"
    second = b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + \
        b"4\r\n\n\n\n\n\r\n0\r\n\r\n"
    bad = b"GET /echo HTTP/1.1\nHost: example\r\n\r\n"
    with Conn(s.addr, timeout=5) as c:
        c.send(first + second + bad)
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        assert c.closed_by_peer(timeout=5)
    assert (r1.status, r1.body) == (200, b"POST /echo 4")
    assert (r2.status, r2.body) == (200, b"POST /echo 4")
    assert r3.status == 400
    assert count(s) == (calls + 3, pid)


@pytest.mark.unitcorn_only("unitcorn reads a small chunked body before calling the app")
def test_bad_chunk_after_good_chunks_never_reaches_the_app(server):
    s = server
    calls, pid = count(s)
    r, closed = exchange(s, chunked_req(b"3\r\nabc\r\n3\r\ndefXX\r\n0\r\n\r\n"))
    assert r.status == 400 and closed
    assert count(s) == (calls + 1, pid)


def test_large_chunked_body_cut_raises_in_the_app(start_server):
    """Past the read-ahead the app runs with a streaming body: broken framing then makes
    wsgi.input raise (500 from the app's exception), never a silently short body."""
    s = start_server("wsgiapp:app", "-w", "1")
    big = b"x" * 100000
    body = b"%x\r\n%s\r\n" % (len(big), big) + b"5\r\nabcdeXX\r\n0\r\n\r\n"
    with s.conn() as c:
        c.send(b"POST /hash HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body)
        r = c.read_response(timeout=10)
        assert c.closed_by_peer(timeout=5)
    assert r.status in (400, 500), r
    assert b"sha256" not in r.body, "the app got a body cut short: %r" % r.body


def test_permit_obsolete_folding_joins_the_lines(start_server):
    s = start_server("countapp:app", "-w", "1", "--permit-obsolete-folding")
    with s.conn() as c:
        c.send(req(b"GET /echo HTTP/1.1", H + b"X-A: one\r\n two\r\n"))
        r = c.read_response()
    assert r.status == 200, r
    # A folded Content-Length stays refused.
    with s.conn() as c:
        c.send(req(headers=H + b"Content-Length:\r\n 3\r\n", body=b"abc"))
        r = c.read_response()
    assert r.status == 400, r


def test_permit_unconventional_method_and_casefold(start_server):
    s = start_server("countapp:app", "-w", "1", "--permit-unconventional-http-method",
                     "--casefold-http-method")
    with s.conn() as c:
        c.send(req(b"get /echo HTTP/1.1"))
        r = c.read_response()
    assert (r.status, r.body) == (200, b"GET /echo 0"), r
    s2 = start_server("countapp:app", "-w", "1", "--permit-unconventional-http-method")
    with s2.conn() as c:
        c.send(req(b"get /echo HTTP/1.1"))
        r = c.read_response()
    assert (r.status, r.body) == (200, b"get /echo 0"), r


@pytest.mark.unitcorn_only("gunicorn keeps the Host header")
def test_absolute_form_target_is_the_host(start_server, tmp_path):
    """RFC 9112 3.2.2: an absolute-form target's authority is the request's Host, whatever
    Host header came with it; on a unix socket SERVER_NAME/SERVER_PORT follow it too."""
    s = start_server("wsgiapp:app", "-w", "1")
    r, _ = exchange(s, req(b"GET http://evil.com/environ/x HTTP/1.1", b"Host: other\r\n"))
    assert r is not None and r.status == 200, r
    v = r.json()["values"]
    assert (v["HTTP_HOST"], v["PATH_INFO"]) == ("evil.com", "/environ/x"), v
    path = str(tmp_path / "app.sock")
    start_server("wsgiapp:app", "-w", "1", bind="unix:" + path)
    with Conn(path, timeout=5) as c:
        c.send(req(b"GET http://evil.com:8080/environ HTTP/1.1", b"Host: other:81\r\n"))
        r = c.read_response(timeout=5)
    v = r.json()["values"]
    assert (v["HTTP_HOST"], v["SERVER_NAME"], v["SERVER_PORT"]) == \
        ("evil.com:8080", "evil.com", "8080"), v


@pytest.mark.unitcorn_only("gunicorn sends the app's 101")
def test_app_switching_protocols_unasked_is_a_500(start_server, tmp_path):
    """RFC 9110 7.8: a server switches only to a protocol the client offered. An app's 101
    to a request without Upgrade would leave the client reading HTTP as another protocol
    (and the connection's byte checks off): 500, the app's mistake in the error log."""
    access = tmp_path / "access101.log"
    s = start_server("wsgiapp:app", "-w", "1", "--access-logfile", str(access))
    pid = s.get("/pid").body
    for headers in (H, H + b"Upgrade: websocket\r\n", b"Host: a\r\nConnection: upgrade\r\n"):
        r, closed = exchange(s, req(b"GET /status?code=101 HTTP/1.1", headers))
        assert r is not None and r.status == 500, r
        assert closed
    s.wait_log(r"101 Switching Protocols to a request that asked for no upgrade", count=3)
    # The worker lives on; other statuses of the same route pass.
    r = s.get("/status?code=204")
    assert r.status == 204, r
    assert s.get("/pid").body == pid
    lines = wait_for(lambda: [l for l in access.read_text().splitlines()
                              if "/status" in l] if access.exists() else None, 5)
    assert [re.search(r'" (\d+) ', l).group(1) for l in lines] == ["500"] * 3 + ["204"], lines
