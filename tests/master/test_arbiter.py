"""Issue 3: the prefork master -- the signal contract of DESIGN.md (HUP reload by generation,
QUIT, INT/TERM, TTIN/TTOU, WINCH, USR1), the repair of dead workers with boot back-off,
request deadlines (504, traceback, kill), recycling (max_requests, max_worker_lifetime,
max_worker_memory) and preload_app + HUP; with real processes, real signals and continuous
client load (harness.Load). A reload or a recycle must fail no request.

(QUIT with a slow request in flight is test_master.py's test_quit_lets_in_flight_request_finish.)
"""

import os
import signal
import textwrap
import time

import pytest

from harness import (BOOTING, ConnClosed, Load, alive, build_request, hup, in_thread,
                     listening_inodes, read_scoreboard, rss_kib, socket_inodes, wait_for)

pytestmark = pytest.mark.unitcorn_only(
    "unitcorn's signal contract and log lines (gunicorn's TERM is graceful, it has no "
    "boot back-off, 504 on timeout, max_worker_lifetime/memory)")


def boot_order(s):
    """Worker pids in the order the master started them."""
    return [int(p) for p in s.log_findall(BOOTING)]


def write_app(path, version, broken=False):
    """A module answering its VERSION on /version and its pid elsewhere; broken: it
    raises at import."""
    src = textwrap.dedent('''\
        import os

        VERSION = %r


        def app(environ, start_response):
            if environ["PATH_INFO"] == "/version":
                body = VERSION.encode()
            else:
                body = str(os.getpid()).encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        ''') % version
    if broken:
        src += "\nraise RuntimeError('broken at reload: %s')\n" % version
    path.write_text(src)


# ----------------------------------------------------------------------------------------
# HUP: reload by generation


def test_three_hups_under_load_fail_no_request(start_server):
    n = 2
    s = start_server("wsgiapp:app", "-w", str(n), "--keep-alive", "5")
    gen = s.wait_workers(n)
    generations = [gen]
    figures = []
    events = []
    with Load(s.addr, keepalive=2, fresh=2, slow=1) as load:
        load.wait_requests(100)
        for i in range(3):
            events.append("HUP %d sent at %.3f s" % (i + 1, load._now()))
            took, gen = hup(s, gen, n)
            events.append("generation %d gone at %.3f s" % (i + 1, load._now()))
            number = i + 2
            (m,) = s.wait_log(r"reload: generation %d ready in (\d+) ms; stopping (\d+) old "
                              r"worker" % number)
            assert int(m[1]) == n, m
            figures.append((took, int(m[0])))
            generations.append(gen)
            load.wait_requests(100)     # the new generation serves
    print("\nHUP timing (signal -> old generation gone / master's 'ready in'): %s; %s" % (
        ", ".join("%.0f ms / %d ms" % (t * 1000, r) for t, r in figures), load.summary()))
    assert not load.failures, "%s; %s" % (load.summary(), events)
    assert load.ok > 400, load.summary()
    for took, _ in figures:
        assert took < 10, figures
    for g in generations:
        assert set(g) & set(load.pids), "generation %r served nothing: %s" % (g, load.summary())
    assert s.log_findall(r"reload: starting generation (\d+)") == ["2", "3", "4"]


def test_hups_in_quick_succession_under_load(start_server):
    """Three HUPs 0.1 s apart: each reload supersedes the one still booting; no request
    fails and exactly n workers of the last generation remain."""
    n = 2
    s = start_server("wsgiapp:app", "-w", str(n), "--keep-alive", "5")
    first = s.wait_workers(n)
    with Load(s.addr, keepalive=2, fresh=2, slow=1) as load:
        load.wait_requests(50)
        for _ in range(3):
            s.signal(signal.SIGHUP)
            time.sleep(0.1)
        s.wait_log(r"reload: generation 4 ready in \d+ ms", timeout=10)

        def settled():
            ws = s.workers()
            return ws if len(ws) == n and not set(ws) & set(first) else None
        last = wait_for(settled, 10)
        assert last, "workers: %r (first %r); log:\n%s" % (s.workers(), first,
                                                             s.stderr()[-3000:])
        load.wait_requests(100)
    assert not load.failures, load.summary()
    time.sleep(0.5)
    assert s.workers() == last
    assert {int(s.get("/pid").body) for _ in range(6)} <= set(last)


