"""The pid file (-p/--pid): written atomically (one rename: never seen empty or partial),
removed at exit (TERM, QUIT, INT), never clobbering a live server's, left alone at exit
when it names another process by then, replaced when stale; during a binary upgrade the
new master's is pidfile.2 until the old master has gone.

Elsewhere: the pid file of a daemon, test_daemon.py; of the seed deployment,
tests/config/test_python_file.py."""

import ctypes
import ctypes.util
import os
import select
import signal
import struct
import subprocess
import threading
import time

import pytest

from harness import alive, new_master_of, quit_and_wait, wait_for


def test_pidfile_written_and_removed(start_server, tmp_path):
    pidfile = tmp_path / "run" / "app.pid"
    pidfile.parent.mkdir()
    s = start_server("wsgiapp:app", "-w", "2", "-p", str(pidfile))
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 5)
    assert int(pidfile.read_text().strip()) == s.pid
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    assert wait_for(lambda: not pidfile.exists(), 5), "pidfile left behind after TERM"


class DirEvents:
    """inotify(7) on a directory: the (event mask, file name) pairs seen there, in order."""

    IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE = (
        0x2, 0x8, 0x40, 0x80, 0x100)
    EVENT = struct.Struct("iIII")

    def __init__(self, path):
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        mask = (self.IN_MODIFY | self.IN_CLOSE_WRITE | self.IN_MOVED_FROM | self.IN_MOVED_TO
                | self.IN_CREATE)
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(str(path)), mask)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        self.events = []

    def drain(self, timeout=0.2):
        for _ in range(10000):
            if not select.select([self.fd], [], [], timeout)[0]:
                break
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            i = 0
            while i < len(data):
                _, mask, _, size = self.EVENT.unpack_from(data, i)
                name = data[i + 16:i + 16 + size].rstrip(b"\0").decode()
                self.events.append((mask, name))
                i += 16 + size
        return self.events

    def close(self):
        os.close(self.fd)


def test_pidfile_never_seen_empty_or_partial(start_server, tmp_path):
    """Polled as fast as we can while the server starts: whenever the file exists, it
    holds the whole pid."""
    pidfile = tmp_path / "app.pid"
    reads, misses = [], [0]
    stop = threading.Event()

    def poll():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                fd = os.open(pidfile, os.O_RDONLY)
            except FileNotFoundError:
                misses[0] += 1
                continue
            try:
                reads.append(os.read(fd, 100))
            finally:
                os.close(fd)

    watch = DirEvents(tmp_path)
    th = threading.Thread(target=poll, daemon=True)
    th.start()
    try:
        s = start_server("wsgiapp:app", "-w", "2", "-p", str(pidfile))
        s.wait_workers(2)
        time.sleep(0.2)
    finally:
        stop.set()
        th.join(10)
        events = watch.drain()
        watch.close()
    assert not th.is_alive()
    print("\npid file: %d reads found it, %d found nothing; events %r" % (
        len(reads), misses[0], [(hex(m), n) for m, n in events if "pid" in n]))
    # the name app.pid only ever appears by a rename: it is never created empty, nor
    # written in place
    on_it = [m for m, n in events if n == "app.pid"]
    written = [m for m in on_it if m & (DirEvents.IN_CREATE | DirEvents.IN_MODIFY)]
    renamed = [m for m in on_it if m & DirEvents.IN_MOVED_TO]
    assert not written and len(renamed) == 1, \
        "pid file not written by one rename: %r" % [(hex(m), n) for m, n in events]
    assert misses[0] > 0, "the file existed before the server started"
    assert reads, "the poller never saw the pid file"
    want = b"%d\n" % s.pid
    bad = [r for r in reads if r != want]
    assert not bad, "%d of %d reads were not %r: %r" % (len(bad), len(reads), want,
                                                         sorted(set(bad))[:5])
    # no temporary file is left beside it
    assert sorted(p.name for p in tmp_path.iterdir() if "pid" in p.name) == ["app.pid"]


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGINT], ids=["QUIT", "INT"])
def test_pidfile_removed_at_exit(start_server, tmp_path, sig):
    pidfile = tmp_path / "app.pid"
    s = start_server("wsgiapp:app", "-w", "2", "-p", str(pidfile))
    assert pidfile.read_text() == "%d\n" % s.pid
    s.signal(sig)
    assert s.wait_exit(15) == 0
    assert not pidfile.exists(), "pid file left behind after %s" % sig.name


