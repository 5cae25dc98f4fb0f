"""Point 3: the TOML configuration file with gunicorn's setting names, precedence
(defaults < file < UNITCORN_CMD_ARGS < command line), errors that name the setting, the file
and the line (exit 1), --print-config (valid TOML), --check-config."""

import re
import tomllib

import pytest

from harness import APPS, base_env, free_port, listening_inodes, run_cli

UNITCORN = pytest.mark.unitcorn_only("TOML configuration files / --print-config TOML are unitcorn's")


def _write(tmp_path, text, name="unitcorn.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _print_config(args, env=None):
    p = run_cli(list(args) + ["--print-config"], env=env)
    assert p.returncode == 0, "exit %s, stderr:\n%s" % (p.returncode, p.stderr)
    try:
        return tomllib.loads(p.stdout)
    except tomllib.TOMLDecodeError as e:
        raise AssertionError("--print-config output is not valid TOML (%s):\n%s" % (e, p.stdout))


@UNITCORN
def test_config_file_names_the_app_and_binds(start_server, tmp_path):
    port = free_port()
    cfg = _write(tmp_path, 'wsgi_app = "wsgiapp:app"\nbind = ["127.0.0.1:%d"]\nworkers = 2\n'
                 'raw_env = ["FROM_TOML=yes"]\n' % port)
    s = start_server(None, "-c", str(cfg), bind=False, addr=("127.0.0.1", port))
    s.wait_workers(2)
    assert s.get("/hello").body == b"Hello, World!\n"
    assert s.get("/osenv?k=FROM_TOML").body == b"yes"


@UNITCORN
def test_config_long_flag_and_app_argument_overrides_wsgi_app(start_server, tmp_path):
    port = free_port()
    cfg = _write(tmp_path, 'wsgi_app = "wsgiapp:app"\nbind = ["127.0.0.1:%d"]\n' % port)
    s = start_server("bareapp", "--config", str(cfg), bind=False, addr=("127.0.0.1", port))
    assert s.get("/").body == b"bare-module-application\n"


LAYERS = {
    "file": 'workers = 2\nkeepalive = 5\nloglevel = "warning"\nwsgi_app = "wsgiapp:app"\n',
    "env": "-w 3 --keep-alive 6",
    "cli": ["-w", "4"],
}


@pytest.mark.parametrize("use_file,use_env,use_cli,workers,keepalive,loglevel", [
    (False, False, False, 1, 2, "info"),     # defaults
    (True, False, False, 2, 5, "warning"),   # file over defaults
    (True, True, False, 3, 6, "warning"),    # UNITCORN_CMD_ARGS over file
    (True, True, True, 4, 6, "warning"),     # command line over UNITCORN_CMD_ARGS
    (True, False, True, 4, 5, "warning"),    # command line over file
    (False, True, False, 3, 6, "info"),      # UNITCORN_CMD_ARGS over defaults
    (False, True, True, 4, 6, "info"),
])
@UNITCORN
def test_precedence(tmp_path, use_file, use_env, use_cli, workers, keepalive, loglevel):
    args = []
    if use_file:
        args += ["-c", str(_write(tmp_path, LAYERS["file"]))]
    if use_cli:
        args += LAYERS["cli"]
    env = base_env(UNITCORN_CMD_ARGS=LAYERS["env"] if use_env else None)
    conf = _print_config(args + ["wsgiapp:app"], env=env)
    assert (conf["workers"], conf["keepalive"], conf["loglevel"]) == (workers, keepalive, loglevel)


@UNITCORN
def test_precedence_live_worker_count(start_server, tmp_path):
    """File says 2 workers, UNITCORN_CMD_ARGS says 3: 3 worker processes run."""
    cfg = _write(tmp_path, "workers = 2\n")
    s = start_server("wsgiapp:app", "-c", str(cfg), env=base_env(UNITCORN_CMD_ARGS="-w 3"))
    s.wait_workers(3)


@UNITCORN
def test_gunicorn_cmd_args_honoured(tmp_path):
    conf = _print_config(["wsgiapp:app"], env=base_env(GUNICORN_CMD_ARGS="--keep-alive 11"))
    assert conf["keepalive"] == 11


def _start_fails(args, timeout=15):
    p = run_cli(args, timeout=timeout)
    return p


@UNITCORN
def test_unknown_setting_names_setting_file_and_line(tmp_path):
    cfg = _write(tmp_path, '# a comment\nworkers = 2\nwokers = 3\nkeepalive = 4\n')
    port = free_port()
    p = _start_fails(["-c", str(cfg), "-b", "127.0.0.1:%d" % port, "wsgiapp:app"])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "wokers" in p.stderr
    assert str(cfg) in p.stderr
    assert re.search(r"line\s*3\b|:3\b", p.stderr), p.stderr
    assert listening_inodes(port) == []


@pytest.mark.parametrize("line,setting", [
    ('workers = "many"', "workers"),
    ("bind = 8000", "bind"),
    ('preload_app = "yes please"', "preload_app"),
    ("keepalive = -3", "keepalive"),
    ("loglevel = 5", "loglevel"),
])
@UNITCORN
def test_ill_typed_setting_names_setting_file_and_line(tmp_path, line, setting):
    cfg = _write(tmp_path, 'wsgi_app = "wsgiapp:app"\n\n%s\ntimeout = 10\n' % line)
    p = _start_fails(["-c", str(cfg)])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert setting in p.stderr
    assert str(cfg) in p.stderr
    assert re.search(r"line\s*3\b|:3\b", p.stderr), p.stderr


@UNITCORN
def test_toml_syntax_error_names_file_and_line(tmp_path):
    cfg = _write(tmp_path, 'workers = 2\nbind = ["127.0.0.1:1"\n')
    p = _start_fails(["-c", str(cfg), "wsgiapp:app"])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert str(cfg) in p.stderr
    assert re.search(r"line\s*[23]\b|:[23]\b", p.stderr), p.stderr


@UNITCORN
def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.toml"
    p = _start_fails(["-c", str(missing), "wsgiapp:app"])
    assert p.returncode != 0
    assert str(missing) in p.stderr


@UNITCORN
def test_print_config_reflects_file_values(tmp_path):
    cfg = _write(tmp_path, 'wsgi_app = "factory:create_app()"\nbind = ["unix:/tmp/u.sock", '
                 '"127.0.0.1:7001"]\nthreads = 3\nmax_requests = 77\naccesslog = "-"\n'
                 'access_log_format = "%(h)s %(s)s"\nraw_env = ["A=B"]\npreload_app = true\n'
                 'proc_name = "named"\nlimit_request_line = 1234\n')
    conf = _print_config(["-c", str(cfg)])
    assert conf["wsgi_app"] == "factory:create_app()"
    assert conf["bind"] == ["unix:/tmp/u.sock", "127.0.0.1:7001"]
    assert conf["threads"] == 3
    assert conf["max_requests"] == 77
    assert conf["accesslog"] == "-"
    assert conf["access_log_format"] == "%(h)s %(s)s"
    assert conf["raw_env"] == ["A=B"]
    assert conf["preload_app"] is True
    assert conf["proc_name"] == "named"
    assert conf["limit_request_line"] == 1234


@UNITCORN
def test_print_config_round_trips_as_a_config_file(tmp_path):
    """The printed settings are themselves a valid config file giving the same settings."""
    first = _print_config(["-w", "3", "--keep-alive", "7", "-b", "127.0.0.1:7002",
                           "--access-logfile", "-", "wsgiapp:app"])
    again_file = tmp_path / "printed.toml"
    p = run_cli(["-w", "3", "--keep-alive", "7", "-b", "127.0.0.1:7002",
                 "--access-logfile", "-", "wsgiapp:app", "--print-config"])
    again_file.write_text(p.stdout)
    second = _print_config(["-c", str(again_file)])
    ignore = {"config", "print_config", "check_config"}
    a = {k: v for k, v in first.items() if k not in ignore}
    b = {k: v for k, v in second.items() if k not in ignore}
    assert a == b


@UNITCORN
def test_print_config_uses_gunicorn_setting_names():
    conf = _print_config(["wsgiapp:app"])
    for name in ("bind", "backlog", "workers", "threads", "worker_connections", "timeout",
                 "graceful_timeout", "keepalive", "max_requests", "max_requests_jitter",
                 "chdir", "preload_app", "raw_env", "limit_request_line",
                 "limit_request_fields", "limit_request_field_size", "forwarded_allow_ips",
                 "loglevel", "errorlog", "access_log_format", "wsgi_app"):
        assert name in conf, name
    assert conf["chdir"] == str(APPS)


class TestCheckConfig:
    """--check-config: exit 0 for a good config and app, non-zero otherwise; never serves."""

    def test_good_app(self):
        port = free_port()
        p = run_cli(["--check-config", "-b", "127.0.0.1:%d" % port, "wsgiapp:app"])
        assert p.returncode == 0, p.stderr
        assert listening_inodes(port) == []

    @UNITCORN
    def test_good_config_and_app(self, tmp_path):
        cfg = _write(tmp_path, 'wsgi_app = "wsgiapp:app"\nworkers = 2\n')
        port = free_port()
        p = run_cli(["--check-config", "-c", str(cfg), "-b", "127.0.0.1:%d" % port])
        assert p.returncode == 0, p.stderr
        assert listening_inodes(port) == []

    @pytest.mark.parametrize("app", ["no_such_module_xyz:app", "broken_import:app",
                                     "wsgiapp:no_such_callable"])
    def test_bad_app(self, app):
        p = run_cli(["--check-config", app])
        assert p.returncode != 0, (p.stdout, p.stderr)

    @UNITCORN
    def test_bad_setting(self, tmp_path):
        cfg = _write(tmp_path, 'wsgi_app = "wsgiapp:app"\nwokers = 2\n')
        p = run_cli(["--check-config", "-c", str(cfg)])
        assert p.returncode == 1
        assert "wokers" in p.stderr
