"""Point 2: the gunicorn-compatible command line — APP forms, bind forms (HOST, HOST:PORT,
[::1]:PORT, unix:PATH, fd://N, repeated -b), -w default ($WEB_CONCURRENCY else 1), every
listed flag accepted and reflected by --print-config, -v/--version."""

import os
import re
import socket
import tomllib

import pytest

from harness import (APPS, IS_GUNICORN, Conn, base_env, build_request, free_port,
                     listening_inodes, run_cli, socket_inodes, wait_for)


# ------------------------------------------------------------------------------- version

@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version(flag):
    p = run_cli([flag])
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert re.search(r"\d+\.\d+\.\d+", out), out
    if not IS_GUNICORN:
        assert "unitcorn" in out.lower(), out


# ------------------------------------------------------------------------------ APP forms

@pytest.mark.parametrize("app,expected", [
    ("wsgiapp:app", b"Hello, World!\n"),
    ("wsgiapp:application", b"Hello, World!\n"),
    ("factory:app", b"factory-module-level-app\n"),
    ("factory:create_app()", b"factory:default\n"),
    ("factory:create_app('arg-1')", b"factory:arg-1\n"),
    ('factory:create_app("dq")', b"factory:dq\n"),
    ("bareapp", b"bare-module-application\n"),
])
def test_app_forms(start_server, app, expected):
    s = start_server(app)
    r = s.get("/")
    assert r.status == 200
    assert r.body == expected


def test_app_missing_callable_fails(start_server):
    s = start_server("wsgiapp:no_such_callable", wait=False)
    rc = s.wait_exit(15)
    assert rc is not None and rc != 0, "server with a missing callable did not exit non-zero"
    assert "no_such_callable" in s.stderr()


# ------------------------------------------------------------------------------ bind forms

def test_bind_host_port(start_server):
    port = free_port()
    s = start_server(bind="127.0.0.1:%d" % port)
    assert s.get("/hello").body == b"Hello, World!\n"


def test_bind_ipv6(start_server):
    port = free_port("::1")
    s = start_server(bind="[::1]:%d" % port)
    with Conn(("::1", port)) as c:
        c.send(build_request("GET", "/environ", host="[::1]:%d" % port, close=True))
        r = c.read_response()
    assert r.status == 200
    assert r.json()["values"]["REMOTE_ADDR"] == "::1"
    assert s.addr == ("::1", port)


