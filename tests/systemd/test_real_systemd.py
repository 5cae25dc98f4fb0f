"""unitcorn under a REAL systemd (252, Debian 12's, the oldest supported): the project's own
systemd/unitcorn@.service and unitcorn@.socket, booted in a throwaway systemd-nspawn
container (tests/nspawn.py), serving a Flask app from a virtualenv as user `unitcorn`.

What is checked: the units verify clean; socket activation on the first connection;
READY=1 only once the workers have imported the app; `systemctl reload` under load with no
failed request, and a reload that cannot load the app; a stuck master ending in
Result=watchdog and the socket starting the service again; a graceful `systemctl stop`
with a request in flight; the USR2 binary upgrade with its MAINPID= hand-over under load;
the journald output's fields.

Test-specific settings are drop-ins (unitcorn@demo.service.d/, unitcorn@demo.socket.d/),
which also shows that the units take them: a short WatchdogSec, a bounded TimeoutStopSec,
and a TCP listener beside the unit's unix socket. Clients run inside the container (its
network is private, and the unix socket is in the container's /run).

Needs root and systemd-nspawn (tests/run.sh installs systemd-container): without them
these tests FAIL, they are never skipped.
"""

import json
import shutil
import time

import pytest

from harness import APPS, TESTS, UNITCORN_BIN, VENV
from nspawn import Container
from systemd_units import (CONFIG, SERVICE, SOCKET, STAGE, VENV_INSIDE, WORKERS, InsideLoad,
                           Journal, get, main_pid, show, start_by_request,
                           stop_with_a_request_in_flight, tree, until, workers_of)

pytestmark = pytest.mark.unitcorn_only("systemd units of unitcorn")

REPO_SYSTEMD = TESTS.parent / "systemd"
TCP = "tcp:127.0.0.1:8080"                   # added by the socket drop-in
WATCHDOG_SEC = 3
IMPORT_DELAY = 0.8                           # seconds each worker takes to import the app

DROPIN_SERVICE = """\
# test_real_systemd.py: a watchdog kill within seconds (30 s in the unit), and a bounded stop.
[Service]
WatchdogSec=%d
TimeoutStopSec=20
""" % WATCHDOG_SEC

# No access log by default: the load tests would flood journald (and hit its rate limit,
# 10000 lines in 30 s); test_journal_* turns it on.
DEMO_TOML = """\
wsgi_app = "systemdapp:app"
chdir = "/srv/demo"
virtualenv = "%s"
bind = ["fd://http"]
workers = %d
graceful_timeout = 10
raw_env = ["DEMO_IMPORT_DELAY=%s"]
""" % (VENV_INSIDE, WORKERS, IMPORT_DELAY)

# A second listener: the socket unit takes drop-ins, and unitcorn serves a passed socket
# its bind does not name (bind names fd://http, and both are named http here).
DROPIN_SOCKET = """\
[Socket]
ListenStream=127.0.0.1:8080
"""

SYSUSERS = 'u unitcorn - "unitcorn WSGI server" /nonexistent\n'

INSTALL = """\
set -e
install -m 0755 {stage}/unitcorn /usr/bin/unitcorn
# The image's policy-rc.d refuses service starts by maintainer scripts (the host keeps it).
rm -f /usr/sbin/policy-rc.d
install -m 0644 {stage}/unitcorn@.service {stage}/unitcorn@.socket /etc/systemd/system/
install -D -m 0644 {stage}/service-dropin.conf /etc/systemd/system/{service}.d/50-test.conf
install -D -m 0644 {stage}/socket-dropin.conf /etc/systemd/system/{socket}.d/50-test.conf
install -D -m 0644 {stage}/sysusers.conf /etc/sysusers.d/unitcorn.conf
systemd-sysusers /etc/sysusers.d/unitcorn.conf
install -D -m 0644 {stage}/demo.toml /etc/unitcorn/demo.toml
install -D -m 0644 {stage}/systemdapp.py /srv/demo/systemdapp.py
systemctl daemon-reload
""".format(stage=STAGE, service=SERVICE, socket=SOCKET)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """One container for the module, with unitcorn and its units installed."""
    stage = tmp_path_factory.mktemp("systemd-stage")
    shutil.copy2(UNITCORN_BIN, stage / "unitcorn")
    for unit in ("unitcorn@.service", "unitcorn@.socket"):
        shutil.copy2(REPO_SYSTEMD / unit, stage / unit)     # the REAL unit files
    shutil.copy2(APPS / "systemdapp.py", stage / "systemdapp.py")
    shutil.copy2(TESTS / "harness.py", stage / "harness.py")
    shutil.copy2(TESTS / "systemd_client.py", stage / "systemd_client.py")
    (stage / "service-dropin.conf").write_text(DROPIN_SERVICE)
    (stage / "socket-dropin.conf").write_text(DROPIN_SOCKET)
    (stage / "demo.toml").write_text(DEMO_TOML)
    (stage / "sysusers.conf").write_text(SYSUSERS)
    for p in stage.iterdir():
        p.chmod(0o755 if p.name == "unitcorn" else 0o644)
    stage.chmod(0o755)
    # The venv is bound, not copied: the checkout may be under /root (mode 700), but a
    # bind mount needs no access to the directories above it.
    c = Container.boot(binds={str(stage): STAGE, str(VENV): VENV_INSIDE})
    try:
        c.run(INSTALL)
        yield c
    finally:
        c.close()


