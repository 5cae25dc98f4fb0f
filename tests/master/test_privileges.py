"""Dropping root (issue 5): the master binds as root, then becomes `user`/`group` before it
imports the app or forks, keeps no capability unless `keep_capabilities` names it, sets
no_new_privs; unix sockets are created under `umask` and given to the user. Read back
from /proc/PID/status of the master and of a worker. The suite runs as root (CI does)."""
import os
import pwd
import grp
import shutil
import signal
import stat
import subprocess
import tempfile
import uuid

import pytest

from harness import (APPS, Server, alive, base_env, free_port, server_cmd, wait_for)

pytestmark = pytest.mark.unitcorn_only

NOBODY = pwd.getpwnam("nobody")


def status(pid):
    """/proc/PID/status as a dict of strings."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


@pytest.fixture
def world_dir():
    """A directory every user can read and write, holding the test app and a copy of the
    binary (the checkout may be under /root, closed to other users)."""
    assert os.geteuid() == 0, "the privilege tests need root (CI runs the suite as root)"
    d = tempfile.mkdtemp(prefix="unitcorn-priv-", dir="/var/tmp")
    os.chmod(d, 0o777)
    shutil.copy(APPS / "wsgiapp.py", d)
    shutil.copy(server_cmd()[0], os.path.join(d, "unitcorn"))
    os.chmod(os.path.join(d, "wsgiapp.py"), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_as(world_dir, tmp_path):
    servers = []

    def start(*args, wait=True, bind=None, app="wsgiapp:app"):
        port = free_port()
        bind = bind or "127.0.0.1:%d" % port
        addr = bind[len("unix:"):] if bind.startswith("unix:") else ("127.0.0.1", port)
        cmd = [os.path.join(world_dir, "unitcorn"), "-b", bind] + [str(a) for a in args]
        cmd.append(app)
        s = Server(cmd, base_env(venv=False), world_dir, tmp_path, addr=addr,
                   name="priv%d" % len(servers))
        servers.append(s)
        if wait:
            s.wait_ready()
        return s

    yield start
    for s in servers:
        s.kill_all()


def assert_dropped(pid, uid, gid, caps=0):
    st = status(pid)
    assert st["Uid"].split() == [str(uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(gid)] * 4, st["Gid"]
    for key in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[key], 16) == caps, (key, st[key])
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0, st
    assert st["NoNewPrivs"] == "1", st["NoNewPrivs"]
    return st


def test_master_and_workers_run_as_the_user_with_no_capability(start_as):
    s = start_as("-u", "nobody", "-g", "nogroup", "-w", "2")
    workers = s.wait_workers(2)
    for pid in [s.pid] + workers:
        st = assert_dropped(pid, NOBODY.pw_uid, NOBODY.pw_gid)
        # Only the group: no supplementary group is kept from root.
        assert st["Groups"] == "", st["Groups"]
    assert int(s.get("/pid").body) in workers
    assert "running as user nobody (uid 65534), group nogroup (gid 65534); capabilities: " \
           "none" in s.stderr()
    assert "runs as root" not in s.stderr()


def test_group_defaults_to_the_users_primary_group(start_as):
    s = start_as("-u", str(NOBODY.pw_uid))
    assert_dropped(s.pid, NOBODY.pw_uid, NOBODY.pw_gid)


def test_keep_capabilities_keeps_exactly_those(start_as):
    s = start_as("-u", "nobody", "--keep-capability", "CAP_NET_BIND_SERVICE")
    (worker,) = s.wait_workers(1)
    bit = 1 << 10          # CAP_NET_BIND_SERVICE
    for pid in (s.pid, worker):
        assert_dropped(pid, NOBODY.pw_uid, NOBODY.pw_gid, caps=bit)


@pytest.fixture
def user_with_groups():
    """A throwaway system user with a supplementary group (removed afterwards)."""
    name = "uc%s" % uuid.uuid4().hex[:8]
    subprocess.run(["groupadd", "-r", name + "x"], check=True)
    subprocess.run(["useradd", "-r", "-M", "-U", "-G", name + "x", "-s", "/usr/sbin/nologin",
                    name], check=True)
    try:
        yield pwd.getpwnam(name), grp.getgrnam(name + "x")
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name + "x"], check=False)
        subprocess.run(["groupdel", name], check=False)


def test_initgroups_adds_the_supplementary_groups_only_when_asked(start_as, user_with_groups):
    user, extra = user_with_groups
    plain = start_as("-u", user.pw_name)
    assert status(plain.pid)["Groups"] == ""
    assert_dropped(plain.pid, user.pw_uid, user.pw_gid)
    withgroups = start_as("-u", user.pw_name, "--initgroups")
    groups = {int(g) for g in status(withgroups.pid)["Groups"].split()}
    assert extra.gr_gid in groups and user.pw_gid in groups, groups
    assert_dropped(withgroups.pid, user.pw_uid, user.pw_gid)


def test_running_as_root_without_user_warns_naming_the_setting(start_as):
    s = start_as()
    assert status(s.pid)["Uid"].split()[0] == "0"
    line = next(l for l in s.stderr().splitlines() if "runs as root" in l)
    assert "[WARNING]" in line and "set user" in line and "-u www-data" in line, line


def test_unknown_user_fails_before_binding(start_as):
    s = start_as("-u", "no-such-user-xyz", wait=False)
    assert s.wait_exit(10) == 1
    assert 'no such user "no-such-user-xyz" (user, from --user)' in s.stderr(), s.stderr()
    assert "Listening at" not in s.stderr()


def test_group_without_user_is_refused(start_as):
    s = start_as("-g", "nogroup", wait=False)
    assert s.wait_exit(10) == 1
    assert 'group "nogroup" is set without user (group, from --group): set user too' \
        in s.stderr(), s.stderr()


def test_a_drop_that_fails_is_fatal(world_dir, tmp_path):
    """Not root (started as nobody) and asked to become another user: refused, not
    ignored."""
    port = free_port()
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
           os.path.join(world_dir, "unitcorn"), "-b", "127.0.0.1:%d" % port, "-u", "daemon",
           "wsgiapp:app"]
    r = subprocess.run(cmd, cwd=world_dir, env=base_env(venv=False), capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot switch to user daemon" in r.stderr and "not running as root" in r.stderr, \
        r.stderr


def test_unix_socket_made_under_umask_owned_by_the_user_and_removed(start_as, world_dir):
    sock = os.path.join(world_dir, "app.sock")
    s = start_as("-u", "nobody", "-m", "0o007", bind="unix:" + sock)
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o770, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert s.get("/pid").status == 200
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0
    # Removed by the unprivileged master (the directory lets it).
    assert not os.path.exists(sock), s.stderr()


def test_a_live_unix_socket_is_never_replaced(start_as, world_dir):
    sock = os.path.join(world_dir, "live.sock")
    first = start_as(bind="unix:" + sock)
    second = start_as(bind="unix:" + sock, wait=False)
    assert second.wait_exit(10) == 1
    assert "cannot listen on unix:%s" % sock in second.stderr(), second.stderr()
    assert first.get("/pid").status == 200


def test_log_files_are_given_to_the_user(start_as, world_dir):
    err, acc = os.path.join(world_dir, "error.log"), os.path.join(world_dir, "access.log")
    s = start_as("-u", "nobody", "--error-logfile", err, "--access-logfile", acc)
    assert s.get("/pid").status == 200
    for path in (err, acc):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid), path
    assert wait_for(lambda: "GET /pid" in open(acc).read(), 5)
    # USR1 after logrotate moved the file: the unprivileged master and workers reopen it.
    os.rename(err, err + ".1")
    s.signal(signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(err), 5)
    assert os.stat(err).st_uid == NOBODY.pw_uid


def test_binary_upgrade_after_the_drop(start_as, world_dir):
    s = start_as("-u", "nobody", "-w", "1")
    s.signal(signal.SIGUSR2)
    (new,) = s.wait_log(r"binary upgrade: started new master (\d+)", timeout=10)
    new = int(new)
    assert s.wait_exit(15) == 0, s.stderr()[-2000:]
    assert_dropped(new, NOBODY.pw_uid, NOBODY.pw_gid)
    assert s.get("/pid").status == 200
    os.kill(new, signal.SIGQUIT)
    assert wait_for(lambda: not alive(new), 15)


def test_the_app_is_never_imported_as_root_even_preloaded(start_as, world_dir):
    with open(os.path.join(world_dir, "whoami.py"), "w") as f:
        f.write("import os\nIMPORTED_AS = os.geteuid()\n\n"
                "def app(environ, start_response):\n"
                "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                "    return [b'%d %d' % (IMPORTED_AS, os.geteuid())]\n")
    os.chmod(os.path.join(world_dir, "whoami.py"), 0o644)
    s = start_as("-u", "nobody", "--preload", app="whoami:app")
    assert s.get("/").body == b"65534 65534"


def test_a_stale_unix_socket_file_is_replaced(start_as, world_dir):
    """A socket file nothing listens on any more (a crashed run) is replaced."""
    import socket as socketlib
    sock = os.path.join(world_dir, "stale.sock")
    left = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    left.bind(sock)
    left.close()                                   # the file stays, nobody listens
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    s = start_as(bind="unix:" + sock)
    assert s.get("/pid").status == 200
