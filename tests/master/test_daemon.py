"""-D/--daemon: `unitcorn -D` returns at once; the master, detached (its own session,
stdio on /dev/null), writes its pid file, serves, and stops on QUIT to that pid."""

import os
import signal
import time
import uuid

import pytest

from harness import (Conn, IS_GUNICORN, alive, base_env, build_request, children, cmdline,
                     descendants, free_port, run_cli, stat_fields, title, wait_for)


@pytest.fixture
def daemon_tag():
    """A tag put in the environment of a daemonized server: at teardown, every process
    carrying it (the daemon is not in our process group, nor our descendant) is killed."""
    tag = uuid.uuid4().hex

    def tagged():
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if b"UNITCORN_TEST_TAG=" + tag.encode() in env.split(b"\0"):
                out.append(int(name))
        return out

    yield tag
    left = [p for p in tagged() if alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    gone = wait_for(lambda: not any(alive(p) for p in tagged()), 10)
    assert not left, "daemon processes left after the test: %r" % left
    assert gone


def test_daemon_detaches_serves_and_stops_on_quit(tmp_path, daemon_tag):
    pidfile = tmp_path / "d.pid"
    log = tmp_path / "d.log"
    port = free_port()
    env = base_env(UNITCORN_TEST_TAG=daemon_tag)
    args = ["-D", "-p", str(pidfile), "--error-logfile", str(log), "-b", "127.0.0.1:%d" % port,
            "-w", "2", "wsgiapp:app"]
    t0 = time.monotonic()
    r = run_cli(args, env=env, timeout=15)
    took = time.monotonic() - t0
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert took < 5, "unitcorn -D took %.2f s to return" % took
    assert r.stdout == "", r.stdout

    def the_pid():
        try:
            text = pidfile.read_text()
        except FileNotFoundError:
            return None
        return int(text) if text.strip() else None
    pid = wait_for(the_pid, 10)
    assert pid, "no pid file; log:\n%s" % (log.read_text() if log.exists() else "(none)")
    assert alive(pid)
    st = stat_fields(pid)
    me = os.getpid()
    assert st["ppid"] != me and pid not in descendants(me), st
    assert st["session"] != os.getsid(0), st
    if not IS_GUNICORN:         # daemon(3): one fork, then setsid in the process that stays
        assert st["session"] == pid and st["pgrp"] == pid, st
    for fd in (0, 1, 2):
        assert os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/null", fd
    if not IS_GUNICORN:
        assert title(pid) == "unitcorn: master [wsgiapp:app]", cmdline(pid)
    workers = wait_for(lambda: (lambda ws: ws if len(ws) == 2 else None)(children(pid)), 15)
    assert workers, "daemon's workers: %r; log:\n%s" % (children(pid), log.read_text())
    # it serves
    served = set()
    for _ in range(6):
        with Conn(("127.0.0.1", port), timeout=10) as c:
            c.send(build_request("GET", "/pid", close=True))
            resp = c.read_response()
        assert resp.status == 200, resp
        served.add(int(resp.body))
    assert served <= set(workers), (served, workers)
    text = log.read_text()
    assert "Listening at: http://127.0.0.1:%d (%d)" % (port, pid) in text, text
    # QUIT to the pid of the pid file: it stops, the file goes
    os.kill(pid, signal.SIGQUIT)
    assert wait_for(lambda: not alive(pid) and not any(alive(w) for w in workers), 15), \
        "daemon still running after QUIT; log:\n%s" % log.read_text()
    assert wait_for(lambda: not pidfile.exists(), 5), "pid file left after QUIT"
    assert "Shutting down: Master" in log.read_text()