@pytest.fixture
def fresh(box):
    """Each test starts with the socket listening, the service stopped and no failure
    recorded; returns the journal from the test's start."""
    box.run(["systemctl", "stop", SERVICE], timeout=40)
    box.run(["systemctl", "reset-failed", SERVICE, SOCKET], check=False)
    box.run(["systemctl", "start", SOCKET])
    return Journal(box)


# --------------------------------------------------------------------------- tests

def test_units_verify_clean_with_the_test_drop_ins(box):
    """systemd-analyze verify exits 0 even on unknown keys: any output is a failure."""
    # --man=no: the man pages of Documentation= are not installed here (tests/packaging/
    # test_packages.py verifies the units as the package installs them, man pages included).
    r = box.run(["systemd-analyze", "verify", "--man=no", SOCKET, SERVICE], check=False)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    for unit in (SERVICE, SOCKET):
        drop = show(box, unit, "DropInPaths")["DropInPaths"]
        assert drop == "/etc/systemd/system/%s.d/50-test.conf" % unit, drop


def test_socket_activation_starts_the_service_on_first_connection(box, fresh):
    journal = fresh
    sock = show(box, SOCKET, "ActiveState", "SubState")
    assert sock == {"ActiveState": "active", "SubState": "listening"}, sock
    assert show(box, SERVICE, "ActiveState")["ActiveState"] == "inactive", \
        "service started before any connection; " + journal.excerpt()

    r = get(box, "/whoami", timeout=30)
    assert r.get("status") == 200, "%r; %s" % (r, journal.excerpt())
    me = json.loads(r["body"])
    # The first worker may answer before the second has imported the app, so before the
    # master's READY=1: wait for it.
    until("the service active (READY=1)",
          lambda: show(box, SERVICE, "ActiveState")["ActiveState"] == "active", 15, journal)

    svc = show(box, SERVICE, "ActiveState", "SubState", "MainPID", "Type", "NRestarts",
               "StatusText", "Result", "WatchdogUSec")
    assert (svc["ActiveState"], svc["SubState"], svc["Type"], svc["NRestarts"]) == \
        ("active", "running", "notify", "0"), svc
    # The drop-in's WatchdogSec= (the unit says 30 s) is the one in force.
    assert svc["WatchdogUSec"] == "%ds" % WATCHDOG_SEC, svc
    master = int(svc["MainPID"])
    assert "%d workers (generation 1)" % WORKERS in svc["StatusText"], svc
    workers = workers_of(box, master)
    assert len(workers) == WORKERS, (workers, tree(box, master))
    assert me["pid"] in workers and me["ppid"] == master, (me, workers, master)

    # The unit's User=: the master and every worker run as `unitcorn`.
    uid = int(box.run(["id", "-u", "unitcorn"]).stdout)
    procs = tree(box, master)
    assert {p["uid"] for p in procs} == {uid}, procs
    assert (me["uid"], me["user"]) == (uid, "unitcorn"), me
    # Flask came from the config's virtualenv, readable by the service user.
    assert me["flask_file"].startswith(VENV_INSIDE + "/lib/"), me
    # The drop-in's TCP listener is served by the same master.
    r = get(box, "/whoami", via=TCP)
    assert r.get("status") == 200 and json.loads(r["body"])["ppid"] == master, r