def test_hup_rereads_the_config_file_workers(start_server, tmp_path):
    cfg = tmp_path / "unitcorn.toml"
    cfg.write_text("workers = 2\n")
    s = start_server("wsgiapp:app", "-c", str(cfg))
    old = s.wait_workers(2)
    cfg.write_text("workers = 3\n")
    took, new = hup(s, old, 3)
    s.wait_log(r"reload: generation 2 ready in \d+ ms; stopping 2 old worker")
    time.sleep(0.5)
    assert s.workers() == new
    assert {int(s.get("/pid").body) for _ in range(6)} <= set(new)


def test_hup_rereads_the_config_file_raw_env(start_server, tmp_path):
    cfg = tmp_path / "unitcorn.toml"
    cfg.write_text('raw_env = ["CFG_VALUE=one"]\n')
    s = start_server("wsgiapp:app", "-w", "2", "-c", str(cfg))
    old = s.wait_workers(2)
    assert {s.get("/osenv?k=CFG_VALUE").body for _ in range(4)} == {b"one"}
    cfg.write_text('raw_env = ["CFG_VALUE=two"]\n')
    hup(s, old, 2)
    assert {s.get("/osenv?k=CFG_VALUE").body for _ in range(6)} == {b"two"}


@pytest.mark.parametrize("relative", ["config", "chdir"])
def test_hup_with_relative_paths(start_server, tmp_path, relative):
    """-c and --chdir given relative to the directory unitcorn was started in mean the same
    files at a HUP as at the start (the master has changed directory to chdir since)."""
    d = tmp_path / "app"
    d.mkdir()
    write_app(d / "hupapp.py", "v1")
    cfg = tmp_path / "unitcorn.toml"
    cfg.write_text("workers = 2\n")
    args = (["-c", "unitcorn.toml", "--chdir", str(d)] if relative == "config"
            else ["-c", str(cfg), "--chdir", "app"])
    s = start_server("hupapp:app", *args, cwd=tmp_path)
    old = s.wait_workers(2)
    cfg.write_text("workers = 3\n")
    write_app(d / "hupapp.py", "v2")
    s.signal(signal.SIGHUP)
    s.wait_log(r"reload: starting generation 2|reload aborted[^\n]*|reload failed[^\n]*",
               timeout=10)
    assert "reload aborted" not in s.stderr() and "reload failed" not in s.stderr(), \
        s.stderr()[-3000:]
    assert wait_for(lambda: not any(alive(p) for p in old), 10), s.stderr()[-3000:]
    s.wait_workers(3)
    assert {s.get("/version").body for _ in range(6)} == {b"v2"}


def test_hup_with_invalid_config_keeps_serving(start_server, tmp_path):
    cfg = tmp_path / "unitcorn.toml"
    cfg.write_text("workers = 2\n")
    s = start_server("wsgiapp:app", "-c", str(cfg))
    old = s.wait_workers(2)
    cfg.write_text('workers = "many"\n')
    s.signal(signal.SIGHUP)
    s.wait_log(r"reload aborted[^\n]*", timeout=5)
    time.sleep(1)
    assert s.workers() == old
    assert {int(s.get("/pid").body) for _ in range(4)} <= set(old)
    # fixed: the next HUP takes it
    cfg.write_text("workers = 1\n")
    hup(s, old, 1)


