"""A setting whose value fails the start names the setting and where it was set, then says
why in an operator's words (issue 14): `cannot listen on 192.0.2.1:8000 (bind, from
--bind): cannot assign requested address: ...`. Where: `FILE:LINE` for a TOML or Python
config file, `--flag` for the command line, `--flag in UNITCORN_CMD_ARGS` (or
GUNICORN_CMD_ARGS) for the environment's arguments, `the environment variable PORT` for a
default read from the environment, `the default` for none.

Each case runs from each source it has (`source` below) and checks the exit status (1: a
setting that fails the start, src/lib.rs `exit_status`) and the line on stderr. The cases
hold as root too: an address of no host (TEST-NET-1), a port this test holds, missing
directories, names no system has.

Elsewhere: errors in the configuration itself (a bad value, an unknown key), which config
reports before anything starts: test_toml.py, test_cli.py, test_python_file.py."""

import json
import re
import shlex
import socket
import textwrap

import pytest

from harness import base_env, run_cli

pytestmark = pytest.mark.unitcorn_only("unitcorn's start-up error wording")

SOURCES = ["toml", "cli", "env"]

FLAGS = {
    "bind": "--bind",
    "user": "--user",
    "group": "--group",
    "pidfile": "--pid",
    "chdir": "--chdir",
    "errorlog": "--error-logfile",
    "accesslog": "--access-logfile",
    "access_log_format": "--access-logformat",
    "statsd_host": "--statsd-host",
    "virtualenv": "--virtualenv",
}


def set_from(source, tmp_path, setting, value, var="UNITCORN_CMD_ARGS"):
    """The arguments and environment that set `setting` to `value` from `source`, and how
    the server should name that origin."""
    if source == "toml":
        cfg = tmp_path / "unitcorn.toml"
        # The setting on line 3, so that a line number is not 1 by luck.
        cfg.write_text("workers = 1\n# the setting under test:\n%s = %s\n"
                       % (setting, json.dumps(value)))
        return ["-c", str(cfg)], {}, "%s:3" % cfg
    flag = FLAGS[setting]
    if source == "cli":
        return [flag, value], {}, flag
    assert source == "env", source
    return [], {var: "%s %s" % (flag, shlex.quote(value))}, "%s in %s" % (flag, var)


def fail_start(source, tmp_path, setting, value, *args, var="UNITCORN_CMD_ARGS"):
    """Start the server with `setting` from `source` (and `args`); it must fail the start
    with status 1. Returns (stderr, "setting, from ORIGIN")."""
    set_args, env, origin = set_from(source, tmp_path, setting, value, var)
    p = run_cli(set_args + list(args) + ["wsgiapp:app"], env=base_env(**env), timeout=30)
    assert p.returncode == 1, (p.returncode, p.stderr[-3000:])
    assert "Listening at" not in p.stderr, p.stderr[-3000:]
    return p.stderr, "%s, from %s" % (setting, origin)


def assert_said(stderr, text):
    lines = [line for line in stderr.splitlines() if text in line]
    assert lines, "expected %r on stderr:\n%s" % (text, stderr[-3000:])


# ----- bind


@pytest.mark.parametrize("source", SOURCES)
def test_bind_to_an_address_of_no_host_names_bind_and_its_origin(tmp_path, source):
    err, by = fail_start(source, tmp_path, "bind", "192.0.2.1:8000")
    assert_said(err, "cannot listen on 192.0.2.1:8000 (%s): cannot assign requested address: "
                     "192.0.2.1 is not an address of this host" % by)


@pytest.mark.parametrize("source", SOURCES)
def test_bind_to_an_address_in_use_names_bind_and_its_origin(tmp_path, source):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        err, by = fail_start(source, tmp_path, "bind", "127.0.0.1:%d" % port)
    assert_said(err, "cannot listen on 127.0.0.1:%d (%s): address already in use: is "
                     "unitcorn, or another server, running there?" % (port, by))


def test_bind_from_port_names_the_environment_variable(tmp_path):
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        p = run_cli(["wsgiapp:app"], env=base_env(PORT=port), timeout=30)
    assert p.returncode == 1, (p.returncode, p.stderr[-3000:])
    assert_said(p.stderr, "cannot listen on 0.0.0.0:%d (bind, from the environment variable "
                          "PORT): address already in use" % port)


def test_bind_from_gunicorn_cmd_args_names_that_variable(tmp_path):
    err, by = fail_start("env", tmp_path, "bind", "192.0.2.1:8000", var="GUNICORN_CMD_ARGS")
    assert by == "bind, from --bind in GUNICORN_CMD_ARGS"
    assert_said(err, "cannot listen on 192.0.2.1:8000 (%s): " % by)


def test_bind_from_a_python_config_file_names_its_line(tmp_path):
    cfg = tmp_path / "gunicorn.conf.py"
    cfg.write_text(textwrap.dedent("""\
        import os

        workers = 1
        bind = ["192.0.2.1:8000"]
    """))
    p = run_cli(["-c", str(cfg), "wsgiapp:app"], timeout=30)
    assert p.returncode == 1, (p.returncode, p.stderr[-3000:])
    assert_said(p.stderr, "cannot listen on 192.0.2.1:8000 (bind, from %s:4): " % cfg)