@pytest.mark.parametrize("same_port", [False, True], ids=["other-port", "same-port"])
def test_second_server_with_the_same_pidfile_fails(start_server, tmp_path, same_port):
    pidfile = tmp_path / "app.pid"
    first = start_server("wsgiapp:app", "-w", "1", "-p", str(pidfile))
    first_workers = first.wait_workers(1)
    before = os.stat(pidfile)
    assert pidfile.read_text() == "%d\n" % first.pid
    bind = "%s:%d" % first.addr if same_port else None
    second = start_server("wsgiapp:app", "-w", "1", "-p", str(pidfile), bind=bind,
                          wait=False)
    rc = second.wait_exit(15)
    assert rc is not None, "the second server kept running; log:\n%s" % second.stderr()
    assert rc != 0, "the second server exited 0; log:\n%s" % second.stderr()
    err = second.stderr()
    if same_port:
        # it stops at the bind, before it looks at the pid file
        assert "address already in use" in err or "pid file" in err, err
    else:
        assert str(pidfile) in err and str(first.pid) in err, err
    after = os.stat(pidfile)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == \
        (before.st_ino, before.st_mtime_ns, before.st_size), "the first server's pid file " \
        "was touched"
    assert pidfile.read_text() == "%d\n" % first.pid
    # the first server is unharmed and still serves
    assert not first.exited() and first.workers() == first_workers
    assert int(first.get("/pid").body) in first_workers
    first.signal(signal.SIGQUIT)
    assert first.wait_exit(15) == 0
    assert not pidfile.exists()


def test_pidfile_naming_another_process_is_left_at_exit(start_server, tmp_path):
    """If the pid file no longer names this master when it exits (another instance took it
    over), it is not this master's to remove (gunicorn checks the same before unlinking)."""
    pidfile = tmp_path / "app.pid"
    s = start_server("wsgiapp:app", "-w", "1", "-p", str(pidfile))
    assert pidfile.read_text() == "%d\n" % s.pid
    other = "%d\n" % os.getpid()           # a live process that is not this master
    tmp = tmp_path / "app.pid.other"
    tmp.write_text(other)
    os.rename(tmp, pidfile)
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0
    assert pidfile.exists(), "the master removed a pid file naming another process"
    assert pidfile.read_text() == other


@pytest.mark.parametrize("stale", ["dead-pid", "empty"])
def test_stale_pidfile_is_replaced(start_server, tmp_path, stale):
    pidfile = tmp_path / "app.pid"
    if stale == "dead-pid":
        p = subprocess.Popen(["true"])
        p.wait(10)
        dead = p.pid
        assert not alive(dead)
        pidfile.write_text("%d\n" % dead)
    else:
        pidfile.write_text("")
    s = start_server("wsgiapp:app", "-w", "1", "-p", str(pidfile))
    assert pidfile.read_text() == "%d\n" % s.pid
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0
    assert not pidfile.exists()


# ----------------------------------------------------------------------------------------
# during a binary upgrade (USR2, test_upgrade.py)


@pytest.mark.unitcorn_only
def test_pidfile_2_during_the_overlap_and_inflight_requests_finish(start_server, tmp_path):
    """gunicorn's naming: the new master writes pidfile.2 while the old one still runs (here,
    still finishing a 2 s request); the request is answered."""
    pidfile = tmp_path / "app.pid"
    s = start_server("wsgiapp:app", "-w", "1", "-p", pidfile)
    s.wait_workers(1)
    got = {}

    def slow():
        got["r"] = s.get("/sleep?s=2", timeout=15)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)             # the request is in the old worker
    s.signal(signal.SIGUSR2)
    new = new_master_of(s)
    second = tmp_path / "app.pid.2"
    assert wait_for(lambda: second.exists() and second.read_text().strip() == str(new), 10)
    # Both masters run, each with its own pid file.
    assert pidfile.read_text().strip() == str(s.pid) and alive(s.pid)
    t.join(15)
    r = got.get("r")
    assert r is not None and r.status == 200, r
    assert s.wait_exit(15) == 0
    assert wait_for(lambda: not second.exists() and pidfile.exists()
                    and pidfile.read_text().strip() == str(new), 5)
    quit_and_wait(new)