def test_hup_with_broken_app_keeps_old_generation_serving(start_server, tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    write_app(d / "hupapp.py", "v1")
    s = start_server("hupapp:app", "-w", "2", "--chdir", str(d), "--keep-alive", "5")
    old = s.wait_workers(2)
    with Load(s.addr, keepalive=2, fresh=2) as load:
        load.wait_requests(50)
        write_app(d / "hupapp.py", "v2", broken=True)
        s.signal(signal.SIGHUP)
        s.wait_log(r"reload failed[^\n]*", timeout=10)
        assert "broken at reload: v2" in s.stderr()
        time.sleep(0.5)
        assert not s.exited(), "master exited with %s; log:\n%s" % (s.proc.returncode,
                                                                   s.stderr()[-5000:])
        load.wait_requests(100)
        assert s.workers() == old
        assert {s.get("/version").body for _ in range(4)} == {b"v1"}
        # fixed: the next HUP takes it
        write_app(d / "hupapp.py", "v3")
        _, new = hup(s, old, 2)
        load.wait_requests(100)
    assert not load.failures, load.summary()
    assert {s.get("/version").body for _ in range(6)} == {b"v3"}
    assert set(new) & set(load.pids)


def test_hup_with_broken_app_many_workers_repeatedly(start_server, tmp_path):
    """Four new workers failing to import at about the same time (they may be reaped
    together): each failed reload leaves the master and the old generation up."""
    d = tmp_path / "app"
    d.mkdir()
    write_app(d / "hupapp.py", "v1")
    s = start_server("hupapp:app", "-w", "4", "--chdir", str(d))
    old = s.wait_workers(4)
    # Every old worker has imported v1 before the file breaks (else a worker still
    # booting would import the broken file: a different test).
    assert wait_for(lambda: all(v["ready"] for v in read_scoreboard(s.pid).values())
                    and len(read_scoreboard(s.pid)) == 4, 10)
    write_app(d / "hupapp.py", "v2", broken=True)
    for i in range(1, 6):
        s.signal(signal.SIGHUP)
        s.wait_log(r"reload failed[^\n]*", timeout=10, count=i)
        time.sleep(0.3)
        assert not s.exited(), "master exited with %s after failed reload %d; log:\n%s" % (
            s.proc.returncode, i, s.stderr()[-2500:])
        assert wait_for(lambda: s.workers() == old, 5), (old, s.workers())
        assert {s.get("/version").body for _ in range(4)} == {b"v1"}


def test_preload_hup_serves_the_changed_app(start_server, tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    write_app(d / "hupapp.py", "v1")
    s = start_server("hupapp:app", "-w", "2", "--preload", "--chdir", str(d),
                     "--keep-alive", "5")
    old = s.wait_workers(2)
    assert {s.get("/version").body for _ in range(4)} == {b"v1"}
    write_app(d / "hupapp.py", "v2")
    with Load(s.addr, keepalive=1, fresh=2) as load:
        load.wait_requests(50)
        took, new = hup(s, old, 2)
        load.wait_requests(50)
    assert not load.failures, load.summary()
    assert {s.get("/version").body for _ in range(6)} == {b"v2"}
    print("\npreload HUP: old generation gone %.0f ms after the signal" % (took * 1000))


def test_preload_hup_with_broken_app_keeps_old_generation(start_server, tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    write_app(d / "hupapp.py", "v1")
    s = start_server("hupapp:app", "-w", "2", "--preload", "--chdir", str(d))
    old = s.wait_workers(2)
    write_app(d / "hupapp.py", "v2", broken=True)
    s.signal(signal.SIGHUP)
    s.wait_log(r"reload aborted[^\n]*", timeout=10)
    assert "broken at reload: v2" in s.stderr()
    time.sleep(0.5)
    assert not s.exited()
    assert s.workers() == old
    assert {s.get("/version").body for _ in range(4)} == {b"v1"}


# ----------------------------------------------------------------------------------------
# QUIT, INT, TERM


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_immediate_stop_does_not_wait_for_slow_request(start_server, sig):
    s = start_server("wsgiapp:app", "-w", "1", "--graceful-timeout", "30")
    (w,) = s.wait_workers(1)
    with s.conn(timeout=10) as c:
        c.send(build_request("GET", "/sleep?s=5"))
        time.sleep(0.5)                 # the request is in the app
        t0 = time.monotonic()
        s.signal(sig)
        rc = s.wait_exit(5)
        took = time.monotonic() - t0
        assert rc == 0, "exit status %r; log:\n%s" % (rc, s.stderr()[-3000:])
        assert took < 2.0, "master took %.2f s to exit on %s" % (took, sig.name)
        assert wait_for(lambda: not alive(w), 2), "worker %d still alive" % w
        data = c.read_to_eof(timeout=2)
        assert b"200 OK" not in data, data


def test_quit_kills_requests_past_graceful_timeout(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "--graceful-timeout", "1")
    (w,) = s.wait_workers(1)
    with s.conn(timeout=10) as c:
        c.send(build_request("GET", "/sleep?s=10"))
        time.sleep(0.5)
        t0 = time.monotonic()
        s.signal(signal.SIGQUIT)
        rc = s.wait_exit(8)
        took = time.monotonic() - t0
    assert rc == 0, rc
    assert 0.9 <= took < 3.0, "QUIT with graceful-timeout 1 took %.2f s" % took
    assert not alive(w)


def test_quit_serves_queued_requests_and_closes_keepalive(start_server):
    """QUIT: the request in the app and the one queued behind it (one app thread) are both
    served, each answered with Connection: close."""
    s = start_server("wsgiapp:app", "-w", "1", "--threads", "1", "--graceful-timeout", "10",
                     "--keep-alive", "10")
    (w,) = s.wait_workers(1)
    c1, c2 = s.conn(), s.conn()
    try:
        c1.send(build_request("GET", "/sleep?s=1.5"))
        time.sleep(0.3)
        c2.send(build_request("GET", "/pid"))
        time.sleep(0.2)
        s.signal(signal.SIGQUIT)
        r1 = c1.read_response(timeout=10)
        r2 = c2.read_response(timeout=10)
        assert r1.status == 200 and r1.body == str(w).encode(), r1
        assert r2.status == 200 and r2.body == str(w).encode(), r2
        assert (r1.header("connection") or "").lower() == "close", r1
        assert (r2.header("connection") or "").lower() == "close", r2
        assert c1.closed_by_peer(5) and c2.closed_by_peer(5)
    finally:
        c1.close()
        c2.close()
    assert s.wait_exit(10) == 0


@pytest.mark.parametrize("sig", ["QUIT", "HUP"])
def test_graceful_stop_serves_a_connection_already_accepted(start_server, sig):
    """A worker told to stop still answers the first request of a connection it had already
    accepted when the request arrives just after (a client sends right after connect(); under
    load a stopping worker closed such connections without a word: a failed request)."""
    s = start_server("wsgiapp:app", "-w", "1", "--graceful-timeout", "10", "--keep-alive", "10")
    (w,) = s.wait_workers(1)
    with s.conn() as c:
        time.sleep(0.2)                 # accepted by the idle worker by now
        s.signal(getattr(signal, "SIG" + sig))
        if sig == "HUP":                # the old worker is stopped once the new one is ready
            s.wait_log(r"stopping 1 old worker", timeout=10)
        time.sleep(0.05)
        c.send(build_request("GET", "/pid"))
        try:
            r = c.read_response(timeout=5)
        except ConnClosed as e:
            raise AssertionError("connection accepted before the %s closed without an answer "
                                 "(%r); log:\n%s" % (sig, e, s.stderr()[-2000:])) from None
    assert r.status == 200 and int(r.body) == w, r
    assert (r.header("connection") or "").lower() == "close", r


# ----------------------------------------------------------------------------------------
# dead workers: repair, boot back-off, boot timeout


def test_kill9_of_a_worker_repaired_within_a_second(start_server):
    s = start_server("wsgiapp:app", "-w", "1")
    (w,) = s.wait_workers(1)
    os.kill(w, signal.SIGKILL)
    t0 = time.monotonic()
    th, out = in_thread(lambda: s.get("/pid", timeout=10))
    new = wait_for(lambda: [p for p in s.workers() if p != w], 3, interval=0.01)
    t_proc = time.monotonic() - t0
    th.join(12)
    t_served = time.monotonic() - t0
    assert new, "no new worker 3 s after kill -9; log:\n%s" % s.stderr()[-3000:]
    assert "e" not in out, out
    r = out["r"]
    assert r.status == 200 and int(r.body) == new[0], (r, new)
    print("\nkill -9: new worker in /proc after %.0f ms, serving after %.0f ms" % (
        t_proc * 1000, t_served * 1000))
    assert t_proc < 1.0, "new worker after %.2f s" % t_proc
    assert t_served < 1.0, "served again after %.2f s" % t_served


def test_worker_dying_at_boot_respawned_with_backoff(start_server, tmp_path):
    log = tmp_path / "imports.log"
    s = start_server("dies_at_boot:app", "-w", "1", wait=False, env_extra={"IMPORT_LOG": log})
    seen = s.log_times(BOOTING, 4.0)
    assert not s.exited(), "master exited with %s; log:\n%s" % (s.proc.returncode,
                                                               s.stderr()[-3000:])
    times = [t for t, _ in seen]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("\nboot back-off: %d spawns in 4 s, gaps %s" % (
        len(seen), ["%.2f" % g for g in gaps]))
    # 100, 200, 400, 800, 1600 ms apart: about 6 in 4 s; without back-off, hundreds
    assert 3 <= len(seen) <= 9, (len(seen), gaps)
    assert gaps[-1] > 2 * gaps[0], gaps
    imports = log.read_text().count("dies_at_boot imported")
    assert len(seen) - 1 <= imports <= len(seen) + 1, (imports, len(seen))
    port = s.addr[1]
    assert set(listening_inodes(port)) & socket_inodes(s.pid), "master dropped its listener"
    s.signal(signal.SIGTERM)
    assert s.wait_exit(5) == 0


def test_boot_timeout_kills_a_worker_stuck_importing(start_server):
    s = start_server("slow_boot:app", "-w", "1", "--boot-timeout", "1", wait=False)
    seen = s.log_times(BOOTING, 4.5)
    assert not s.exited(), s.stderr()[-3000:]
    pids = [int(m) for _, m in seen]
    times = [t for t, _ in seen]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("\nboot timeout 1 s: spawns %r, gaps %s" % (pids, ["%.2f" % g for g in gaps]))
    assert 3 <= len(pids) <= 5, (pids, gaps)
    assert all(g >= 0.95 for g in gaps), gaps
    kills = s.log_findall(r"\(pid:(\d+)\) did not load the app within boot_timeout \(1s\)")
    assert [int(p) for p in kills[:len(pids) - 1]] == pids[:-1], (kills, pids)
    assert not any(alive(p) for p in pids[:-1])


def test_boot_timeout_respawn_backs_off(start_server):
    """Workers killed by boot_timeout are restarted with the same exponential back-off as
    workers that die while booting: the gaps between starts grow (1.1, 1.2, 1.4, 1.8 s)."""
    s = start_server("slow_boot:app", "-w", "1", "--boot-timeout", "1", wait=False)
    seen = s.log_times(BOOTING, 6.5)
    times = [t for t, _ in seen]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("\nboot timeout back-off: gaps %s" % ["%.2f" % g for g in gaps])
    assert len(gaps) >= 3, gaps
    assert gaps[-1] - gaps[0] >= 0.25, "no back-off between boot-timeout restarts: %s" % gaps


# ----------------------------------------------------------------------------------------
# deadlines


def test_hung_request_gets_504_then_traceback_and_replacement(start_server):
    s = start_server("arbiterapp:app", "-w", "1", "-t", "2")
    (w,) = s.wait_workers(1)
    t0 = time.monotonic()
    r = s.get("/hang", timeout=10)
    took = time.monotonic() - t0
    assert r.status == 504 and r.complete, r
    assert 1.9 <= took < 3.5, "504 after %.2f s with -t 2" % took
    s.wait_log(r"WORKER TIMEOUT \(pid:%d\)" % w, timeout=5)
    t_timeout = time.monotonic() - t0
    s.wait_log(r'File "[^"]*arbiterapp\.py", line \d+ in hang_here_forever', timeout=5)
    log = s.stderr()
    assert log.index("WORKER TIMEOUT (pid:%d)" % w) < log.index("in hang_here_forever")
    assert wait_for(lambda: not alive(w), 4), "worker %d alive after its timeout" % w
    t_gone = time.monotonic() - t0
    r = s.wait_ready(timeout=10, path="/pid")
    assert r.status == 200 and int(r.body) != w
    print("\ndeadline -t 2: 504 at %.2f s, WORKER TIMEOUT at %.2f s, worker gone at %.2f s" % (
        took, t_timeout, t_gone))
    assert t_timeout - took < 2.0


def test_stopped_worker_without_heartbeat_is_replaced(start_server):
    s = start_server("wsgiapp:app", "-w", "1", "-t", "2")
    (w,) = s.wait_workers(1)
    os.kill(w, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        s.wait_log(r"WORKER TIMEOUT \(pid:%d\)[^\n]*heartbeat" % w, timeout=6)
        took = time.monotonic() - t0
        assert wait_for(lambda: not alive(w), 4), "stopped worker %d never killed" % w
    finally:
        if alive(w):
            os.kill(w, signal.SIGKILL)
    assert took < 4.0, "missed heartbeat noticed after %.2f s with -t 2" % took
    r = s.wait_ready(timeout=10, path="/pid")
    assert int(r.body) != w


def test_idle_workers_and_short_requests_survive_a_short_timeout(start_server):
    s = start_server("wsgiapp:app", "-w", "2", "-t", "1")
    ws = s.wait_workers(2)
    r = s.get("/sleep?s=0.5")
    assert r.status == 200
    time.sleep(3)
    assert s.workers() == ws
    assert "WORKER TIMEOUT" not in s.stderr()


# ----------------------------------------------------------------------------------------
# recycling


def test_max_requests_under_load(start_server):
    limit = 40
    s = start_server("wsgiapp:app", "-w", "2", "--max-requests", str(limit),
                     "--max-requests-jitter", "10", "--keep-alive", "5")
    first = s.wait_workers(2)
    with Load(s.addr, keepalive=2, fresh=2, slow=1) as load:
        seen = s.watch_workers(3)
    assert not load.failures, load.summary()
    live = set(s.workers())
    assert not set(first) & live, "first workers never replaced: %r" % first
    assert len(seen) >= 6 and len(load.pids) >= 6, (seen, load.summary())
    # a worker leaves only after serving its max_requests (wait_ready took one of them)
    retired = {p: n for p, n in load.pids.items() if p not in live}
    assert all(n >= limit - 1 for n in retired.values()), retired
    assert len(s.log_findall(r"served max_requests")) >= 4
    print("\nmax_requests %d: %d workers in 3 s; %s" % (limit, len(seen), load.summary()))


def test_max_requests_one_worker_sequential(start_server):
    """-w 1, one request at a time: each worker serves at least max_requests requests, and
    the pid changes."""
    s = start_server("wsgiapp:app", "-w", "1", "--max-requests", "10")
    pids = []
    deadline = time.monotonic() + 10
    while len(set(pids)) < 3 and time.monotonic() < deadline:
        r = s.get("/pid")
        assert r.status == 200, r
        pids.append(int(r.body))
        time.sleep(0.01)
    distinct = list(dict.fromkeys(pids))
    assert len(distinct) >= 3, pids
    for p in distinct[:-1]:
        assert pids.count(p) >= 9, pids     # wait_ready's request was the first one's
    assert len(s.log_findall(r"served max_requests")) >= 2


def test_max_worker_lifetime_replaces_workers_under_load(start_server):
    s = start_server("wsgiapp:app", "-w", "2", "--max-worker-lifetime", "2",
                     "--keep-alive", "5")
    first = s.wait_workers(2)
    with Load(s.addr, keepalive=2, fresh=1, slow=1) as load:
        seen = s.watch_workers(8)
    assert not load.failures, load.summary()
    assert not any(alive(p) for p in first), "first workers outlived max_worker_lifetime"
    # workers born while we watched, and gone while we watched: their lifetime
    lifetimes = [last - born for p, (born, last) in seen.items()
                 if p not in first and born > 0 and not alive(p)]
    print("\nmax_worker_lifetime 2: lifetimes %s; %s" % (
        ["%.2f" % x for x in lifetimes], load.summary()))
    assert lifetimes, seen
    assert all(1.9 <= x <= 5.0 for x in lifetimes), lifetimes
    assert len(s.log_findall(r"older than max_worker_lifetime \(2s\)")) >= 3
    assert len(load.pids) >= 4, load.summary()


def test_max_worker_memory_replaces_a_grown_worker(start_server):
    s = start_server("arbiterapp:app", "-w", "1", "--max-worker-memory", "40",
                     "--keep-alive", "5")
    (w,) = s.wait_workers(1)
    base = rss_kib(w)
    assert 0 < base < 35 * 1024, "a fresh worker already uses %d KiB" % base
    with Load(s.addr, keepalive=1, fresh=1) as load:
        load.wait_requests(20)
        r = s.get("/alloc?mib=60")
        assert r.status == 200 and int(r.body) > 60 * 1024, r
        s.wait_log(r"\(pid:%d\) uses \d+ MiB, more than max_worker_memory \(40 MiB\)" % w,
                   timeout=5)
        assert wait_for(lambda: not alive(w), 10), "grown worker %d not replaced" % w
        (new,) = s.wait_workers(1)
        load.wait_requests(20)
    assert not load.failures, load.summary()
    assert new != w and load.pids[new] > 0, load.summary()
    time.sleep(2)
    assert s.workers() == [new], "the replacement was replaced in turn"


# ----------------------------------------------------------------------------------------
# TTIN, TTOU, WINCH, USR1


def test_ttin_ttou_change_the_worker_count_oldest_first(start_server):
    s = start_server("wsgiapp:app", "-w", "2")
    s.wait_workers(2)
    for n in (3, 4):
        s.signal(signal.SIGTTIN)
        s.wait_workers(n)
    order = boot_order(s)
    assert sorted(order) == s.workers(), (order, s.workers())
    for i, n in enumerate((3, 2, 1)):
        s.signal(signal.SIGTTOU)
        ws = s.wait_workers(n)
        assert ws == sorted(order[i + 1:]), "TTOU did not stop the oldest: %r, %r" % (
            order, ws)
    s.signal(signal.SIGTTOU)            # never below one
    time.sleep(1)
    assert s.workers() == [order[-1]]
    assert int(s.get("/pid").body) == order[-1]


def test_ttou_lets_the_oldest_finish_its_request(start_server):
    s = start_server("wsgiapp:app", "-w", "2", "--threads", "1", "--graceful-timeout", "10")
    s.wait_workers(2)
    oldest = boot_order(s)[0]
    results = [in_thread(lambda: s.get("/sleep?s=2", timeout=10)) for _ in range(2)]
    time.sleep(0.5)
    s.signal(signal.SIGTTOU)
    for th, _ in results:
        th.join(12)
    outs = [out for _, out in results]
    assert all("r" in o and o["r"].status == 200 for o in outs), outs
    assert wait_for(lambda: not alive(oldest), 5)
    assert len(s.wait_workers(1)) == 1


@pytest.mark.parametrize("restart", ["TTIN", "HUP"])
def test_winch_stops_workers_master_keeps_listener(start_server, restart):
    s = start_server("wsgiapp:app", "-w", "2", "--graceful-timeout", "10")
    old = s.wait_workers(2)
    th, out = in_thread(lambda: s.get("/sleep?s=1", timeout=10))
    time.sleep(0.3)
    s.signal(signal.SIGWINCH)
    th.join(12)
    assert "r" in out and out["r"].status == 200, out          # finished gracefully
    assert wait_for(lambda: not s.workers(), 10), "workers after WINCH: %r" % s.workers()
    time.sleep(0.5)
    assert not s.exited() and s.workers() == []
    port = s.addr[1]
    inodes = listening_inodes(port)
    assert len(inodes) == 1 and inodes[0] in socket_inodes(s.pid), "listener lost"
    with s.conn(timeout=10) as c:               # the kernel still accepts
        c.send(build_request("GET", "/pid"))
        assert c.nothing_within(1.0), "answered with no worker running"
        s.signal(getattr(signal, "SIG" + restart))
        r = c.read_response(timeout=10)
    assert r.status == 200 and int(r.body) not in old, r
    s.wait_workers(1 if restart == "TTIN" else 2)


def test_usr1_reopens_the_logs_in_master_and_workers(start_server, tmp_path):
    err, acc = tmp_path / "error.log", tmp_path / "access.log"
    s = start_server("wsgiapp:app", "-w", "2", "--error-logfile", err,
                     "--access-logfile", acc)
    ws = s.wait_workers(2)
    s.get("/errors?msg=before-rotation")
    s.wait_log("before-rotation", path=err)
    os.rename(err, str(err) + ".1")
    os.rename(acc, str(acc) + ".1")
    s.signal(signal.SIGUSR1)
    s.wait_log(r"Handling signal: usr1", path=str(err) + ".1")

    def nothing_holds_rotated():
        for p in [s.pid] + ws:
            for fd in os.listdir("/proc/%d/fd" % p):
                try:
                    target = os.readlink("/proc/%d/fd/%s" % (p, fd))
                except OSError:
                    continue
                if target.endswith(".log.1"):
                    return False
        return err.exists() and acc.exists()
    assert wait_for(nothing_holds_rotated, 5), "a process still writes the rotated logs"
    for i in range(6):
        assert s.get("/errors?msg=after-rotation-%d" % i).status == 200
    s.wait_log("after-rotation", path=err, count=6)
    assert wait_for(lambda: acc.read_text().count("after-rotation") == 6, 5), acc.read_text()
    assert "after-rotation" not in (tmp_path / "error.log.1").read_text()
    assert "after-rotation" not in (tmp_path / "access.log.1").read_text()


# ----------------------------------------------------------------------------------------
# the scoreboard (harness.read_scoreboard reads it from the master's memory)

def now_ms():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)


def test_scoreboard_figures(start_server):
    s = start_server("wsgiapp:app", "-w", "2", "--threads", "2", "-t", "30")
    ws = s.wait_workers(2)
    for _ in range(9):
        assert s.get("/hello").status == 200

    def settled():          # both workers have imported the app, every request counted
        b = read_scoreboard(s.pid)
        return b if (sorted(b) == ws and all(x["ready"] for x in b.values())
                     and sum(x["requests"] for x in b.values()) == 10) else None
    board = wait_for(settled, 5) or read_scoreboard(s.pid)
    assert sorted(board) == ws, board
    assert sum(x["requests"] for x in board.values()) == 10, board    # with wait_ready's
    for x in board.values():
        assert (x["generation"], x["ready"], x["retire"], x["in_flight"], x["oldest_ms"]) \
            == (1, 1, 0, 0, 0), x
        assert 0 <= now_ms() - x["heartbeat_ms"] < 30_000, x
    th, out = in_thread(lambda: s.get("/sleep?s=1.5", timeout=10))
    t_sent = now_ms()
    busy = wait_for(lambda: [x for x in read_scoreboard(s.pid).values() if x["in_flight"]], 1)
    assert busy and len(busy) == 1, busy
    (x,) = busy
    assert x["in_flight"] == 1 and x["connections"] >= 1, x
    assert abs(x["oldest_ms"] - t_sent) < 500, (x, t_sent)
    th.join(10)
    assert out["r"].status == 200
    assert wait_for(lambda: all(x["in_flight"] == 0 and x["oldest_ms"] == 0
                                for x in read_scoreboard(s.pid).values()), 2)
    _, new = hup(s, ws, 2)
    wait_for(lambda: sorted(read_scoreboard(s.pid)) == new, 2)     # old slots released
    board = read_scoreboard(s.pid)
    assert sorted(board) == new, board
    assert {x["generation"] for x in board.values()} == {2}, board


def test_usr1_while_a_worker_boots_does_not_kill_it(start_server, tmp_path):
    """logrotate's USR1 can come at any time, also while a worker imports the app: the
    worker must live on and reopen its logs once it serves."""
    err = tmp_path / "error.log"
    s = start_server("slow_boot:app", "-w", "1", "--error-logfile", err,
                     env_extra={"SLOW_BOOT_S": "1"}, wait=False)
    (worker,) = s.wait_workers(1)
    os.rename(err, str(err) + ".1")
    s.signal(signal.SIGUSR1)
    s.wait_ready(timeout=15)
    assert s.workers() == [worker]
    log = open(str(err) + ".1").read()
    assert "was sent SIGUSR1" not in log, log[-2000:]
    # The worker reopened the error log after its boot: no fd of it on the moved file.

    def worker_on_new_file():
        targets = []
        for fd in os.listdir("/proc/%d/fd" % worker):
            try:
                targets.append(os.readlink("/proc/%d/fd/%s" % (worker, fd)))
            except OSError:
                pass
        return str(err) in targets and not any(t.endswith(".log.1") for t in targets)
    assert wait_for(worker_on_new_file, 5)
