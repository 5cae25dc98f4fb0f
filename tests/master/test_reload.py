"""HUP: reload by generation (DESIGN.md). The master reads the config file again and starts
a new generation of workers; the old one stops once the new one serves, so a reload under
continuous load (harness.Load) fails no request, and HUPs in quick succession supersede each
other. A config that no longer parses, or an app that no longer imports, keeps the old
generation serving; with preload_app the master imports the changed app itself.

Elsewhere: a reload started by an edit of the app's files, test_code_reload.py; process
titles across a HUP, test_titles.py; `systemctl reload`, tests/systemd/."""

import signal
import textwrap
import time

import pytest

from harness import Load, alive, hup, read_scoreboard, wait_for

pytestmark = pytest.mark.unitcorn_only(
    "unitcorn's signal contract and log lines (gunicorn's TERM is graceful, it has no "
    "boot back-off, 504 on timeout, max_worker_lifetime/memory)")


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


ENV_WATCH_APP = textwrap.dedent('''\
    """Preloaded: a thread of the master reads the C environment (getenv(3) through
    ctypes, which drops the GIL, so it runs alongside the master) and writes what it saw;
    the workers answer what they see."""
    import ctypes
    import os
    import threading
    import time

    SEEN = %r
    AT_IMPORT = os.environ.get("CFG_VALUE", "")
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p


    def c_value():
        return (libc.getenv(b"CFG_VALUE") or b"").decode()


    def watch(master):
        seen, reads, deadline = set(), 0, time.monotonic() + 120
        while time.monotonic() < deadline and os.getpid() == master:
            for _ in range(200):
                seen.add(c_value())
                reads += 1
            with open(SEEN + ".tmp", "w") as f:
                f.write("%%d %%s" %% (reads, ",".join(sorted(seen))))
            os.replace(SEEN + ".tmp", SEEN)
            time.sleep(0.001)


    # Imported again at every HUP (preload): one watcher for the master's life.
    if not any(t.name == "envwatch" for t in threading.enumerate()):
        threading.Thread(target=watch, args=(os.getpid(),), name="envwatch",
                         daemon=True).start()


    def app(environ, start_response):
        body = ("%%s %%s %%s" %% (AT_IMPORT, os.environ.get("CFG_VALUE", ""),
                                  c_value())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    ''')


def test_hup_changes_raw_env_without_touching_the_masters_environment(start_server,
                                                                        tmp_path):
    """A preloaded app's thread reads the master's C environment all along (getenv, no
    GIL) across three HUPs that change raw_env: the master's own environment never
    changes under it (setenv there, with threads running, is unsound), yet each new
    generation has the new value, in os.environ, in its C environment and at the
    preloaded import."""
    d = tmp_path / "app"
    d.mkdir()
    seen = tmp_path / "seen"
    (d / "envwatch.py").write_text(ENV_WATCH_APP % str(seen))
    cfg = tmp_path / "unitcorn.toml"
    cfg.write_text('raw_env = ["CFG_VALUE=one"]\npreload_app = true\n')
    s = start_server("envwatch:app", "-w", "2", "-c", str(cfg), "--chdir", str(d))
    gen = s.wait_workers(2)
    assert {s.get("/").body for _ in range(4)} == {b"one one one"}

    def master_reads():
        assert wait_for(seen.exists, 10), "the master's thread wrote nothing"
        reads, values = seen.read_text().split(" ")
        return int(reads), values.split(",")

    for value in ["two", "three", "four"]:
        cfg.write_text('raw_env = ["CFG_VALUE=%s"]\npreload_app = true\n' % value)
        _, gen = hup(s, gen, 2)
        expected = ("%s %s %s" % (value, value, value)).encode()
        assert {s.get("/").body for _ in range(6)} == {expected}
    before, _ = master_reads()
    assert wait_for(lambda: master_reads()[0] > before, 10), "the master's thread stopped"
    reads, values = master_reads()
    assert values == ["one"], "the master's environment changed under its thread: %r" % (
        values,)
    assert alive(s.pid)
    print("\nthe master's thread read the environment %d times across 3 HUPs" % reads)


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
