"""Point 6: PEP 3333 — environ, wsgi.input (every method, streaming, no buffering of a big
body), wsgi.errors, start_response (exc_info, write(), headers only with the first non-empty
chunk), close() always called, the app's Content-Length enforced, wsgi.file_wrapper,
exceptions before/after the response started (the worker survives both)."""

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import base_env, build_request, chunked, wait_for


def _environ(s, path="/environ", headers=(), method="GET", body=None):
    r = s.request(method, path, headers=headers, body=body)
    assert r.status == 200, r
    return r.json()


# ---------------------------------------------------------------------------------- environ

def test_environ_cgi_keys(start_server):
    s = start_server("wsgiapp:app", "-w", "2")
    host, port = s.addr
    with s.conn() as c:
        client_port = c.sock.getsockname()[1]
        c.send(build_request("POST", "/environ/sub/path?x=1&y=%20z&y=2",
                             [("Content-Type", "text/x-test; charset=utf-8")],
                             body=b"12345", host="%s:%d" % (host, port), close=True))
        r = c.read_response()
    assert r.status == 200, r
    e = r.json()
    v = e["values"]
    assert v["REQUEST_METHOD"] == "POST"
    assert v["SCRIPT_NAME"] == ""
    assert v["PATH_INFO"] == "/environ/sub/path"
    assert v["QUERY_STRING"] == "x=1&y=%20z&y=2"
    assert v["CONTENT_TYPE"] == "text/x-test; charset=utf-8"
    assert v["CONTENT_LENGTH"] == "5"
    assert v["SERVER_NAME"] == "127.0.0.1"
    assert v["SERVER_PORT"] == str(port)
    assert v["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert v["REMOTE_ADDR"] == "127.0.0.1"
    assert v["REMOTE_PORT"] == str(client_port)
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
                "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
                "REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST"):
        assert e["types"][key] == "str", (key, e["types"][key])
    # Content-Type / Content-Length are not duplicated as HTTP_ keys (PEP 3333 / CGI)
    assert "HTTP_CONTENT_TYPE" not in e["types"]
    assert "HTTP_CONTENT_LENGTH" not in e["types"]
    assert v["HTTP_HOST"] == "%s:%d" % (host, port)


