"""preload_app (--preload), the app imported by the master before it forks: --gc-freeze
freezes what the import made, and a thread the app starts at import is warned about.

Elsewhere: HUP with preload_app, test_reload.py; the app never imported as root,
test_privileges.py; a failed import under preload, tests/python/test_app_import.py."""

import time

import pytest


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
