"""The project's units (systemd/unitcorn@.service, unitcorn@.socket) as instance `demo`
in a systemd-nspawn container (nspawn.py): their names and paths, the journal, `systemctl
show`, requests and the load generator run inside (systemd_client.py), and the checks
tests/systemd/test_real_systemd.py and tests/packaging/test_packages.py both make.

Each test module installs the units in its own container (the `box` fixture): the first
from the checkout, the second by `dpkg -i` of the package."""

import json
import subprocess
import time

from harness import wait_for

SERVICE = "unitcorn@demo.service"
SOCKET = "unitcorn@demo.socket"
SOCK = "/run/unitcorn/demo.sock"            # ListenStream= of the real unitcorn@.socket
STAGE = "/opt/unitcorn-test"                 # the stage dir, bound read-only inside
VENV_INSIDE = "/opt/unitcorn-venv"           # the test venv (Flask), bound read-only inside
CLIENT = ["/usr/bin/python3", STAGE + "/systemd_client.py"]   # run inside, as root
WORKERS = 2
CONFIG = "/etc/unitcorn/demo.toml"


class Journal:
    """The service's journal from a point on (a cursor taken when the test started).

    Read with --cursor (inclusive) and the cursor's own entry dropped by hand: journalctl
    252's --after-cursor together with matches (-u ...) skips the first MATCHING entry
    when the cursor's entry does not match -- it would hide e.g. the first STATUS=500."""

    def __init__(self, box):
        self.box = box
        out = box.run(["journalctl", "-n", "0", "--show-cursor", "--no-pager"]).stdout
        self.cursor = next((line.split("cursor: ", 1)[1] for line in out.splitlines()
                            if line.startswith("-- cursor: ")), None)

    def entries(self, *matches):
        """The entries (dicts) of the unit matching FIELD=VALUE matches (journalctl -o json)."""
        args = ["journalctl", "--no-pager", "-o", "json", "-u", SERVICE] + (
            ["--cursor", self.cursor] if self.cursor else []) + list(matches)
        out = self.box.run(args, check=False).stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        entries = [e for e in entries if e.get("__CURSOR") != self.cursor]
        for e in entries:
            for k, v in e.items():
                if isinstance(v, list) and all(isinstance(b, int) for b in v):
                    e[k] = bytes(v).decode("utf-8", "replace")     # binary-safe field
        return entries

    def text(self):
        """The unit's entries as `[monotonic s] IDENTIFIER[PID]: MESSAGE` lines."""
        lines = []
        for e in self.entries():
            msg = e.get("MESSAGE", "")
            if isinstance(msg, list):                               # repeated field
                msg = " | ".join(map(str, msg))
            lines.append("[%12.6f] %s[%s]: %s" % (
                int(e.get("__MONOTONIC_TIMESTAMP", 0)) / 1e6, e.get("SYSLOG_IDENTIFIER", "?"),
                e.get("_PID", "?"), msg))
        return "\n".join(lines)

    def excerpt(self, n=80):
        lines = self.text().splitlines()
        # Access log lines (if any) drown what matters: count them instead.
        access = [line for line in lines if ' HTTP/1.1" ' in line]
        lines = [line for line in lines if ' HTTP/1.1" ' not in line]
        return "journal (-u %s, this test; %d access log lines left out):\n%s" % (
            SERVICE, len(access), "\n".join(lines[-n:]))