def test_environ_get_without_body_has_no_bogus_content_length(start_server):
    s = start_server()
    v = _environ(s, "/environ?only=1")["values"]
    assert v["REQUEST_METHOD"] == "GET"
    assert v["QUERY_STRING"] == "only=1"
    assert v.get("CONTENT_LENGTH", "") in ("", "0")
    assert v["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_environ_http10_protocol(start_server):
    s = start_server()
    r = s.request("GET", "/environ", version="HTTP/1.0")
    assert r.status == 200
    assert r.json()["values"]["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_environ_http_headers_repeated_joined_and_underscore_dropped(start_server):
    s = start_server()
    e = _environ(s, headers=[("X-Multi", "a"), ("X-Multi", "b"), ("x-multi", "c"),
                             ("X-Dash-Name", "dash"), ("X_Under", "evil"),
                             ("X-Under", "good"), ("User-Agent", "agent/1.0")])
    v = e["values"]
    assert v["HTTP_X_MULTI"] == "a,b,c"
    assert v["HTTP_X_DASH_NAME"] == "dash"
    # the header with "_" is dropped, never mapped onto HTTP_X_UNDER
    assert v["HTTP_X_UNDER"] == "good"
    assert v["HTTP_USER_AGENT"] == "agent/1.0"
    assert not any(k.startswith("HTTP_") and "evil" in str(val) for k, val in v.items())


def test_environ_path_info_percent_decoded_latin1(start_server):
    s = start_server()
    e = _environ(s, "/environ/caf%C3%A9/a%20b?q=caf%C3%A9")
    v = e["values"]
    assert v["PATH_INFO"] == "/environ/caf\xc3\xa9/a b"
    assert e["path_info_codepoints"][-6:-4] == [0xC3, 0xA9]
    assert v["QUERY_STRING"] == "q=caf%C3%A9"


def test_environ_script_name_from_server_environment(start_server):
    s = start_server("wsgiapp:app", env=base_env(SCRIPT_NAME="/mount"))
    # readiness probe hit "/", which is outside the prefix; now use the prefix
    e = _environ(s, "/mount/environ/x?a=b")
    v = e["values"]
    assert v["SCRIPT_NAME"] == "/mount"
    assert v["PATH_INFO"] == "/environ/x"
    assert v["QUERY_STRING"] == "a=b"


def test_environ_wsgi_keys(start_server):
    s = start_server("wsgiapp:app", "-w", "2")
    e = _environ(s)
    v, t = e["values"], e["types"]
    assert v["wsgi.version"] == [1, 0] and t["wsgi.version"] == "tuple"
    assert v["wsgi.url_scheme"] == "http"
    assert t["wsgi.multithread"] == "bool"
    assert v["wsgi.multiprocess"] is True
    assert v["wsgi.run_once"] is False
    assert v["wsgi.input_terminated"] is True
    assert e["file_wrapper_callable"] is True
    assert e["input_methods"] == ["read", "readline", "readlines", "__iter__"]
    assert e["errors_methods"] == ["write", "writelines", "flush"]


def test_environ_multithread_true_with_threads(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "4")
    assert _environ(s)["values"]["wsgi.multithread"] is True


def test_environ_remote_addr_ipv6(start_server):
    s = start_server(bind="[::1]:%d" % _free6())
    v = _environ(s, headers=[("Host", "[::1]:%d" % s.addr[1])])["values"]
    assert v["REMOTE_ADDR"] == "::1"
    assert v["SERVER_PORT"] == str(s.addr[1])


def test_environ_server_port_is_the_receiving_port(start_server):
    """RFC 3875 §4.1.15 (and gunicorn): SERVER_PORT is the port the request came in on,
    even when the Host header names no port."""
    s = start_server()
    v = _environ(s, headers=[("Host", "example.com")])["values"]
    assert v["HTTP_HOST"] == "example.com"
    assert v["SERVER_PORT"] == str(s.addr[1])


def _free6():
    with socket.socket(socket.AF_INET6) as so:
        so.bind(("::1", 0))
        return so.getsockname()[1]


# ------------------------------------------------------------------------------ wsgi.input

BODY = (b"first line\n"
        b"second line is a bit longer than the others, to cross readline(size) limits\n"
        b"\n"
        b"4th line after an empty one\n"
        b"no newline at the end")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("via", ["read", "readn&n=1", "readn&n=7", "readn&n=100000", "read-1",
                                 "readline", "readline&size=10", "readline&size=1",
                                 "readlines", "iter"])
def test_wsgi_input_methods(start_server, via, framing):
    s = start_server()
    if framing == "chunked":
        data = build_request("POST", "/echo?via=" + via, [("Transfer-Encoding", "chunked")],
                             close=True) + chunked([BODY[:5], BODY[5:40], BODY[40:]])
    else:
        data = build_request("POST", "/echo?via=" + via, body=BODY, close=True)
    with s.conn() as c:
        c.send(data)
        r = c.read_response()
    assert r.status == 200, r
    assert r.body == BODY
    # after the body is consumed, read() and readline() return b''
    assert r.header("x-eof") == "read=b'';readline=b''"


def test_wsgi_input_empty_body(start_server):
    s = start_server()
    r = s.request("POST", "/echo?via=read", body=b"")
    assert r.status == 200 and r.body == b""
    assert r.header("x-eof") == "read=b'';readline=b''"
    r = s.request("GET", "/echo?via=readline")
    assert r.status == 200 and r.body == b""


def _stream_body(s, total, chunk_size, use_chunked, sampler):
    block = hashlib.sha256(b"seed").digest() * (chunk_size // 32)
    h = hashlib.sha256()
    with s.conn(timeout=60) as c:
        if use_chunked:
            c.send(build_request("POST", "/hash", [("Transfer-Encoding", "chunked")], close=True))
        else:
            c.send(build_request("POST", "/hash", [("Content-Length", str(total))], close=True))
        sent = 0
        while sent < total:
            part = block[:min(len(block), total - sent)]
            h.update(part)
            if use_chunked:
                c.send(b"%x\r\n%s\r\n" % (len(part), part))
            else:
                c.send(part)
            sent += len(part)
            sampler()
        if use_chunked:
            c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=60)
    return r, h.hexdigest()


@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
def test_large_body_streamed_not_buffered(start_server, use_chunked):
    """A 50 MiB body is hashed correctly while the server's RSS grows by far less."""
    s = start_server("wsgiapp:app", "-w", "1")
    s.get("/hash")                      # warm up the worker
    s.request("POST", "/hash", body=b"x" * 100000)
    base = s.rss_kib()
    peak = [base]

    def sample():
        peak[0] = max(peak[0], s.rss_kib())

    stop = threading.Event()

    def sampler_thread():
        for _ in range(2000):
            if stop.wait(0.02):
                break
            sample()

    th = threading.Thread(target=sampler_thread)
    th.start()
    total = 50 * 1024 * 1024
    try:
        r, digest = _stream_body(s, total, 256 * 1024, use_chunked, lambda: None)
    finally:
        stop.set()
        th.join(10)
    sample()
    assert r.status == 200, r
    assert r.json() == {"length": total, "sha256": digest}
    growth_mib = (peak[0] - base) / 1024
    assert growth_mib < 20, "RSS grew by %.1f MiB for a 50 MiB body (buffered?)" % growth_mib


# ----------------------------------------------------------------------------- wsgi.errors

def test_wsgi_errors_goes_to_error_log(start_server, tmp_path):
    log = tmp_path / "error.log"
    s = start_server("wsgiapp:app", "--error-logfile", str(log))
    r = s.get("/errors?msg=wsgi-errors-marker-7781")
    assert r.status == 200 and r.body == b"logged"
    assert wait_for(lambda: log.exists() and "wsgi-errors-marker-7781" in log.read_text(), 5), \
        "wsgi.errors text not in the error log"


def test_wsgi_errors_to_stderr_by_default(start_server):
    s = start_server()
    assert s.get("/errors?msg=stderr-marker-5512").status == 200
    assert wait_for(lambda: "stderr-marker-5512" in s.stderr(), 5)


# -------------------------------------------------------------------------- start_response

def test_write_callable(start_server):
    s = start_server()
    r = s.get("/write")
    assert r.status == 200 and r.complete
    assert r.body == b"written-1;written-2;returned"


def test_exc_info_before_headers_sent_replaces_status(start_server):
    s = start_server()
    r = s.get("/excinfo_before")
    assert r.status == 500 and r.reason == "Internal Oops", r
    assert r.body == b"oops handled"


def test_exc_info_after_headers_sent_reraises(start_server, tmp_path):
    log = tmp_path / "error.log"
    s = start_server("wsgiapp:app", "-w", "1", "--error-logfile", str(log))
    pid = int(s.get("/pid").body)
    with s.conn() as c:
        c.send(build_request("GET", "/excinfo_after", close=True))
        r = c.read_response(timeout=10)
        assert c.closed_by_peer(5)
    assert r.status == 200, r
    assert r.body.startswith(b"part1\n")
    assert b"part2" not in r.body
    assert not r.complete, "a response cut by an exception must not look complete"
    assert wait_for(lambda: log.exists() and "exc_info re-raised: late-error-after-headers"
                    in log.read_text(), 5), "start_response(exc_info) did not re-raise"
    assert int(s.get("/pid").body) == pid


@pytest.mark.unitcorn_only("gunicorn sends the headers on an empty first chunk")
def test_headers_only_sent_with_first_nonempty_chunk(start_server):
    """start_response(200) then yield b'' then raise: nothing was sent yet, so a 500."""
    s = start_server()
    r = s.get("/raise_after_empty")
    assert r.status == 500, r


def test_repeated_response_headers_kept_separate(start_server):
    s = start_server()
    r = s.get("/cookies")
    assert r.status == 200
    assert r.header_all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_crlf_in_response_header_is_never_sent(start_server):
    """An app header value with CR/LF is an app error (gunicorn: 500), never header injection."""
    s = start_server()
    with s.conn() as c:
        c.send(build_request("GET", "/inject", close=True))
        raw = c.read_to_eof(timeout=10)
    assert b"\r\nX-Injected:" not in raw, raw[:500]
    assert raw.startswith(b"HTTP/1.1 500"), raw[:200]


# ------------------------------------------------------------------------------- close()

def _close_log(tmp_path):
    return tmp_path / "close.log"


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_close_called_on_normal_response(start_server, tmp_path):
    log = _close_log(tmp_path)
    s = start_server("wsgiapp:app", env_extra={"CLOSE_LOG": log})
    r = s.get("/closable?id=normal&n=3")
    assert r.status == 200 and r.body == b"chunk 1\nchunk 2\nchunk 3\n"
    assert wait_for(lambda: "normal closed after 3 chunks" in _lines(log), 5), _lines(log)


def test_close_called_when_iterable_raises(start_server, tmp_path):
    log = _close_log(tmp_path)
    s = start_server("wsgiapp:app", env_extra={"CLOSE_LOG": log})
    with s.conn() as c:
        c.send(build_request("GET", "/closable_raise?id=raiser", close=True))
        r = c.read_response()
    assert r.status == 200 and r.body.startswith(b"chunk 1\n")
    assert wait_for(lambda: "raiser closed after 1 chunks" in _lines(log), 5), _lines(log)


def test_close_called_when_client_disconnects_mid_stream(start_server, tmp_path):
    log = _close_log(tmp_path)
    s = start_server("wsgiapp:app", "-w", "1", env_extra={"CLOSE_LOG": log})
    c = s.conn()
    c.send(build_request("GET", "/closable?id=gone&n=200&delay=0.05"))
    c.read_until(b"chunk 1\n", timeout=5)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()                                   # RST: the client is gone
    t0 = time.monotonic()
    line = wait_for(lambda: [ln for ln in _lines(log) if ln.startswith("gone closed")], 8)
    assert line, "close() not called within 8 s of the client going away"
    sent = int(line[0].split()[3])
    assert sent < 150, "the app kept being iterated (%d chunks) after the client left" % sent
    assert time.monotonic() - t0 < 8
    # and the worker still serves
    assert s.get("/hello").status == 200


def test_close_called_on_head_request(start_server, tmp_path):
    log = _close_log(tmp_path)
    s = start_server("wsgiapp:app", env_extra={"CLOSE_LOG": log})
    r = s.request("HEAD", "/closable?id=head&n=2")
    assert r.status == 200 and r.body == b""
    assert wait_for(lambda: any(ln.startswith("head closed") for ln in _lines(log)), 5)


# ----------------------------------------------------------------------- Content-Length

@pytest.mark.unitcorn_only("gunicorn's gthread worker keeps such a connection open (it hangs)")
def test_app_content_length_larger_than_body_closes_connection(start_server):
    s = start_server("wsgiapp:app", "--keep-alive", "30")
    with s.conn() as c:
        c.send(build_request("GET", "/cl_big"))
        head = c.read_head(timeout=5)
        assert head.status == 200 and head.header("content-length") == "100"
        t0 = time.monotonic()
        got = c.read_exact(100, timeout=10)
        assert got == b"0123456789", got
        assert c.eof, "connection not closed after a short body"
        assert time.monotonic() - t0 < 5
    assert s.get("/hello").status == 200


def test_app_content_length_smaller_than_body_never_sends_more(start_server):
    s = start_server("wsgiapp:app", "--keep-alive", "5")
    with s.conn() as c:
        c.send(build_request("GET", "/cl_small") + build_request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello"
        rest = b""
        try:
            nxt = c.read_response(timeout=5)
            rest = nxt.raw_head + nxt.body
            assert nxt.status == 200 and nxt.body == b"Hello, World!\n"
        except Exception:  # the server may instead close the connection
            rest = c.buf
            assert c.eof, "neither a clean next response nor a close after /cl_small"
    assert b"EXTRA" not in rest


# ----------------------------------------------------------------------- file_wrapper

def test_file_wrapper(start_server, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 123)
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    log = _close_log(tmp_path)
    s = start_server("wsgiapp:app", env_extra={"CLOSE_LOG": log})
    r = s.get("/file?id=fw&path=%s" % f, timeout=30)
    assert r.status == 200 and r.complete
    assert r.header("content-length") == str(len(data))
    assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert wait_for(lambda: "fw file closed" in _lines(log), 5), "file_wrapper close() not called"


def test_file_wrapper_keepalive_then_next_request(start_server, tmp_path):
    data = b"0123456789abcdef" * 4096
    f = tmp_path / "small.bin"
    f.write_bytes(data)
    s = start_server()
    with s.conn() as c:
        c.send(build_request("GET", "/file?path=%s" % f) + build_request("GET", "/hello"))
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.body == data
    assert r2.body == b"Hello, World!\n"


def test_file_wrapper_file_truncated_while_sent_ends_only_that_response(start_server,
                                                                       tmp_path):
    """A file truncated while a slow client downloads it: that response ends (cut short,
    the connection closed, the error logged); the worker lives on and serves the next
    request. (A mapping of the file would fault, SIGBUS, and take the worker with it.)"""
    data = b"y" * (64 << 20)
    f = tmp_path / "shrinks.bin"
    f.write_bytes(data)
    s = start_server("wsgiapp:app", "-w", "1")
    pid = int(s.get("/pid").body)
    with s.conn(timeout=20) as c:
        c.send(build_request("GET", "/file?path=%s" % f))
        r = c.read_head()
        assert r.status == 200 and r.header("content-length") == str(len(data)), r
        time.sleep(0.5)     # the worker fills the socket's buffers and waits
        os.truncate(f, 0)
        got = len(c.buf) + len(c.read_to_eof(timeout=20))
    assert 0 < got < len(data), got
    s.wait_log(r"the file given to wsgi\.file_wrapper ended after \d+ of its %d bytes "
               r"\(truncated while it was sent\); the connection is closed" % len(data))
    r = s.get("/pid")
    assert r.status == 200 and int(r.body) == pid, "the worker did not survive: %r" % r


def _tracer_pid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


def test_file_wrapper_read_by_the_worker_not_iterated(start_server, tmp_path):
    """A file_wrapper response over a real file is read by the worker with pread(2), a
    large chunk at a time (strace shows the worker's preads adding up to the file's size),
    not by iterating the wrapper 64 KiB at a time in Python."""
    strace = shutil.which("strace")
    assert strace, "strace is needed (tests/run.sh installs it)"
    data = os.urandom(2 * 1024 * 1024 + 7)
    f = tmp_path / "sf.bin"
    f.write_bytes(data)
    s = start_server("wsgiapp:app", "-w", "1")
    (w,) = s.wait_workers(1)
    out = tmp_path / "strace.txt"
    tr = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=pread64", "-p", str(w),
                           "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          start_new_session=True)
    try:
        threads = os.listdir("/proc/%d/task" % w)
        assert wait_for(lambda: all(_tracer_pid(int(t)) != 0 for t in threads
                                    if os.path.exists("/proc/%d/task/%s" % (w, t))), 10), \
            "strace did not attach"
        r = s.get("/file?path=%s" % f, timeout=30)
        assert r.status == 200 and r.body == data
    finally:
        tr.send_signal(signal.SIGINT)
        try:
            tr.wait(10)
        except subprocess.TimeoutExpired:
            tr.kill()
            tr.wait(5)
    calls = [int(n) for n in re.findall(r"pread64\(.*\)\s*=\s*(\d+)", out.read_text())]
    assert calls, "no pread call seen:\n%s" % out.read_text()[:2000]
    assert sum(calls) == len(data) and len(calls) <= 16, calls


# ---------------------------------------------------------------------------- exceptions

def test_exception_before_response_is_500_with_traceback(start_server, tmp_path):
    log = tmp_path / "error.log"
    s = start_server("wsgiapp:app", "-w", "1", "--error-logfile", str(log))
    pid = int(s.get("/pid").body)
    r = s.get("/raise_before")
    assert r.status == 500, r
    assert wait_for(lambda: log.exists() and "boom-before-response" in log.read_text(), 5)
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: boom-before-response" in text
    assert int(s.get("/pid").body) == pid, "worker died after an app exception"


def test_exception_after_first_chunk_closes_connection(start_server, tmp_path):
    log = tmp_path / "error.log"
    s = start_server("wsgiapp:app", "-w", "1", "--keep-alive", "30",
                     "--error-logfile", str(log))
    pid = int(s.get("/pid").body)
    with s.conn() as c:
        c.send(build_request("GET", "/raise_after"))
        r = c.read_response(timeout=10)
        closed = c.closed_by_peer(5)
    assert r.status == 200
    assert r.body.startswith(b"first chunk\n")
    assert not r.complete, "a response cut by an exception must not look complete"
    assert closed, "connection not closed after the app raised mid-response"
    assert wait_for(lambda: log.exists() and "boom-after-first-chunk" in log.read_text(), 5)
    assert int(s.get("/pid").body) == pid


# ---------------------------------------------------------------------------------- flask

def test_flask_json_and_form(start_server):
    s = start_server("flaskapp:app", ready_path="/json")
    r = s.get("/json?a=1&b=two")
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    j = r.json()
    assert j["hello"] == "flask" and j["args"] == {"a": "1", "b": "two"}
    r = s.request("POST", "/form", headers=[("Content-Type",
                                             "application/x-www-form-urlencoded")],
                  body=b"name=caf%C3%A9&n=3")
    assert r.status == 200
    assert r.json() == {"form": {"name": "caf\u00e9", "n": "3"},
                        "content_type": "application/x-www-form-urlencoded"}


def test_flask_multipart_upload(start_server):
    s = start_server("flaskapp:app", ready_path="/json")
    boundary = "XyZbOuNdArY"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue-1\r\n"
            "--%s--\r\n" % (boundary, boundary)).encode()
    r = s.request("POST", "/form", headers=[
        ("Content-Type", "multipart/form-data; boundary=%s" % boundary)], body=body)
    assert r.status == 200, r
    assert r.json()["form"] == {"field": "value-1"}

