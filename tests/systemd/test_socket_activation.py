"""Socket activation without systemd: `systemd-socket-activate` passes listening sockets
the way systemd does (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES) and execs unitcorn on the
first connection, in place (its pid is the master's)."""
import os
import shutil
import signal
import socket

import pytest

from harness import (APPS, Conn, Server, alive, base_env, build_request, children, free_port,
                     listening_inodes, server_cmd, socket_inodes, wait_for)

pytestmark = pytest.mark.unitcorn_only

ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.fixture
def activated(tmp_path):
    """activated(listen_args, *unitcorn_args) -> Server whose pid is unitcorn's master."""
    started = []

    def start(listen, *args):
        assert ACTIVATE, "systemd-socket-activate is missing (Debian package systemd)"
        env = base_env()
        cmd = [ACTIVATE] + listen
        # It scrubs the environment: pass on what the server needs.
        for name in ("VIRTUAL_ENV", "PATH", "PYTHONDONTWRITEBYTECODE"):
            cmd += ["-E", name]
        cmd += server_cmd() + ["-w", "2"] + list(args)
        s = Server(cmd, env, APPS, tmp_path, name="activated%d" % len(started))
        started.append(s)
        # systemd-socket-activate binds its sockets first: wait for them.
        where = listen[1]
        if where.startswith("/"):
            assert wait_for(lambda: os.path.exists(where), 10), where
        else:
            port = int(where.rsplit(":", 1)[1])
            assert wait_for(lambda: listening_inodes(port), 10), where
        return s

    yield start
    for s in started:
        s.kill_all()


def _get(addr, path, family=None):
    c = Conn(addr, family=family)
    try:
        c.send(build_request("GET", path, headers=[("Connection", "close")]))
        return c.read_response(timeout=15)
    finally:
        c.close()


def test_passed_tcp_socket_is_served_as_is(activated):
    port = free_port()
    s = activated(["-l", "127.0.0.1:%d" % port, "--fdname=web"], "wsgiapp:app")
    # The first connection makes systemd-socket-activate exec unitcorn (same pid).
    r = _get(("127.0.0.1", port), "/pid")
    assert r.status == 200
    assert int(r.body) in s.wait_workers(2)
    # One listening socket on the port, the one passed: no second bind or listen.
    inodes = listening_inodes(port)
    assert len(inodes) == 1 and set(inodes) <= socket_inodes(s.pid), inodes
    # The app does not see the variables (nor take the sockets for its own).
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        assert _get(("127.0.0.1", port), "/osenv?k=" + name).body == b"<unset>"
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0


def test_bind_by_name_and_extra_binds_are_bound(activated):
    port, other = free_port(), free_port()
    s = activated(["-l", "127.0.0.1:%d" % port, "--fdname=web"], "-b", "fd://web",
                  "-b", "127.0.0.1:%d" % other, "wsgiapp:app")
    assert _get(("127.0.0.1", port), "/hello").status == 200
    assert wait_for(lambda: listening_inodes(other), 10)
    assert _get(("127.0.0.1", other), "/hello").status == 200
    assert len(listening_inodes(port)) == 1


def test_unknown_socket_name_stops_with_a_clear_error(activated):
    port = free_port()
    s = activated(["-l", "127.0.0.1:%d" % port, "--fdname=web"], "-b", "fd://api",
                  "wsgiapp:app")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        pass
    assert s.wait_exit(15) not in (0, None)
    assert "fd://api" in s.stderr() and "api" in s.stderr(), s.stderr()[-2000:]


def test_passed_unix_socket_is_never_unlinked(activated, tmp_path):
    path = str(tmp_path / "web.sock")
    s = activated(["-l", path, "--fdname=web"], "wsgiapp:app")
    r = _get(path, "/hello")
    assert r.status == 200
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0, s.stderr()[-3000:]
    assert socket.socket(socket.AF_UNIX).connect_ex(path) != 2, "socket file removed"


def test_usr2_hands_the_passed_socket_on_by_name(activated):
    """The new master of a binary upgrade gets the socket systemd passed, under its name,
    so `bind = fd://web` still finds it; the old master's exit does not close it."""
    port = free_port()
    s = activated(["-l", "127.0.0.1:%d" % port, "--fdname=web"], "-b", "fd://web",
                  "wsgiapp:app")
    assert _get(("127.0.0.1", port), "/pid").status == 200
    inodes = listening_inodes(port)
    s.signal(signal.SIGUSR2)
    (new,) = s.wait_log(r"binary upgrade: started new master (\d+)", timeout=10)
    new = int(new)
    assert s.wait_exit(15) == 0, s.stderr()[-2000:]
    r = _get(("127.0.0.1", port), "/pid")
    assert r.status == 200
    assert int(r.body) in wait_for(lambda: children(new), 5)
    # The very socket systemd passed: same inode, held by the new master.
    assert listening_inodes(port) == inodes and set(inodes) <= socket_inodes(new)
    os.kill(new, signal.SIGQUIT)
    assert wait_for(lambda: not alive(new), 15)