def test_ready_only_once_the_workers_have_imported_the_app(box, fresh):
    """`systemctl start` returns on READY=1: by then every worker has imported the app
    (which takes IMPORT_DELAY s), so the service is active and its workers all serve."""
    journal = fresh
    box.run(["systemctl", "start", SERVICE], timeout=60)
    svc = show(box, SERVICE, "ActiveState", "SubState", "StatusText", "MainPID",
               "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    assert (svc["ActiveState"], svc["SubState"]) == ("active", "running"), \
        "%r; %s" % (svc, journal.excerpt())
    assert svc["StatusText"].startswith("%d workers (generation 1)" % WORKERS), svc
    took = (int(svc["ActiveEnterTimestampMonotonic"])
            - int(svc["ExecMainStartTimestampMonotonic"])) / 1e6
    assert took >= IMPORT_DELAY, "READY=1 %.3f s after the start, before the workers " \
        "imported the app (%.1f s); %s" % (took, IMPORT_DELAY, journal.excerpt())
    assert len(workers_of(box, int(svc["MainPID"]))) == WORKERS
    assert get(box, "/pid")["status"] == 200


def test_reload_under_load_fails_no_request(box, fresh):
    journal = fresh
    master, gen = start_by_request(box, journal)
    generations, took = [gen], []
    load = InsideLoad(box, journal)
    try:
        load.wait_ok(100)
        for number in (2, 3, 4):
            t0 = time.monotonic()
            box.run(["systemctl", "reload", SERVICE], timeout=60)
            took.append(time.monotonic() - t0)
            old = generations[-1]
            # ExecReload=unitcorn reload sends RELOADING=1 before the HUP, so systemctl
            # returns only once the new generation's READY=1 came, on 252 too.
            svc = show(box, SERVICE, "SubState", "StatusText")
            assert svc["SubState"] == "running" and \
                "(generation %d)" % number in svc["StatusText"], \
                "systemctl reload returned before generation %d was ready: %r; %s" % (
                    number, svc, journal.excerpt())

            # The old workers finish their requests: wait until they are gone.
            def reloaded():
                svc = show(box, SERVICE, "SubState", "StatusText")
                if svc["SubState"] != "running" or \
                        "(generation %d)" % number not in svc["StatusText"]:
                    return None
                ws = workers_of(box, master)
                return ws if len(ws) == WORKERS and not set(ws) & set(old) else None
            new = until("generation %d serving, generation %d gone" % (number, number - 1),
                        reloaded, 30, journal)
            generations.append(new)
            load.wait_served_by(new)
        result = load.finish()
    finally:
        load.close()
    print("\nsystemctl reload returned after %s s; load: %s" % (
        ", ".join("%.3f" % t for t in took), result["summary"]))
    assert not result["failures"], "%s\n%s" % (result["summary"], journal.excerpt())
    assert result["ok"] > 300, result["summary"]
    svc = show(box, SERVICE, "MainPID", "NRestarts", "ActiveState", "Result")
    assert svc == {"MainPID": str(master), "NRestarts": "0", "ActiveState": "active",
                   "Result": "success"}, svc
    text = journal.text()
    assert text.count("Reloaded ") >= 3, journal.excerpt()


def test_reload_that_cannot_load_the_app_keeps_serving_and_ends_running(box, fresh):
    """A reload whose new generation cannot import the app: the old generation keeps
    serving, and the unit leaves `reloading` (READY=1 follows RELOADING=1 even then; else
    systemd would hold the unit in `reloading` and queue every later job behind it)."""
    journal = fresh
    master, gen = start_by_request(box, journal)
    app = "/srv/demo/systemdapp.py"
    box.run(["sh", "-c", "cp %s %s.orig && echo 'raise ImportError(\"broken on purpose\")' >> %s"
             % (app, app, app)])
    try:
        box.run(["systemctl", "reload", SERVICE], timeout=60)
        until("the reload failure logged",
              lambda: "generation 1 keeps serving" in journal.text(), 20, journal)

        def running():
            svc = show(box, SERVICE, "ActiveState", "SubState")
            return (svc["ActiveState"], svc["SubState"]) == ("active", "running")
        until("the unit back to active/running", running, 20, journal)
    finally:
        box.run(["mv", app + ".orig", app])
    # The failed generation's other workers are told to stop, and go once their own
    # import has failed too.
    until("the failed generation gone", lambda: workers_of(box, master) == gen, 20, journal)
    assert workers_of(box, master) == gen, "the serving generation changed; " + journal.excerpt()
    assert {int(get(box, "/pid")["body"]) for _ in range(4)} <= set(gen)
    # The next reload (app fixed) goes through.
    box.run(["systemctl", "reload", SERVICE], timeout=60)
    def replaced():
        ws = workers_of(box, master)
        return len(ws) == WORKERS and not set(ws) & set(gen) and \
            show(box, SERVICE, "SubState")["SubState"] == "running"
    until("a new generation serving", replaced, 30, journal)
    assert show(box, SERVICE, "MainPID")["MainPID"] == str(master)


def test_stuck_master_ends_in_watchdog_and_the_socket_starts_it_again(box, fresh):
    journal = fresh
    master, _ = start_by_request(box, journal)
    box.run(["kill", "-STOP", str(master)])
    until("Result=watchdog after WatchdogSec=%d" % WATCHDOG_SEC,
          lambda: "Failed with result 'watchdog'" in journal.text(),
          WATCHDOG_SEC + 25, journal, interval=0.3)
    text = journal.text()
    assert "Watchdog timeout (limit %ds)" % WATCHDOG_SEC in text, journal.excerpt()
    # The socket unit keeps listening through the failure; the next connection is served
    # by a new master (Restart=on-failure or socket activation, whichever comes first).
    sock = show(box, SOCKET, "ActiveState")
    assert sock["ActiveState"] == "active", "%r; %s" % (sock, journal.excerpt())
    r = get(box, "/whoami", timeout=30)
    assert r.get("status") == 200, "%r; %s" % (r, journal.excerpt())
    def active_again():
        svc = show(box, SERVICE, "ActiveState", "SubState", "MainPID")
        return svc if svc["ActiveState"] == "active" else None
    again = until("the service active again", active_again, 15, journal)
    assert again["ActiveState"] == "active" and int(again["MainPID"]) not in (0, master), \
        "%r; %s" % (again, journal.excerpt())
    assert json.loads(r["body"])["ppid"] == int(again["MainPID"])
    assert not tree(box, master), "the stuck master %d is still there" % master


def test_graceful_stop_lets_an_in_flight_request_finish(box, fresh):
    journal = fresh
    master, workers = start_by_request(box, journal)
    took = stop_with_a_request_in_flight(box, journal, workers)
    assert took >= 0.5, "stop took %.2f s: it did not wait for the request" % took
    # The socket outlives the service: the next connection starts it again.
    assert get(box, "/pid", timeout=30)["status"] == 200, journal.excerpt()


def test_usr2_binary_upgrade_hands_over_main_pid_then_stops_gracefully(box, fresh):
    """USR2: the master double-forks and execs a new master (inheriting the listeners);
    once its workers serve, the old master sends MAINPID=<new> and stops gracefully.
    Then the new master is systemd's main process: watchdog pings accepted, and a
    `systemctl stop` is a graceful one (no SIGKILL, gotcha 10 of the harness notes)."""
    journal = fresh
    old_master, old_workers = start_by_request(box, journal)
    uid = int(box.run(["id", "-u", "unitcorn"]).stdout)
    load = InsideLoad(box, journal)
    try:
        load.wait_ok(100)
        box.run(["systemctl", "kill", "-s", "SIGUSR2", "--kill-whom=main", SERVICE])
        new_master = until(
            "MainPID to move from %d to a new master" % old_master,
            lambda: (lambda p: p if p not in (0, old_master) else None)(main_pid(box)),
            20, journal)
        until("the old master %d and its workers gone" % old_master,
              lambda: not tree(box, old_master) and not any(tree(box, w) for w in old_workers),
              20, journal)
        procs = tree(box, new_master)
        head = procs[0] if procs else {}
        assert head.get("ppid") == 1, "new master %d is not a child of PID 1 (double fork): " \
            "%r; %s" % (new_master, procs, journal.excerpt())
        assert {p["uid"] for p in procs} == {uid}, procs
        new_workers = until("%d workers of the new master" % WORKERS,
                            lambda: (lambda w: w if len(w) == WORKERS else None)(
                                workers_of(box, new_master)), 20, journal)
        load.wait_served_by(new_workers)
        # Longer than WatchdogSec: systemd takes the new master's WATCHDOG=1 pings.
        time.sleep(WATCHDOG_SEC + 1.5)
        load.wait_ok(50)
        # ExecReload= ($MAINPID) now reaches the new master, and systemd takes its
        # RELOADING=1/READY=1.
        box.run(["systemctl", "reload", SERVICE], timeout=60)
        svc = show(box, SERVICE, "MainPID", "SubState", "StatusText")
        assert svc["MainPID"] == str(new_master) and svc["SubState"] == "running" and \
            "(generation 2)" in svc["StatusText"], "reload after the upgrade: %r; %s" % (
                svc, journal.excerpt())
        reloaded = until("the new master's generation 2",
                         lambda: (lambda w: w if len(w) == WORKERS and not set(w) & set(
                             new_workers) else None)(workers_of(box, new_master)),
                         20, journal)
        load.wait_served_by(reloaded)
        result = load.finish()
    finally:
        load.close()
    print("\nload across the upgrade: %s" % result["summary"])
    assert not result["failures"], "%s\n%s" % (result["summary"], journal.excerpt())
    svc = show(box, SERVICE, "MainPID", "NRestarts", "ActiveState", "SubState")
    assert svc == {"MainPID": str(new_master), "NRestarts": "0", "ActiveState": "active",
                   "SubState": "running"}, "%r; %s" % (svc, journal.excerpt())
    text = journal.text()
    # "not our child": MAINPID= named a process systemd had not adopted (no double fork);
    # its next stop would SIGKILL at once.
    for bad in ("Watchdog timeout", "which is not our child"):
        assert bad not in text, "%r in the journal; %s" % (bad, journal.excerpt())
    if "reception only permitted" in text:
        # Not a failure: notifications the new master sent before it became the main PID.
        print("\nnote: systemd refused notifications sent before the hand-over:\n%s" % "\n".join(
            line for line in text.splitlines() if "reception only permitted" in line))

    box.run(["systemctl", "stop", SERVICE], timeout=40)
    svc = show(box, SERVICE, "ActiveState", "Result")
    assert svc == {"ActiveState": "inactive", "Result": "success"}, \
        "%r; %s" % (svc, journal.excerpt())
    text = journal.text()
    for bad in ("SIGKILL", "Killing process"):
        assert bad not in text, "stop after the upgrade was not graceful (%r); %s" % (
            bad, journal.excerpt())


def test_journal_has_structured_access_and_error_entries(box, fresh):
    """The journald output: access entries with REQUEST_* fields, queryable by STATUS=, and
    an app traceback as ONE entry at PRIORITY=3."""
    journal = fresh
    # The access log on stdout, the journal's stream: the journald output takes it over.
    box.run(["sh", "-c", "cp %s %s.orig && echo 'accesslog = \"-\"' >> %s" % (
        CONFIG, CONFIG, CONFIG)])
    try:
        master, workers = start_by_request(box, journal)
        # Over TCP: REMOTE_ADDR has a value (a unix socket peer has none).
        assert get(box, "/some-path", via=TCP)["status"] == 200
        assert get(box, "/boom", via=TCP)["status"] == 500
    finally:
        box.run(["mv", CONFIG + ".orig", CONFIG])

    def entry(*matches):
        got = journal.entries(*matches)
        return got[-1] if got else None
    access = until("an access entry with STATUS=500 REQUEST_PATH=/boom",
                   lambda: entry("STATUS=500", "REQUEST_PATH=/boom"), 10, journal)
    assert access.get("REQUEST_METHOD") == "GET", access
    assert access.get("DURATION_US", "").isdigit(), access
    assert access.get("REMOTE_ADDR") == "127.0.0.1" and "PRIORITY" in access, access
    assert int(access.get("WORKER_PID", 0)) in workers, (access, workers)
    ok = entry("REQUEST_PATH=/some-path")
    assert ok and ok.get("STATUS") == "200", "%r; %s" % (ok, journal.excerpt())
    assert "unitcorn" in journal.text(), journal.excerpt()

    def traceback_entry():
        for e in journal.entries("PRIORITY=3"):
            msg = e.get("MESSAGE", "")
            if "demo-boom" in msg:
                return e
        return None
    err = until("an error entry (PRIORITY=3) with the traceback", traceback_entry, 10, journal)
    msg = err["MESSAGE"]
    assert "Traceback (most recent call last)" in msg and \
        "RuntimeError: demo-boom" in msg, "the traceback is split over entries: %r; %s" % (
            msg, journal.excerpt())
    assert int(err.get("WORKER_PID", 0)) in workers, err
