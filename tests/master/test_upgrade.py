"""USR2: binary upgrade. A new master starts from the binary on disk with the same command
line and the same listening sockets; once its workers serve, it takes over and the old
master stops gracefully. Under systemd the old master sends `MAINPID=<new>` (the fake
notify socket below checks the sender of each datagram, as systemd does).

Elsewhere: the new master's pid file (pidfile.2 until the old master has gone),
test_pidfile.py; after a drop of privileges, test_privileges.py; the pre_exec hook,
test_hooks.py; a socket passed by systemd, tests/systemd/test_socket_activation.py; under
the real systemd, tests/systemd/test_real_systemd.py."""

import os
import shutil
import signal
import time

import pytest

from harness import (APPS, Load, NotifySocket, Server, alive, base_env, children, free_port,
                     listening_inodes, new_master_of, proc_stat, quit_and_wait, server_cmd,
                     socket_inodes, wait_for)

pytestmark = pytest.mark.unitcorn_only


def test_usr2_under_load_fails_no_request_and_hands_over(start_server, tmp_path):
    pidfile = tmp_path / "app.pid"
    n = 2
    s = start_server("wsgiapp:app", "-w", str(n), "--keep-alive", "5", "-p", pidfile)
    old_workers = s.wait_workers(n)
    assert pidfile.read_text().strip() == str(s.pid)
    with Load(s.addr, keepalive=2, fresh=2, slow=1) as load:
        load.wait_requests(100)
        t0 = time.monotonic()
        s.signal(signal.SIGUSR2)
        new = new_master_of(s)
        # The old master leaves by itself once the new one serves.
        assert s.wait_exit(20) == 0, s.stderr()[-3000:]
        took = time.monotonic() - t0
        new_workers = children(new)
        assert len(new_workers) == n, (new_workers, s.stderr()[-2000:])
        load.wait_requests(200)         # served by the new generation only now
    print("\nUSR2 to old master gone: %.0f ms; %s" % (took * 1000, load.summary()))
    assert not load.failures, load.summary()
    assert set(old_workers) & set(load.pids) and set(new_workers) & set(load.pids), (
        old_workers, new_workers, load.summary())
    # Double fork: the new master is not the old one's child (it was re-parented).
    assert alive(new) and proc_stat(new)[1] != s.pid
    # Its pid file took the configured name once the old master had gone.
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() == str(new), 5), (
        sorted(p.name for p in tmp_path.iterdir()))
    assert not (tmp_path / "app.pid.2").exists()
    log = s.stderr()
    assert "Master has been promoted" in log, log[-2000:]
    # The same listening socket (no second bind), now held by the new master alone.
    port = s.addr[1]
    inodes = listening_inodes(port)
    assert len(inodes) == 1 and set(inodes) <= socket_inodes(new), inodes
    quit_and_wait(new)
    assert not pidfile.exists()


