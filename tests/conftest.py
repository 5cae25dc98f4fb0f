"""Fixtures of the integration suite: `start_server` starts the real server, cleans it up."""

import grp
import os
import pwd
import shutil
import stat
import subprocess

import pytest

from harness import (APPS, IS_GUNICORN, SERVER_KIND, UNITCORN_BIN, VENV, Server, alive,
                     base_env, free_port, pgrp_members, server_cmd)


def pytest_report_header(config):
    what = str(VENV / "bin" / "gunicorn") if IS_GUNICORN else str(UNITCORN_BIN)
    return "server under test: %s (%s); app venv: %s" % (SERVER_KIND, what, VENV)


def pytest_sessionstart(session):
    if not IS_GUNICORN:
        ok = UNITCORN_BIN.is_file() and os.stat(UNITCORN_BIN).st_mode & stat.S_IXUSR
        if not ok:
            pytest.exit("unitcorn binary not found or not executable at %s "
                        "(set UNITCORN_BIN or run cargo build --release)" % UNITCORN_BIN,
                        returncode=3)
    if not (VENV / "bin" / "python").exists():
        pytest.exit("test venv missing at %s (tests/run.sh creates it)" % VENV, returncode=3)


def pytest_collection_modifyitems(config, items):
    # TEST_RUN_UNITCORN_ONLY=1 runs them against gunicorn anyway, to see them catch its
    # differing behaviour (a check of the tests themselves).
    if not IS_GUNICORN or os.environ.get("TEST_RUN_UNITCORN_ONLY") == "1":
        return
    for item in items:
        m = item.get_closest_marker("unitcorn_only")
        if m:
            reason = m.args[0] if m.args else m.kwargs.get("reason", "")
            item.add_marker(pytest.mark.skip(reason="unitcorn-only: " + reason))


def addr_of(bind):
    if bind.startswith("unix:"):
        return bind[len("unix:"):]
    if bind.startswith("["):
        host, _, port = bind[1:].partition("]:")
        return (host, int(port))
    host, _, port = bind.rpartition(":")
    return (host, int(port))


@pytest.fixture
def servers():
    """Servers a test starts itself (harness.Server, with a command of its own): every
    process of theirs is killed when it ends, and one left alive fails the test."""
    started = []
    yield started
    for s in started:
        s.kill_all()
    leaks = [p for s in started for p in s._seen if alive(p)]
    assert not leaks, "processes left after the test: %r" % leaks


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(app, *args, ...) -> Server (ready unless wait=False).

    app: the APP argument (None: none given). args: extra command-line arguments.
    bind: the -b value (default 127.0.0.1:<free port>; False: no -b at all).
    env: full environment (default base_env(venv) plus env_extra).
    """
    servers = []

    def start(app="wsgiapp:app", *args, bind=None, addr=None, env=None, venv=True,
              env_extra=None, cwd=APPS, wait=True, pass_fds=(), ready_path="/",
              ready_timeout=30, prefix=()):
        # prefix: a wrapper the server runs under (prlimit, taskset), which execs it.
        cmd = list(prefix) + list(server_cmd())
        if bind is None:
            bind = "127.0.0.1:%d" % free_port()
        if bind is not False:
            binds = bind if isinstance(bind, (list, tuple)) else [bind]
            for b in binds:
                cmd += ["-b", b]
            if addr is None and not binds[0].startswith("fd://"):
                addr = addr_of(binds[0])
        cmd += [str(a) for a in args]
        if app:
            cmd.append(app)
        if env is None:
            env = base_env(venv=venv, **(env_extra or {}))
        s = Server(cmd, env, cwd, tmp_path, addr=addr, pass_fds=pass_fds,
                   name="server%d" % len(servers))
        servers.append(s)
        if wait:
            s.wait_ready(timeout=ready_timeout, path=ready_path)
        return s

    yield start
    leaks = []
    for s in servers:
        s.kill_all()
        leaks += [p for p in set(pgrp_members(s.pid)) | s._seen if alive(p)]
    assert not leaks, "processes left after the test: %r" % leaks


# ----- the seed deployment's user and directories (its config runs unchanged, as root)

@pytest.fixture
def natadmin():
    """The seed's user and group, made for the test when missing (removed after)."""
    assert os.geteuid() == 0, "the seed test runs as root (CI runs the suite as root)"
    created = False
    try:
        pwd.getpwnam("natadmin")
    except KeyError:
        subprocess.run(["useradd", "-r", "-M", "-U", "-s", "/usr/sbin/nologin", "natadmin"],
                       check=True)
        created = True
    yield pwd.getpwnam("natadmin")
    if created:
        subprocess.run(["userdel", "natadmin"], check=False)
        try:
            grp.getgrnam("natadmin")
            subprocess.run(["groupdel", "natadmin"], check=False)
        except KeyError:
            pass


@pytest.fixture
def seed_dirs():
    made = []
    for d in ("/var/log/gunicorn", "/run"):
        if not os.path.isdir(d):
            os.makedirs(d)
            made.append(d)
    yield
    for f in ("/var/log/gunicorn/access.log", "/var/log/gunicorn/error.log"):
        if "/var/log/gunicorn" in made and os.path.exists(f):
            os.unlink(f)
    for d in reversed(made):
        shutil.rmtree(d, ignore_errors=True)
