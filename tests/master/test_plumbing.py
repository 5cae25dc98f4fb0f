"""Issue 3, points 5 and 6 (and QUIT's backlog promise of point 2): process titles
(-n/--name), the pid file (-p: atomic, removed at exit, never clobbering a live server's),
-D/--daemon, --preload with --gc-freeze and the warning about threads started at import,
and QUIT serving the connections already waiting in the listen backlog.
"""

import ctypes
import ctypes.util
import os
import select
import signal
import struct
import subprocess
import threading
import time
import uuid

import pytest

from harness import (IS_GUNICORN, Conn, ConnClosed, alive, base_env, build_request, children,
                     cmdline, descendants, free_port, hup, run_cli, stat_fields, title,
                     wait_for)

TITLES_UNITCORN_ONLY = pytest.mark.unitcorn_only(
    "unitcorn's process titles (gunicorn needs setproctitle and names them differently)")


# ----------------------------------------------------------------------------------------
# /proc helpers of this file (cmdline and title are the harness's)

def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().rstrip("\n")


def argv_size(argv):
    """Bytes of argv memory for this argument list (each argument and its NUL)."""
    return sum(len(os.fsencode(a)) + 1 for a in argv)




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


def check_titles(s, name, app, workers):
    """The master and each worker carry their title (exact), padded with NULs to the size
    of the original argv memory, and their short name."""
    base = name or "unitcorn"
    size = argv_size(s.args)
    want_master = "%s: master [%s]" % (base, app)
    want_worker = "%s: worker [%s]" % (base, app)
    assert size > len(want_master.encode()) + 1, "command line too short for this test"
    raw = cmdline(s.pid)
    assert title(s.pid) == want_master, raw
    assert len(raw) == size, "master's argv memory: %d bytes, the command line had %d" % (
        len(raw), size)
    assert comm(s.pid) == ("%s-master" % base)[:15]
    for w in workers:
        raw = cmdline(w)
        assert title(w) == want_worker, (w, raw)
        assert len(raw) == size, (w, len(raw), size)
        assert comm(w) == ("%s-worker" % base)[:15], w


# ----------------------------------------------------------------------------------------
# process titles

LONG_ARGS = ("-w", "2", "--threads", "2", "--keep-alive", "3", "--graceful-timeout", "5",
             "--log-level", "info")


@TITLES_UNITCORN_ONLY
@pytest.mark.parametrize("app", ["wsgiapp:app", "factory:create_app('plumb')"],
                         ids=["module", "factory"])
def test_titles_of_master_and_workers(start_server, app):
    s = start_server(app, *LONG_ARGS)
    workers = s.wait_workers(2)
    # every worker has been forked and titled; a request shows they serve
    assert s.get("/").status == 200
    check_titles(s, None, app, workers)
    ps = subprocess.run(["ps", "-o", "pid=,args=", "-p", ",".join(map(str, [s.pid] + workers))],
                        capture_output=True, text=True, timeout=10)
    lines = {int(l.split(None, 1)[0]): l.split(None, 1)[1].strip()
             for l in ps.stdout.splitlines() if l.strip()}
    assert lines[s.pid] == "unitcorn: master [%s]" % app, ps.stdout
    for w in workers:
        assert lines[w] == "unitcorn: worker [%s]" % app, ps.stdout


@TITLES_UNITCORN_ONLY
@pytest.mark.parametrize("name", ["shop", "payments-api-europe"], ids=["short", "long"])
def test_titles_with_name(start_server, name):
    """-n NAME replaces "unitcorn" in the title; comm is NAME-master / NAME-worker cut to
    15 bytes (payments-api-europe -> "payments-api-eu")."""
    s = start_server("wsgiapp:app", "-n", name, *LONG_ARGS)
    workers = s.wait_workers(2)
    assert s.get("/").status == 200
    check_titles(s, name, "wsgiapp:app", workers)
    if name == "shop":
        assert comm(s.pid) == "shop-master" and comm(workers[0]) == "shop-worker"
    else:
        assert comm(s.pid) == "payments-api-eu" == comm(workers[0])
    # a worker started to replace a dead one is titled too
    os.kill(workers[0], signal.SIGKILL)
    new = wait_for(lambda: (lambda ws: ws if len(ws) == 2 and workers[0] not in ws else None)(
        s.workers()), 10)
    assert new, s.workers()
    assert s.wait_ready(path="/pid").status == 200
    check_titles(s, name, "wsgiapp:app", new)


