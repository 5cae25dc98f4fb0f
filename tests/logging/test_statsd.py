"""Issue 7 point 6: StatsD instrumentation with gunicorn's metric names and line format
(gunicorn/instrument/statsd.py), checked against a UDP listener of the test's own on
127.0.0.1: per-request counters and timer from the workers, the workers gauge from the
master, the error log's counters, prefix and DogStatsD tags; a StatsD server that is not
there never fails a request.
"""

import os
import re
import signal
import socket
import threading
import time
import pytest

from harness import run_cli, wait_for

LINE = re.compile(r"^(?P<name>[^:|#]+):(?P<value>-?[0-9.]+)\|(?P<type>c|ms|g|h)"
                  r"(?:\|@(?P<rate>[0-9.]+))?(?:\|#(?P<tags>.*))?$")


class StatsdListener:
    """A UDP socket on 127.0.0.1:<free port> that records every metric line it receives."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.datagrams = []
        self.lines = []           # parsed: dicts of name, value, type, rate, tags
        self.bad = []             # lines that are not StatsD
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.datagrams.append(data)
                for line in data.decode("ascii").split("\n"):
                    m = LINE.match(line)
                    (self.lines.append(m.groupdict()) if m else self.bad.append(line))

    def named(self, name):
        with self._lock:
            return [l for l in self.lines if l["name"] == name]

    def total(self, name):
        return sum(float(l["value"]) for l in self.named(name))

    def wait_total(self, name, at_least, timeout=5):
        assert wait_for(lambda: self.total(name) >= at_least, timeout), (
            "%s: %s < %s; got %r" % (name, self.total(name), at_least, self.lines[-20:]))

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def statsd():
    listener = StatsdListener()
    yield listener
    listener.close()


def test_request_metrics_have_gunicorns_names_types_prefix_and_tags(start_server, statsd):
    s = start_server("wsgiapp:app", "-w", "2", "--statsd-host", statsd.address,
                     "--statsd-prefix", "shop.web.", "--dogstatsd-tags", "env:test,canary")
    for _ in range(5):
        assert s.get("/pid").status == 200
    for _ in range(2):
        assert s.get("/status?code=404").status == 404
    # wait_ready's own request counts too: 8 in all.
    statsd.wait_total("shop.web.gunicorn.requests", 8)
    time.sleep(0.3)
    assert statsd.bad == []
    assert statsd.total("shop.web.gunicorn.requests") == 8
    assert statsd.total("shop.web.gunicorn.request.status.200") == 6
    assert statsd.total("shop.web.gunicorn.request.status.404") == 2
    for line in statsd.named("shop.web.gunicorn.requests"):
        assert (line["type"], line["rate"]) == ("c", "1.0")
    timers = statsd.named("shop.web.gunicorn.request.duration")
    assert len(timers) == 8
    assert all(l["type"] == "ms" and 0 <= float(l["value"]) < 5000 for l in timers)
    # Every line: one prefix joined with one dot, and the tags.
    assert all(l["name"].startswith("shop.web.gunicorn.") for l in statsd.lines)
    assert all(l["tags"] == "env:test,canary" for l in statsd.lines)


def test_a_request_duration_is_measured_in_milliseconds(start_server, statsd):
    s = start_server("wsgiapp:app", "--statsd-host", statsd.address)
    assert s.get("/sleep?s=0.3").status == 200
    statsd.wait_total("gunicorn.request.duration", 300)
    slow = max(float(l["value"]) for l in statsd.named("gunicorn.request.duration"))
    assert 300 <= slow < 2000, slow
    # No prefix, no tags: bare names.
    assert all(l["tags"] is None for l in statsd.lines)


def test_the_master_sends_the_workers_gauge_when_it_changes(start_server, statsd):
    s = start_server("wsgiapp:app", "-w", "2", "--statsd-host", statsd.address)
    s.wait_workers(2)
    assert wait_for(lambda: [l["value"] for l in statsd.named("gunicorn.workers")] == ["2"], 5)
    s.signal(signal.SIGTTIN)
    s.wait_workers(3)
    assert wait_for(lambda: [l["value"] for l in statsd.named("gunicorn.workers")][-1:] == ["3"], 5)
    assert all(l["type"] == "g" for l in statsd.named("gunicorn.workers"))


def test_error_log_events_are_counted(start_server, statsd):
    s = start_server("wsgiapp:app", "--statsd-host", statsd.address)
    # An exception in the app: logged with its traceback (gunicorn's log.exception).
    assert s.get("/raise_before").status == 500
    statsd.wait_total("gunicorn.log.exception", 1)
    # A worker killed by a signal: an ERROR (not CRITICAL, which is for timeouts).
    (pid,) = s.wait_workers(1)
    os.kill(pid, signal.SIGKILL)
    statsd.wait_total("gunicorn.log.error", 1)
    assert statsd.total("gunicorn.log.critical") == 0


def test_no_statsd_server_fails_no_request_and_is_reported_once(start_server):
    # A port nobody listens on: each send after the first is refused (ICMP).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = "127.0.0.1:%d" % probe.getsockname()[1]
    s = start_server("wsgiapp:app", "--statsd-host", nobody)
    statuses = set()
    for _ in range(30):
        statuses.add(s.get("/pid").status)
        time.sleep(0.02)
    assert statuses == {200}
    s.wait_log(r"statsd: cannot send to %s" % re.escape(nobody), timeout=5)
    time.sleep(0.5)
    assert len(s.log_findall(r"statsd: cannot send")) == 1, s.stderr()[-3000:]


def test_a_bad_statsd_host_is_refused_at_start():
    r = run_cli(["--statsd-host", "localhost:notaport", "--check-config", "wsgiapp:app"])
    assert r.returncode != 0, r
    assert '--statsd-host: "localhost:notaport" has a port "notaport"' in r.stderr


def test_a_worker_timeout_counts_as_critical(start_server, statsd):
    s = start_server("wsgiapp:app", "--statsd-host", statsd.address, "-t", "1")
    assert s.get("/sleep?s=5", timeout=10).status == 504
    statsd.wait_total("gunicorn.log.critical", 1, timeout=10)
