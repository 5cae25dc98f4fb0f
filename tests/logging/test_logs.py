"""Point 9: logs — the error log on stderr or in --error-logfile, filtered by --log-level;
the access log on stdout (`-`) or in a file, in gunicorn's default format and with its atoms."""

import base64
import datetime
import re
import time

import pytest

from harness import build_request, wait_for

TS = r"\[\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"


def _file_has(path, text, timeout=5):
    return wait_for(lambda: path.exists() and text in path.read_text(errors="replace"), timeout)


def _never_has(read, text, wait=1.5):
    """text does not show up within `wait` seconds (bounded negative check)."""
    return not wait_for(lambda: text in read(), wait)


# ------------------------------------------------------------------------------ error log

def test_error_log_defaults_to_stderr(start_server):
    s = start_server()
    assert s.get("/raise_before").status == 500
    assert wait_for(lambda: "RuntimeError: boom-before-response" in s.stderr(), 5), \
        s.stderr()[-3000:]
    assert "Traceback (most recent call last)" in s.stderr()
    assert "boom-before-response" not in s.stdout()


def test_error_logfile(start_server, tmp_path):
    log = tmp_path / "err.log"
    s = start_server("wsgiapp:app", "--error-logfile", str(log))
    assert s.get("/raise_before").status == 500
    assert _file_has(log, "RuntimeError: boom-before-response")
    assert "Traceback (most recent call last)" in log.read_text()
    assert "boom-before-response" not in s.stderr()


def test_error_logfile_dash_is_stderr(start_server):
    s = start_server("wsgiapp:app", "--error-logfile", "-")
    assert s.get("/raise_before").status == 500
    assert wait_for(lambda: "boom-before-response" in s.stderr(), 5)


@pytest.mark.parametrize("level,logged", [("debug", True), ("info", True), ("warning", True),
                                          ("error", True), ("critical", False)])
def test_log_level_filters_errors(start_server, tmp_path, level, logged):
    log = tmp_path / "err.log"
    s = start_server("wsgiapp:app", "--log-level", level, "--error-logfile", str(log))
    assert s.get("/raise_before").status == 500
    read = lambda: log.read_text(errors="replace") if log.exists() else ""  # noqa: E731
    if logged:
        assert wait_for(lambda: "boom-before-response" in read(), 5), read()[-2000:]
    else:
        assert _never_has(read, "boom-before-response"), read()[-2000:]


@pytest.mark.parametrize("level,logged", [("debug", True), ("info", True), ("warning", False),
                                          ("error", False)])
def test_log_level_filters_info_messages(start_server, tmp_path, level, logged):
    """The listening address is logged at info (as gunicorn's "Listening at: ..." is)."""
    log = tmp_path / "err.log"
    s = start_server("wsgiapp:app", "--log-level", level, "--error-logfile", str(log))
    where = "%s:%d" % s.addr
    read = lambda: log.read_text(errors="replace") if log.exists() else ""  # noqa: E731
    if logged:
        assert wait_for(lambda: where in read(), 5), read()[-2000:]
    else:
        assert _never_has(read, where, wait=1.0), read()[-2000:]


def test_error_log_has_worker_boot_and_app_traceback_lines_in_order(start_server, tmp_path):
    log = tmp_path / "err.log"
    s = start_server("wsgiapp:app", "--error-logfile", str(log))
    s.get("/errors?msg=first-marker")
    s.get("/errors?msg=second-marker")
    assert _file_has(log, "second-marker")
    text = log.read_text()
    assert text.index("first-marker") < text.index("second-marker")


# ----------------------------------------------------------------------------- access log

DEFAULT_LINE = (r'^127\.0\.0\.1 - - ' + TS +
                r' "GET /hello\?q=1 HTTP/1\.1" 200 14 "http://referer\.example/" "agent/1\.0"$')


def _hello_with_agent(s):
    r = s.get("/hello?q=1", headers=[("User-Agent", "agent/1.0"),
                                     ("Referer", "http://referer.example/")])
    assert r.status == 200


def test_access_log_to_stdout_default_format(start_server):
    s = start_server("wsgiapp:app", "--access-logfile", "-")
    _hello_with_agent(s)
    ok = wait_for(lambda: any(re.match(DEFAULT_LINE, ln) for ln in s.stdout().splitlines()), 5)
    assert ok, "no default-format access line on stdout:\n%s" % s.stdout()[-2000:]
    assert "GET /hello?q=1" not in s.stderr()


