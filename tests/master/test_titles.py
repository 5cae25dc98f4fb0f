"""Process titles, what ps shows: the master and each worker carry theirs, -n/--name
(proc_name) replaces "unitcorn" in them, a title is cut to the memory of the original command
line, and after a HUP the command line is still read as given and a new proc_name retitles
master and workers."""

import os
import signal
import subprocess
import time

import pytest

from harness import cmdline, hup, title, wait_for


TITLES_UNITCORN_ONLY = pytest.mark.unitcorn_only(
    "unitcorn's process titles (gunicorn needs setproctitle and names them differently)")


# ----- /proc helpers of this file (cmdline and title are the harness's)


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().rstrip("\n")


def argv_size(argv):
    """Bytes of argv memory for this argument list (each argument and its NUL)."""
    return sum(len(os.fsencode(a)) + 1 for a in argv)


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
