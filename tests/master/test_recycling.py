"""Recycling: max_requests, max_worker_lifetime and max_worker_memory replace workers,
under continuous client load (harness.Load), without a failed request.

Elsewhere: max_requests per worker class, tests/asgi/ and tests/gevent/."""

import time

import pytest

from harness import Load, alive, rss_kib, wait_for

pytestmark = pytest.mark.unitcorn_only(
    "unitcorn's signal contract and log lines (gunicorn's TERM is graceful, it has no "
    "boot back-off, 504 on timeout, max_worker_lifetime/memory)")


def test_max_requests_under_load(start_server):
    limit = 40
    s = start_server("wsgiapp:app", "-w", "2", "--max-requests", str(limit),
                     "--max-requests-jitter", "10", "--keep-alive", "5")
    first = s.wait_workers(2)
    # The master looks at max_requests once a second when nothing boots: three
    # generations take about 3 s, more on a loaded machine (bounded at 12 s).
    seen = {}
    with Load(s.addr, keepalive=2, fresh=2, slow=1) as load:
        for _ in range(12):
            seen.update(s.watch_workers(1))
            if len(seen) >= 6 and len(load.pids) >= 6:
                break
    assert not load.failures, load.summary()
    live = set(s.workers())
    assert not set(first) & live, "first workers never replaced: %r" % first
    assert len(seen) >= 6 and len(load.pids) >= 6, (seen, load.summary())
    # a worker leaves only after serving its max_requests (wait_ready took one of them)
    retired = {p: n for p, n in load.pids.items() if p not in live}
    assert all(n >= limit - 1 for n in retired.values()), retired
    assert len(s.log_findall(r"served max_requests")) >= 4
    print("\nmax_requests %d: %d workers; %s" % (limit, len(seen), load.summary()))


def test_max_requests_served_faster_than_a_worker_boots(start_server):
    """Workers reach max_requests before their replacements are ready (a slow import): the
    marked workers still serve, are stopped as replacements come up, and the number of
    workers stays bounded (a rule that waited for `workers` unmarked ready ones let them
    pile up, each serving until the end)."""
    s = start_server("wsgiapp:app", "-w", "2", "--max-requests", "5", "--keep-alive", "5",
                     env_extra={"IMPORT_DELAY_S": "0.4"})
    first = s.wait_workers(2)
    with Load(s.addr, keepalive=2, fresh=2) as load:
        seen = s.watch_workers(4)
        most = len(s.workers())
    assert not load.failures, load.summary()
    live_at = {}
    for pid, (t0, t1) in seen.items():
        for t in (t0, t1):
            live_at[t] = sum(1 for a, b in seen.values() if a <= t <= b)
    peak = max(live_at.values())
    assert not any(alive(p) for p in first), "first workers never stopped: %r" % first
    # 2 serving, 2 booting, and the ones draining their last response
    assert peak <= 6 and most <= 6, (peak, most, sorted(seen.items()))
    assert len(seen) >= 6, seen
    print("\nmax_requests 5, 0.4 s boot: %d workers in 4 s, at most %d at once; %s"
          % (len(seen), peak, load.summary()))


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