@pytest.mark.parametrize("source", SOURCES)
def test_a_unix_socket_path_too_long_says_the_limit(tmp_path, source):
    path = str(tmp_path / ("s" * 120))
    err, by = fail_start(source, tmp_path, "bind", "unix:" + path)
    assert_said(err, "cannot listen on unix:%s (%s): the path is %d bytes long, and a unix "
                     "socket's path is at most 107" % (path, by, len(path.encode())))


@pytest.mark.parametrize("source", SOURCES)
def test_a_unix_socket_in_a_missing_directory_names_the_directory(tmp_path, source):
    path = str(tmp_path / "missing" / "app.sock")
    err, by = fail_start(source, tmp_path, "bind", "unix:" + path)
    assert_said(err, "cannot listen on unix:%s (%s): no such file or directory: the directory "
                     "%s does not exist" % (path, by, tmp_path / "missing"))


# ----- user and group


@pytest.mark.parametrize("source", SOURCES)
def test_an_unknown_user_names_user_and_its_origin(tmp_path, source):
    err, by = fail_start(source, tmp_path, "user", "nosuchuser", "-b", "127.0.0.1:0")
    assert_said(err, 'no such user "nosuchuser" (%s): name an existing user' % by)


@pytest.mark.parametrize("source", SOURCES)
def test_an_unknown_group_names_group_and_its_origin(tmp_path, source):
    err, by = fail_start(source, tmp_path, "group", "nosuchgroup", "-u", "root",
                         "-b", "127.0.0.1:0")
    assert_said(err, 'no such group "nosuchgroup" (%s): name an existing group' % by)


# ----- pidfile


@pytest.mark.parametrize("source", SOURCES)
def test_a_pid_file_in_a_missing_directory_names_pidfile_and_its_origin(tmp_path, source):
    path = tmp_path / "missing" / "app.pid"
    err, by = fail_start(source, tmp_path, "pidfile", str(path), "-b", "127.0.0.1:0")
    assert_said(err, "cannot write the pid file %s (%s): the directory %s does not exist"
                % (path, by, path.parent))


@pytest.mark.parametrize("source", SOURCES)
def test_a_pid_file_that_is_a_directory_names_pidfile_and_its_origin(tmp_path, source):
    err, by = fail_start(source, tmp_path, "pidfile", str(tmp_path), "-b", "127.0.0.1:0")
    assert_said(err, "cannot write the pid file %s (%s): it is a directory" % (tmp_path, by))


# ----- chdir


@pytest.mark.parametrize("source", SOURCES)
def test_a_missing_chdir_names_chdir_and_its_origin(tmp_path, source):
    path = tmp_path / "missing"
    err, by = fail_start(source, tmp_path, "chdir", str(path), "-b", "127.0.0.1:0")
    assert_said(err, "cannot chdir to %s (%s): no such directory" % (path, by))


# ----- virtualenv


@pytest.mark.parametrize("source", SOURCES)
def test_a_missing_virtualenv_names_virtualenv_and_its_origin(tmp_path, source):
    path = tmp_path / "missing-venv"
    err, by = fail_start(source, tmp_path, "virtualenv", str(path), "-b", "127.0.0.1:0")
    assert_said(err, "unitcorn: virtualenv %s (%s): no such directory: point the setting at "
                     "the app's virtualenv" % (path, by))


# ----- logs


@pytest.mark.parametrize("source", SOURCES)
def test_an_error_log_that_cannot_be_opened_names_errorlog_and_its_origin(tmp_path, source):
    path = tmp_path / "missing" / "error.log"
    err, by = fail_start(source, tmp_path, "errorlog", str(path), "-b", "127.0.0.1:0")
    assert_said(err, "unitcorn: cannot open the error log %s (%s): the directory %s does not "
                     "exist" % (path, by, path.parent))


@pytest.mark.parametrize("source", SOURCES)
def test_an_access_log_that_cannot_be_opened_fails_the_start_naming_it(tmp_path, source):
    # The master opens it at start: status 1 naming the setting, not every worker's boot (3).
    path = tmp_path / "missing" / "access.log"
    err, by = fail_start(source, tmp_path, "accesslog", str(path), "-b", "127.0.0.1:0")
    assert_said(err, "cannot open the access log %s (%s): the directory %s does not exist"
                % (path, by, path.parent))
    assert "Booting worker" not in err, err[-3000:]


@pytest.mark.parametrize("source", SOURCES)
def test_an_access_log_format_that_does_not_compile_names_it(tmp_path, source):
    err, by = fail_start(source, tmp_path, "access_log_format", "%(nosuchatom)s",
                         "--access-logfile", "-", "-b", "127.0.0.1:0")
    assert_said(err, "unknown atom %%(nosuchatom)s; use one of h l u t r m U q H s B b f a T "
                     "M D L p, or {header}i, {header}o, {variable}e (%s)" % by)


# ----- statsd_host: a warning, not a failure (metrics never stop the server)


@pytest.mark.parametrize("source", SOURCES)
def test_an_unreachable_statsd_host_is_logged_naming_its_origin(start_server, tmp_path, source):
    target = "unix:%s" % (tmp_path / "missing" / "statsd.sock")
    args, env, origin = set_from(source, tmp_path, "statsd_host", target)
    s = start_server("wsgiapp:app", *args, env_extra=env)
    assert s.get("/hello").status == 200
    s.wait_log(r"cannot resolve or connect to the StatsD server %s; no metrics are sent until a "
               r"reload reaches it \(statsd_host, from %s\): No such file or directory"
               % (re.escape(target), re.escape(origin)))