def test_usr2_hands_over_mainpid_to_systemd(start_server, tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    try:
        s = start_server("wsgiapp:app", "-w", "2", wait=False, env_extra={
            "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
        fields, pid = notify.expect("READY")
        assert pid == s.pid
        s.signal(signal.SIGUSR2)
        fields, sender = notify.expect("MAINPID", within=15)
        new = new_master_of(s)
        # From the old (still main) process, naming the new master.
        assert sender == s.pid and int(fields["MAINPID"]) == new, (fields, sender, new)
        # Nothing from the new master before that: systemd would have refused it.
        senders = [p for _, _, p in notify.seen]
        assert new not in senders, notify.seen
        # Then the new master says it is ready and pings the watchdog (WATCHDOG_PID is it).
        fields, sender = notify.expect("READY", within=5)
        assert sender == new, (fields, sender)
        fields, sender = notify.expect("WATCHDOG", within=2)
        assert sender == new
        assert s.wait_exit(15) == 0
        # The old master said nothing after handing over.
        handed = next(i for i, (_, f, _) in enumerate(notify.seen) if "MAINPID" in f)
        assert s.pid not in [p for _, _, p in notify.seen[handed + 1:]], notify.seen
        # The app in the new master's workers sees no service-manager variables either.
        for name in ("LISTEN_FDS", "LISTEN_PID", "WATCHDOG_PID", "UNITCORN_UPGRADE_FROM"):
            assert s.get("/osenv?k=" + name).body == b"<unset>", name
        quit_and_wait(new)
    finally:
        notify.close()


def test_unix_socket_survives_the_old_master_and_is_removed_by_the_new(start_server,
                                                                       tmp_path):
    path = tmp_path / "app.sock"
    s = start_server("wsgiapp:app", "-w", "1", bind="unix:%s" % path)
    s.wait_workers(1)
    s.signal(signal.SIGUSR2)
    new = new_master_of(s)
    assert s.wait_exit(15) == 0
    # The old master did not unlink the socket file the new one serves.
    assert path.exists()
    r = s.get("/pid")
    assert r.status == 200 and int(r.body) in children(new)
    quit_and_wait(new)
    # The new master removes it at its exit, as the owner of the old master's file.
    assert wait_for(lambda: not path.exists(), 5)


def test_failed_upgrade_keeps_the_old_master_serving(start_server, tmp_path):
    app = tmp_path / "upgradeapp.py"
    shutil.copy(APPS / "wsgiapp.py", app)
    pidfile = tmp_path / "app.pid"
    s = start_server("upgradeapp:app", "-w", "2", "-p", pidfile, cwd=tmp_path)
    before = s.wait_workers(2)
    # The new master would import a broken app.
    app.write_text("raise RuntimeError('broken on purpose')\n")
    s.signal(signal.SIGUSR2)
    new = new_master_of(s)
    s.wait_log(r"binary upgrade failed: the new master \(pid %d\) exited" % new, timeout=20)
    assert wait_for(lambda: not alive(new), 10)
    assert not s.exited()
    assert s.workers() == before
    assert int(s.get("/pid").body) in before
    assert pidfile.read_text().strip() == str(s.pid)
    assert not (tmp_path / "app.pid.2").exists()
    # A later upgrade with the app fixed goes through.
    shutil.copy(APPS / "wsgiapp.py", app)
    s.signal(signal.SIGUSR2)
    s.wait_log(r"binary upgrade: new master \d+ serves", timeout=20)
    assert s.wait_exit(15) == 0


def test_usr2_runs_the_binary_now_on_disk(start_server, tmp_path):
    """A package upgrade replaced the file: USR2 runs the new file, not the old inode."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "unitcorn"
    shutil.copy(server_cmd()[0], exe)
    port = free_port()
    env = base_env()
    s = Server([str(exe), "-w", "1", "-b", "127.0.0.1:%d" % port, "wsgiapp:app"], env, APPS,
               tmp_path, addr=("127.0.0.1", port), name="ondisk")
    try:
        s.wait_ready()
        # Replace the file as a package manager does: a new inode renamed over the path.
        shutil.copy(server_cmd()[0], bindir / "unitcorn.new")
        os.replace(bindir / "unitcorn.new", exe)
        assert os.readlink("/proc/%d/exe" % s.pid).endswith("(deleted)")
        s.signal(signal.SIGUSR2)
        new = new_master_of(s)
        assert s.wait_exit(15) == 0
        assert os.readlink("/proc/%d/exe" % new) == str(exe)
        assert os.stat("/proc/%d/exe" % new).st_ino == os.stat(exe).st_ino
        quit_and_wait(new)
    finally:
        s.kill_all()


def test_second_usr2_while_one_is_in_progress_is_ignored(start_server):
    # The new master's app takes 1.5 s to import: the second USR2 comes meanwhile.
    s = start_server("slow_boot:app", "-w", "1", "--boot-timeout", "30",
                     env_extra={"SLOW_BOOT_S": "1.5"}, ready_timeout=15)
    s.wait_workers(1)
    s.signal(signal.SIGUSR2)
    new = new_master_of(s)
    s.signal(signal.SIGUSR2)
    s.wait_log("already in progress")
    assert s.wait_exit(20) == 0
    assert len(s.log_findall(r"binary upgrade: started new master (\d+)")) == 1
    quit_and_wait(new)