def test_access_log_to_file_default_format(start_server, tmp_path):
    log = tmp_path / "access.log"
    s = start_server("wsgiapp:app", "--access-logfile", str(log))
    _hello_with_agent(s)
    r = s.get("/missing?x=y")
    assert r.status == 404
    assert _file_has(log, "/missing?x=y")
    lines = log.read_text().splitlines()
    assert any(re.match(DEFAULT_LINE, ln) for ln in lines), lines
    miss = [ln for ln in lines if "/missing?x=y" in ln]
    assert re.match(r'^127\.0\.0\.1 - - ' + TS + r' "GET /missing\?x=y HTTP/1\.1" 404 \d+ "-" "-"$',
                    miss[0]), miss


def test_access_log_off_by_default(start_server):
    s = start_server()
    s.get("/hello?marker=no-access-log-3141")
    assert _never_has(lambda: s.stdout() + s.stderr(), "no-access-log-3141", wait=1.0)


def test_access_log_one_line_per_request_on_keepalive(start_server, tmp_path):
    log = tmp_path / "access.log"
    s = start_server("wsgiapp:app", "--access-logfile", str(log),
                     "--access-logformat", "%(r)s %(s)s")
    with s.conn() as c:
        for i in range(3):
            c.send(build_request("GET", "/hello?n=%d" % i))
            assert c.read_response().status == 200
    assert _file_has(log, "/hello?n=2")
    lines = [ln for ln in log.read_text().splitlines() if "/hello?n=" in ln]
    assert lines == ["GET /hello?n=%d HTTP/1.1 200" % i for i in range(3)]


ATOMS = ("%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(T)s|%(M)s|%(D)s|%(L)s|%(p)s|"
         "%({x-test}i)s|%({Content-Type}o)s|%({REQUEST_METHOD}e)s|%(u)s|%(h)s|%(l)s|%(f)s|"
         "%(a)s|%(r)s|%({x-absent}i)s")


def test_access_log_custom_atoms(start_server, tmp_path):
    log = tmp_path / "access.log"
    s = start_server("wsgiapp:app", "-w", "1", "--access-logfile", str(log),
                     "--access-logformat", ATOMS)
    pid = int(s.get("/pid").body)
    auth = base64.b64encode(b"alice:secret").decode()
    t0 = time.monotonic()
    r = s.get("/sleep?s=0.3", headers=[("X-Test", "xyz-42"), ("Authorization", "Basic " + auth),
                                      ("Referer", "http://ref.example/p"),
                                      ("User-Agent", "atoms-agent/2")])
    took = time.monotonic() - t0
    assert r.status == 200
    assert _file_has(log, "/sleep|")
    line = [ln for ln in log.read_text().splitlines() if "|/sleep|" in ln][0]
    f = line.split("|")
    assert len(f) == 22, f
    (m, U, q, H, st, B, b, T, M, D, L, p, xi, ct, env_method, u, h, l_, ref, agent, req,
     absent) = f
    assert m == "GET"
    assert U == "/sleep"
    assert q == "s=0.3"
    assert H == "HTTP/1.1"
    assert st == "200"
    assert B == str(len(r.body)) and b == str(len(r.body))
    assert T == "0"
    assert 300 <= int(M) <= took * 1000 + 50, M
    assert 300000 <= int(D) <= took * 1e6 + 50000, D
    assert re.match(r"^\d+\.\d{6}$", L) and 0.3 <= float(L) <= took + 0.05, L
    assert int(M) == int(D) // 1000
    assert p == "<%d>" % pid
    assert xi == "xyz-42"
    assert ct == "text/plain"
    assert env_method == "GET"
    assert u == "alice"
    assert h == "127.0.0.1"
    assert l_ == "-"
    assert ref == "http://ref.example/p"
    assert agent == "atoms-agent/2"
    assert req == "GET /sleep?s=0.3 HTTP/1.1"
    assert absent == "-"


def test_access_log_time_atom(start_server, tmp_path):
    log = tmp_path / "access.log"
    s = start_server("wsgiapp:app", "--access-logfile", str(log),
                     "--access-logformat", "%(t)s %(s)s %(U)s %(u)s")
    assert s.get("/missing-page").status == 404
    assert _file_has(log, "/missing-page")
    line = [ln for ln in log.read_text().splitlines() if "/missing-page" in ln][0]
    assert re.match("^" + TS + r" 404 /missing-page -$", line), line
    # the timestamp is now, in local time with its offset
    stamp = re.match(r"^\[([^\]]+)\]", line).group(1)
    got = datetime.datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
    assert abs(got - time.time()) < 120, stamp