def show(box, unit, *props):
    out = box.run(["systemctl", "show", "-p", ",".join(props), unit]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def get(box, path, timeout=15, via=SOCK):
    """One GET through the unit's socket (or via=TCP), from inside the container."""
    r = box.run(CLIENT + ["get", via, path, str(timeout)], timeout=timeout + 10)
    return json.loads(r.stdout)


def tree(box, pid):
    """pid and its descendants inside the container: [{pid, ppid, uid, state, comm}]."""
    return json.loads(box.run(CLIENT + ["tree", str(pid)]).stdout)


def workers_of(box, master):
    return sorted(p["pid"] for p in tree(box, master)
                  if p["ppid"] == master and p["state"] not in "ZX")


def main_pid(box):
    return int(show(box, SERVICE, "MainPID")["MainPID"])


def until(what, predicate, timeout, journal, interval=0.1):
    """Wait (bounded) for predicate; assert with the journal excerpt on timeout."""
    got = wait_for(predicate, timeout, interval)
    assert got, "timeout after %ss waiting for %s; %s" % (timeout, what, journal.excerpt())
    return got


def start_by_request(box, journal):
    """Socket-activate the service with one request; returns (master pid, worker pids)."""
    r = get(box, "/pid", timeout=30)
    assert r.get("status") == 200, "%r; %s" % (r, journal.excerpt())
    # A worker may answer before the others have imported the app, so before READY=1;
    # and a `systemctl reload` while the unit is still activating merges into the start
    # job (nothing is reloaded): wait for active.
    until("the service active (READY=1)",
          lambda: show(box, SERVICE, "ActiveState")["ActiveState"] == "active", 15, journal)
    master = main_pid(box)
    assert master > 0, journal.excerpt()
    ws = until("%d workers of master %d" % (WORKERS, master),
               lambda: (lambda w: w if len(w) == WORKERS else None)(workers_of(box, master)),
               10, journal)
    return master, ws


class InsideLoad:
    """systemd_client.py's load generator (harness.Load), running inside the container;
    bounded in time (max_seconds) and count (max_requests)."""

    PROGRESS = "/run/unitcorn-test-load.json"
    STOP = "/run/unitcorn-test-load.stop"

    def __init__(self, box, journal, max_seconds=60, max_requests=2_000_000):
        self.box, self.journal, self.max_seconds = box, journal, max_seconds
        box.run(["rm", "-f", self.PROGRESS, self.STOP])
        self.proc = box.popen(CLIENT + ["load", SOCK, self.PROGRESS, self.STOP,
                                        str(max_seconds), str(max_requests)])
        self.result = None

    def progress(self):
        try:
            return json.loads(self.box.path(self.PROGRESS).read_text())
        except (OSError, ValueError):
            return {"ok": 0, "failed": 0, "pids": {}}

    def _running(self):
        """True while the generator runs; asserts with its output once it has ended."""
        if self.proc.poll() is None:
            return True
        out, err = self.proc.communicate(timeout=10)
        raise AssertionError("load generator ended early (exit %s): %s %s; %s" % (
            self.proc.returncode, out[-2000:], err[-2000:], self.journal.excerpt()))

    def wait_ok(self, n, timeout=20):
        """Wait until n more requests have succeeded."""
        start = self.progress()["ok"]
        until("%d more requests served (load: %r)" % (n, self.progress()),
              lambda: self._running() and self.progress()["ok"] - start >= n,
              timeout, self.journal)

    def wait_served_by(self, pids, n=20, timeout=20):
        """Wait until the pids together have answered n requests of the load."""
        def served():
            self._running()
            got = self.progress()["pids"]
            return sum(got.get(str(p), 0) for p in pids) >= n
        until("load served by %r (load: %r)" % (pids, self.progress()), served, timeout,
              self.journal)

    def finish(self):
        self.box.path(self.STOP).write_text("stop")
        try:
            out, err = self.proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            raise AssertionError("load generator did not stop; stderr: %s" % err[-2000:])
        assert self.proc.returncode == 0, "load generator exited %s: %s" % (
            self.proc.returncode, err[-3000:])
        self.result = json.loads(out)
        return self.result

    def close(self):
        """Stop it if finish() was not reached (a failed test): first by the stop file,
        then by killing nsenter (the client dies with it, see Container.command)."""
        if self.proc.poll() is None:
            try:
                self.box.path(self.STOP).write_text("stop")
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


def stop_with_a_request_in_flight(box, journal, workers):
    """`systemctl stop` while a 1.5 s request is in the app: the request gets its 200,
    the unit ends with Result=success, and nothing was SIGKILLed. Returns how long the
    stop took."""
    client = box.popen(CLIENT + ["get", SOCK, "/sleep?s=1.5", "20"])
    try:
        time.sleep(0.5)                 # the request is in the app by now
        assert client.poll() is None, client.communicate()
        t0 = time.monotonic()
        box.run(["systemctl", "stop", SERVICE], timeout=40)
        took = time.monotonic() - t0
        out, err = client.communicate(timeout=20)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    r = json.loads(out)
    assert r.get("status") == 200 and r.get("complete") and int(r["body"]) in workers, \
        "%r %s; %s" % (r, err, journal.excerpt())
    svc = show(box, SERVICE, "ActiveState", "Result")
    assert svc == {"ActiveState": "inactive", "Result": "success"}, \
        "%r; %s" % (svc, journal.excerpt())
    for bad in ("SIGKILL", "Killing process"):
        assert bad not in journal.text(), journal.excerpt()
    return took