@TITLES_UNITCORN_ONLY
def test_title_is_cut_to_the_original_command_line(start_server, tmp_path):
    """A name longer than the whole command line (given in the config file, so it is not in
    argv): the title is cut to the argv memory (its last byte stays a NUL), never past it."""
    name = "n" * 40 + "-" + "x" * 300
    cfg = tmp_path / "unitcorn.toml"
    cfg.write_text('proc_name = "%s"\nworkers = 2\n' % name)
    s = start_server("wsgiapp:app", "-c", str(cfg))
    workers = s.wait_workers(2)
    assert s.get("/").status == 200
    size = argv_size(s.args)
    full = "%s: master [wsgiapp:app]" % name
    assert len(full) > size, "the title would fit: the test needs a longer name"
    for pid, role in [(s.pid, "master")] + [(w, "worker") for w in workers]:
        raw = cmdline(pid)
        want = ("%s: %s [wsgiapp:app]" % (name, role)).encode()[:size - 1]
        assert len(raw) == size, (role, len(raw), size)
        assert raw == want + b"\0", (role, raw)
        assert comm(pid) == "n" * 15, (role, comm(pid))


@TITLES_UNITCORN_ONLY
def test_hup_after_titles_rereads_the_original_command_line(start_server, tmp_path):
    """The title overwrote argv; a HUP must still read the command line as given (-n, -w,
    the app) and the config file afresh, and title the new workers."""
    cfg = tmp_path / "unitcorn.toml"
    cfg.write_text('workers = 3\nraw_env = ["CFG_VALUE=one"]\n')
    s = start_server("wsgiapp:app", "-n", "hupname", "-w", "2", "-c", str(cfg),
                     "--graceful-timeout", "5")
    gen = s.wait_workers(2)
    check_titles(s, "hupname", "wsgiapp:app", gen)
    assert {s.get("/osenv?k=CFG_VALUE").body for _ in range(4)} == {b"one"}
    for value in ("two", "three"):
        # workers = 4 in the file: the command line's -w 2 still wins
        cfg.write_text('workers = 4\nraw_env = ["CFG_VALUE=%s"]\n' % value)
        _, gen = hup(s, gen, 2)
        assert {s.get("/osenv?k=CFG_VALUE").body for _ in range(6)} == {value.encode()}, \
            s.stderr()[-3000:]
        assert {int(s.get("/pid").body) for _ in range(6)} <= set(gen)
        time.sleep(0.3)
        assert s.workers() == gen, "worker count changed: -w 2 of the command line was lost"
        check_titles(s, "hupname", "wsgiapp:app", gen)
    assert "reload aborted" not in s.stderr() and "reload failed" not in s.stderr()


@TITLES_UNITCORN_ONLY
def test_hup_with_a_new_proc_name_retitles_master_and_workers(start_server, tmp_path):
    """proc_name changed in the config file: after the HUP that applies it, ps shows the new
    name for the master as for the new workers (gunicorn retitles its master at a reload)."""
    cfg = tmp_path / "unitcorn.toml"
    cfg.write_text('proc_name = "before"\n')
    s = start_server("wsgiapp:app", "-w", "2", "-c", str(cfg), *LONG_ARGS[2:])
    gen = s.wait_workers(2)
    check_titles(s, "before", "wsgiapp:app", gen)
    cfg.write_text('proc_name = "after"\n')
    _, gen = hup(s, gen, 2)
    assert [title(w) for w in gen] == ["after: worker [wsgiapp:app]"] * 2
    assert (title(s.pid), comm(s.pid)) == ("after: master [wsgiapp:app]", "after-master"), \
        "the master kept its old title after the HUP that changed proc_name"
    check_titles(s, "after", "wsgiapp:app", gen)


# ----------------------------------------------------------------------------------------
# the pid file


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
        assert "Address already in use" in err or "pid file" in err, err
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
# -D/--daemon


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


# ----------------------------------------------------------------------------------------
# preload_app: gc.freeze and threads at import


