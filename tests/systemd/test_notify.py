"""sd_notify without systemd: a NOTIFY_SOCKET of the test's own, with SO_PASSCRED so that
the sender's pid is checked as systemd checks it (the pattern of the systemd harness)."""
import os
import signal
import socket
import subprocess
import time

import pytest

from harness import UNITCORN_BIN, NotifySocket, wait_for

pytestmark = pytest.mark.unitcorn_only


@pytest.fixture
def notify(tmp_path):
    n = NotifySocket(tmp_path / "notify")
    yield n
    n.close()


def _start(start_server, notify, *args, watchdog_usec=None):
    extra = {"NOTIFY_SOCKET": notify.path}
    if watchdog_usec:
        extra["WATCHDOG_USEC"] = str(watchdog_usec)
    return start_server("wsgiapp:app", *args, env_extra=extra, wait=False)


def test_ready_only_once_every_worker_serves_then_stopping(start_server, notify):
    s = _start(start_server, notify, "-w", "3")
    fields, pid = notify.expect("READY")
    assert fields["READY"] == "1" and pid == s.pid, (fields, pid)
    # By READY=1 every initial worker has imported the app and accepts.
    assert "3 workers" in fields.get("STATUS", ""), fields
    assert len(s.wait_workers(3)) == 3
    assert s.get("/pid").status == 200
    s.signal(signal.SIGQUIT)
    fields, pid = notify.expect("STOPPING")
    assert fields["STOPPING"] == "1" and pid == s.pid
    assert s.wait_exit(15) == 0


def test_reload_sends_reloading_with_monotonic_usec_then_ready(start_server, notify):
    s = _start(start_server, notify, "-w", "2")
    notify.expect("READY")
    s.signal(signal.SIGHUP)
    fields, pid = notify.expect("RELOADING")
    assert pid == s.pid
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert abs(int(fields["MONOTONIC_USEC"]) - now_usec) < 2_000_000, fields
    fields, pid = notify.expect("READY")
    assert pid == s.pid and "generation 2" in fields.get("STATUS", ""), fields
    assert s.get("/pid").status == 200


def test_status_reports_requests_served(start_server, notify):
    s = _start(start_server, notify, "-w", "1")
    notify.expect("READY")
    for _ in range(5):
        assert s.get("/pid").status == 200

    def served():
        fields, _ = notify.expect("STATUS", within=3)
        return "5 requests" in fields["STATUS"] or None
    assert wait_for(served, 6), [f for _, f, _ in notify.seen]


def test_watchdog_pings_at_half_the_period_from_the_master(start_server, notify):
    s = _start(start_server, notify, "-w", "2", watchdog_usec=1_000_000)
    notify.expect("READY")
    fields, pid = notify.expect("WATCHDOG", within=2)
    assert fields["WATCHDOG"] == "1" and pid == s.pid
    assert notify.count("WATCHDOG", 2.2) >= 3      # every 0.5 s


def test_watchdog_stops_when_the_master_is_stuck(start_server, notify):
    s = _start(start_server, notify, "-w", "1", watchdog_usec=1_000_000)
    notify.expect("READY")
    notify.expect("WATCHDOG", within=2)
    os.kill(s.pid, signal.SIGSTOP)
    try:
        time.sleep(0.6)                                # a ping may be in flight
        notify.count("WATCHDOG", 0.1)
        assert notify.count("WATCHDOG", 2.0) == 0
    finally:
        os.kill(s.pid, signal.SIGCONT)
    notify.expect("WATCHDOG", within=2)


def test_watchdog_pauses_while_every_worker_hangs(start_server, notify):
    """With every worker hung, nothing vouches for the service: the pings pause (a
    WatchdogSec shorter than the pause ends in a watchdog kill) until the master has
    replaced the hung workers."""
    s = _start(start_server, notify, "-w", "2", "-t", "2", watchdog_usec=1_000_000)
    notify.expect("READY")
    workers = s.wait_workers(2)
    notify.expect("WATCHDOG", within=2)
    stopped = time.monotonic()
    for w in workers:
        os.kill(w, signal.SIGSTOP)      # hung: no heartbeat, no answers
    try:
        pings, deadline = [stopped], stopped + 8
        while time.monotonic() < deadline:
            try:
                fields, _ = notify._recv(deadline - time.monotonic())
            except socket.timeout:
                break
            if "WATCHDOG" in fields:
                pings.append(time.monotonic())
    finally:
        for w in workers:
            try:
                os.kill(w, signal.SIGCONT)
            except ProcessLookupError:
                pass
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert gaps and max(gaps) >= 1.0, "pings never paused: %r" % gaps
    assert len(pings) > 2 and pings[-1] - stopped > 2.5, "pings did not resume: %r" % pings
    assert not set(workers) & set(s.wait_workers(2)), "hung workers were not replaced"


@pytest.mark.parametrize("preload", [False, True])
def test_the_app_does_not_see_the_service_manager_variables(start_server, notify, preload):
    args = ["-w", "1"] + (["--preload"] if preload else [])
    s = _start(start_server, notify, *args, watchdog_usec=1_000_000)
    notify.expect("READY")
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC"):
        r = s.get("/osenv?k=" + name)
        assert r.status == 200 and r.body == b"<unset>", (name, r)


def test_reload_helper_says_reloading_before_the_hup(start_server, notify, tmp_path):
    """`unitcorn reload PID` (the unit's ExecReload=): RELOADING=1 from the helper itself,
    then the master reloads and says READY=1 when the new generation serves."""
    s = _start(start_server, notify, "-w", "1")
    notify.expect("READY")
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    helper = subprocess.Popen([str(UNITCORN_BIN), "reload", str(s.pid)], env=env)
    assert helper.wait(10) == 0
    fields, pid = notify.expect("RELOADING")
    assert pid == helper.pid and "MONOTONIC_USEC" in fields, (fields, pid)
    fields, pid = notify.expect("READY")
    assert pid == s.pid and "generation 2" in fields.get("STATUS", ""), fields


def test_reload_helper_names_a_missing_master():
    r = subprocess.run([str(UNITCORN_BIN), "reload", "999999999"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "cannot send HUP to the master, pid 999999999" in r.stderr, r.stderr


def test_an_aborted_reload_ends_the_reloading_state_and_stays_in_status(start_server, notify,
                                                                         tmp_path):
    """A config that no longer parses: the reload never starts a generation, yet systemd
    (told RELOADING=1 by `unitcorn reload`) gets READY=1, and STATUS= says the reload
    failed until one succeeds."""
    cfg = tmp_path / "app.toml"
    cfg.write_text("workers = 1\n")
    s = _start(start_server, notify, "-c", str(cfg))
    notify.expect("READY")
    cfg.write_text("workers = \n")
    s.signal(signal.SIGHUP)
    fields, pid = notify.expect("READY")
    assert pid == s.pid and "last reload failed" in fields.get("STATUS", ""), fields
    cfg.write_text("workers = 1\n")
    s.signal(signal.SIGHUP)
    fields, _ = notify.expect("READY")
    assert "generation 2" in fields["STATUS"] and "failed" not in fields["STATUS"], fields