def test_bind_unix_socket(start_server, tmp_path):
    path = str(tmp_path / "app.sock")
    s = start_server(bind="unix:" + path)
    assert os.path.exists(path)
    with Conn(path) as c:
        c.send(build_request("GET", "/hello", host="localhost", close=True))
        r = c.read_response()
    assert r.status == 200 and r.body == b"Hello, World!\n"
    with Conn(path) as c:
        c.send(build_request("GET", "/environ", host="localhost", close=True))
        env = c.read_response().json()["values"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ"


def test_bind_fd(start_server):
    """fd://N: the server serves an already-listening socket it inherited, binds nothing."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    inode = os.fstat(fd).st_ino
    try:
        s = start_server(bind="fd://%d" % fd, addr=("127.0.0.1", port), pass_fds=(fd,))
        lsock.close()                 # only the server holds it now
        r = s.get("/hello")
        assert r.status == 200 and r.body == b"Hello, World!\n"
        assert listening_inodes(port) == [inode], "the server bound a socket of its own"
        assert inode in socket_inodes(s.pid)
    finally:
        lsock.close()


def test_bind_repeated(start_server, tmp_path):
    p4 = free_port()
    p6 = free_port("::1")
    path = str(tmp_path / "second.sock")
    s = start_server(bind=["127.0.0.1:%d" % p4, "[::1]:%d" % p6, "unix:" + path])
    for addr, host in ((("127.0.0.1", p4), "127.0.0.1"), (("::1", p6), "[::1]"),
                       (path, "localhost")):
        with Conn(addr) as c:
            c.send(build_request("GET", "/hello", host=host, close=True))
            r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!\n", addr


def _free_loopback_alias_for_8000():
    """A 127.0.0.X on which port 8000 is free (127.0.0.1:8000 may be in use by a dev server)."""
    for last in range(57, 90):
        host = "127.0.0.%d" % last
        with socket.socket() as so:
            try:
                so.bind((host, 8000))
                return host
            except OSError:
                continue
    return None


def test_bind_host_only_defaults_to_port_8000(start_server):
    host = _free_loopback_alias_for_8000()
    if host is None:
        pytest.skip("port 8000 in use on every loopback alias tried (environment)")
    s = start_server(bind=host, addr=(host, 8000))
    r = s.get("/hello")
    assert r.status == 200 and r.body == b"Hello, World!\n"


def test_default_bind_is_127_0_0_1_8000():
    if IS_GUNICORN:
        p = run_cli(["--print-config", "wsgiapp:app"])
        assert re.search(r"bind\s*=\s*\['127\.0\.0\.1:8000'\]", p.stdout), p.stdout
        return
    p = run_cli(["--print-config", "wsgiapp:app"])
    assert p.returncode == 0, p.stderr
    assert tomllib.loads(p.stdout)["bind"] == ["127.0.0.1:8000"]


# ------------------------------------------------------------------------------- workers

@pytest.mark.parametrize("web_concurrency,expected", [(None, 1), ("3", 3)])
def test_workers_default_from_web_concurrency(start_server, web_concurrency, expected):
    s = start_server(env=base_env(WEB_CONCURRENCY=web_concurrency))
    s.wait_workers(expected)


def test_workers_flag_beats_web_concurrency(start_server):
    s = start_server("wsgiapp:app", "-w", "2", env=base_env(WEB_CONCURRENCY="4"))
    s.wait_workers(2)


# ---------------------------------------------------------------------------- every flag

def test_every_flag_accepted_and_serving(start_server, tmp_path):
    """Start with every flag of the issue at once: it serves, and the observable ones act."""
    pidfile = tmp_path / "app.pid"
    errlog = tmp_path / "error.log"
    acclog = tmp_path / "access.log"
    extra = tmp_path / "extra"
    extra.mkdir()
    s = start_server(
        "wsgiapp:app",
        "--backlog", "64", "-w", "2", "--threads", "2", "--worker-connections", "50",
        "-t", "30", "--graceful-timeout", "5", "--keep-alive", "3",
        "--max-requests", "1000", "--max-requests-jitter", "10",
        "--chdir", str(APPS), "--pythonpath", str(extra), "--preload",
        "-e", "FLAG_TEST_A=alpha", "--env", "FLAG_TEST_B=beta",
        "-p", str(pidfile), "-n", "flagtest",
        "--limit-request-line", "4000", "--limit-request-fields", "50",
        "--limit-request-field_size", "8000", "--forwarded-allow-ips", "127.0.0.1",
        "--log-level", "info", "--error-logfile", str(errlog),
        "--access-logfile", str(acclog),
        "--access-logformat", '%(h)s "%(r)s" %(s)s flagtest',
        cwd=tmp_path)
    s.wait_workers(2)
    assert s.get("/osenv?k=FLAG_TEST_A").body == b"alpha"
    assert s.get("/osenv?k=FLAG_TEST_B").body == b"beta"
    assert s.get("/cwd").body.decode() == str(APPS)
    assert str(extra) in s.get("/syspath").json()
    assert pidfile.read_text().strip() == str(s.pid)
    r = s.get("/hello?x=1")
    assert r.status == 200
    assert wait_for(lambda: acclog.exists() and
                    '127.0.0.1 "GET /hello?x=1 HTTP/1.1" 200 flagtest' in acclog.read_text(), 5)


@pytest.mark.parametrize("flag", ["--log-file", "--error-logfile"])
def test_error_logfile_aliases(start_server, tmp_path, flag):
    log = tmp_path / "e.log"
    s = start_server("wsgiapp:app", flag, str(log))
    s.get("/errors?msg=alias-marker-%s" % flag.strip("-"))
    assert wait_for(lambda: log.exists() and
                    ("alias-marker-%s" % flag.strip("-")) in log.read_text(), 5)


# flag(s) -> (setting, expected TOML value)
PRINT_CONFIG_CASES = [
    (["-b", "127.0.0.1:9999", "--bind", "unix:/tmp/x.sock"],
     "bind", ["127.0.0.1:9999", "unix:/tmp/x.sock"]),
    (["--backlog", "77"], "backlog", 77),
    (["-w", "3"], "workers", 3),
    (["--workers", "5"], "workers", 5),
    (["--threads", "6"], "threads", 6),
    (["--worker-connections", "123"], "worker_connections", 123),
    (["-t", "45"], "timeout", 45),
    (["--timeout", "46"], "timeout", 46),
    (["--graceful-timeout", "12"], "graceful_timeout", 12),
    (["--keep-alive", "9"], "keepalive", 9),
    (["--max-requests", "1000"], "max_requests", 1000),
    (["--max-requests-jitter", "50"], "max_requests_jitter", 50),
    (["--chdir", "/tmp"], "chdir", "/tmp"),
    (["--pythonpath", "/a,/b"], "pythonpath", "/a,/b"),
    (["--preload"], "preload_app", True),
    (["-e", "A=1", "--env", "B=2"], "raw_env", ["A=1", "B=2"]),
    (["-p", "/tmp/x.pid"], "pidfile", "/tmp/x.pid"),
    (["--pid", "/tmp/y.pid"], "pidfile", "/tmp/y.pid"),
    (["-n", "myname"], "proc_name", "myname"),
    (["--name", "other"], "proc_name", "other"),
    (["--limit-request-line", "1000"], "limit_request_line", 1000),
    (["--limit-request-fields", "20"], "limit_request_fields", 20),
    (["--limit-request-field_size", "500"], "limit_request_field_size", 500),
    (["--forwarded-allow-ips", "10.0.0.1,10.0.0.2"], "forwarded_allow_ips",
     ["10.0.0.1", "10.0.0.2"]),
    (["--log-level", "debug"], "loglevel", "debug"),
    (["--error-logfile", "/tmp/e.log"], "errorlog", "/tmp/e.log"),
    (["--log-file", "/tmp/f.log"], "errorlog", "/tmp/f.log"),
    (["--access-logfile", "-"], "accesslog", "-"),
    (["--access-logformat", "%(h)s %(r)s"], "access_log_format", "%(h)s %(r)s"),
]


@pytest.mark.unitcorn_only("gunicorn's --print-config output is not TOML")
@pytest.mark.parametrize("flags,setting,expected", PRINT_CONFIG_CASES,
                         ids=["%s" % c[0][0] for c in PRINT_CONFIG_CASES])
def test_print_config_reflects_flag(flags, setting, expected):
    p = run_cli(flags + ["--print-config", "wsgiapp:app"])
    assert p.returncode == 0, p.stderr
    conf = tomllib.loads(p.stdout)
    assert conf[setting] == expected, (setting, conf.get(setting))
    assert conf["wsgi_app"] == "wsgiapp:app"


GUNICORN_DEFAULTS = {
    "bind": ["127.0.0.1:8000"], "backlog": 2048, "workers": 1, "threads": 1,
    "worker_connections": 1000, "timeout": 30, "graceful_timeout": 30, "keepalive": 2,
    "max_requests": 0, "max_requests_jitter": 0, "limit_request_line": 4094,
    "limit_request_fields": 100, "limit_request_field_size": 8190, "preload_app": False,
    "raw_env": [], "loglevel": "info", "errorlog": "-",
    "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    "forwarded_allow_ips": ["127.0.0.1", "::1"],
}


@pytest.mark.unitcorn_only("gunicorn's --print-config output is not TOML")
def test_print_config_defaults_are_gunicorns():
    p = run_cli(["--print-config", "wsgiapp:app"], cwd=APPS)
    assert p.returncode == 0, p.stderr
    conf = tomllib.loads(p.stdout)
    for key, value in GUNICORN_DEFAULTS.items():
        assert conf.get(key) == value, (key, conf.get(key), value)
    assert "accesslog" not in conf or conf["accesslog"] in ("", None)
    assert conf["chdir"] == str(APPS)


@pytest.mark.unitcorn_only("gunicorn's --print-config output is not TOML")
def test_print_config_does_not_serve(tmp_path):
    """--print-config prints and exits: nothing is bound on the given port."""
    port = free_port()
    p = run_cli(["--print-config", "-b", "127.0.0.1:%d" % port, "wsgiapp:app"])
    assert p.returncode == 0
    assert listening_inodes(port) == []