def freeze_counts(s, workers):
    """{worker pid: gc.get_freeze_count()} from every worker (bounded)."""
    counts = {}
    deadline = time.monotonic() + 15
    while set(counts) != set(workers) and time.monotonic() < deadline:
        r = s.get("/gc_freeze_count")
        assert r.status == 200, r
        pid, n = map(int, r.body.split())
        counts[pid] = n
    return counts


@pytest.mark.unitcorn_only("--gc-freeze is unitcorn's own setting")
@pytest.mark.parametrize("freeze", [True, False], ids=["gc-freeze", "no-gc-freeze"])
def test_preload_gc_freeze(start_server, freeze):
    s = start_server("plumbingapp:app", "-w", "2", "--preload",
                     *(["--gc-freeze"] if freeze else []))
    workers = s.wait_workers(2)
    counts = freeze_counts(s, workers)
    assert set(counts) == set(workers), "not every worker answered: %r of %r" % (
        counts, workers)
    if freeze:
        assert all(n > 0 for n in counts.values()), counts
    else:
        assert all(n == 0 for n in counts.values()), counts
    print("\ngc.get_freeze_count() in the workers: %r" % counts)


@pytest.mark.unitcorn_only("gunicorn does not warn about threads started at import")
@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
def test_thread_started_at_import_under_preload_is_warned_about(start_server, preload):
    s = start_server("thread_at_import:app", "-w", "2", *(["--preload"] if preload else []))
    workers = s.wait_workers(2)
    assert {int(s.get("/pid").body) for _ in range(4)} <= set(workers)
    warning = r"\[(\d+)\] \[WARNING\] ([^\n]*thread[^\n]*)"
    if preload:
        ((pid, line),) = s.wait_log(warning, timeout=5)
        assert int(pid) == s.pid, "warned by %s, not by the master %d" % (pid, s.pid)
        assert "preload" in line, line
    else:
        time.sleep(0.3)
        assert not s.log_findall(warning), s.stderr()


# ----------------------------------------------------------------------------------------
# QUIT serves the listen backlog


@pytest.mark.unitcorn_only("gunicorn's QUIT is its quick stop")
@pytest.mark.parametrize("extra", [(), ("--worker-connections", "1")],
                         ids=["default", "worker-connections-1"])
def test_quit_serves_the_connections_waiting_in_the_backlog(start_server, extra):
    """QUIT while the only worker thread sleeps in the app and 3 more requests wait. With
    --worker-connections 1 the worker cannot hold them: they are in the kernel's backlog."""
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "1", "--graceful-timeout", "10",
                     *extra)
    (w,) = s.wait_workers(1)
    slow = s.conn(timeout=15)
    waiting = []
    try:
        slow.send(build_request("GET", "/sleep?s=1.5"))
        time.sleep(0.4)                 # the worker is inside the app now
        for _ in range(3):
            c = s.conn(timeout=15)
            waiting.append(c)
            c.send(build_request("GET", "/pid"))
        time.sleep(0.2)
        assert all(c.nothing_within(0.05) for c in [slow] + waiting), \
            "answered while the only worker thread sleeps"
        t0 = time.monotonic()
        s.signal(signal.SIGQUIT)
        results = []
        for i, c in enumerate([slow] + waiting):
            try:
                results.append(c.read_response(timeout=12))
            except (OSError, ConnClosed) as e:
                results.append(ConnClosed("%s (connection %s)" % (
                    e, "reset" if c.reset else "closed")))
        took = time.monotonic() - t0
        bad = [(i, r) for i, r in enumerate(results)
               if isinstance(r, Exception) or r.status != 200 or not r.complete]
        assert not bad, "requests failed after QUIT: %r; log:\n%s" % (bad, s.stderr()[-3000:])
        for r in results:
            assert int(r.body) == w, r
            assert (r.header("connection") or "").lower() == "close", r
        for c in [slow] + waiting:
            assert c.closed_by_peer(5), "connection left open after Connection: close"
    finally:
        for c in [slow] + waiting:
            c.close()
    rc = s.wait_exit(15)
    assert rc == 0, "master exit status %r; log:\n%s" % (rc, s.stderr()[-3000:])
    assert not alive(w)
    print("\nQUIT with 1 request in the app and 3 waiting: all answered in %.2f s" % took)
