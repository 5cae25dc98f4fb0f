"""Issue 4, point 4: journald output. The real binary logs to a real, private
systemd-journald (started per test in its own mount namespace by journald_scenario.py, so
the host's /run is untouched), and the entries are read back with journalctl.

Needs root (mount namespaces, tmpfs, a cgroup for -u); CI runs the suite as root."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import alive, kill_tree, pgrp_members

pytestmark = [
    pytest.mark.unitcorn_only("journald output is unitcorn's"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount namespaces"),
]

SCENARIO = Path(__file__).resolve().parent / "journald_scenario.py"
UNIT = "unitcorn@app.service"
GUNICORN_STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\]")


def run_scenario(tmp_path, **spec):
    """Run one scenario in a private mount namespace; its result dict."""
    spec_path = tmp_path / "spec.json"
    out_path = tmp_path / "result.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--",
                             sys.executable, str(SCENARIO), str(spec_path), str(out_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid, set(pgrp_members(proc.pid)))
        out, _ = proc.communicate(timeout=10)
        pytest.fail("scenario timed out:\n%s" % out[-3000:])
    assert proc.returncode == 0 and out_path.exists(), "scenario failed:\n%s" % out[-5000:]
    result = json.loads(out_path.read_text())
    # Nothing of the scenario outlives it: servers, workers, journald.
    left = [p for p in result["pids"] if alive(p)]
    assert not left, "processes left after the scenario: %r" % left
    assert not result.get("cleanup_errors"), result["cleanup_errors"]
    return result


def ours(entries, identifier="unitcorn"):
    return [e for e in entries if e.get("SYSLOG_IDENTIFIER") == identifier]


def native(entries):
    return [e for e in entries if e.get("_TRANSPORT") == "journal"]


def only(entries, what):
    assert len(entries) == 1, "expected one entry %s, got %d:\n%s" % (
        what, len(entries), json.dumps(entries, indent=1)[:4000])
    return entries[0]


def with_message(entries, text):
    return [e for e in entries if text in (e.get("MESSAGE") or "")]


REQUESTS = [
    ["/pid", {}],
    ["/pid", {}],
    ["/raise_before", {"User-Agent": "journal-test/1.0"}],
    ["/hello?a=1&b=two", {"User-Agent": "journal-test/1.0"}],
    ["/raise_big?n=300000", {}],
    ["/errors?msg=app-wrote-this-to-wsgi-errors", {}],
]


def check_native_logs(r):
    """What both ways into the journal must give: native entries with fields."""
    assert r["rc"] == 0, r["output"][-3000:]
    assert len(r["serving_workers"]) == 2, r["serving_workers"]
    entries = r["journal"]
    errors = native(ours(entries))
    access = native(ours(entries, "unitcorn-access"))
    master = r["master_pid"]
    served_by = sorted(int(q["body"]) for q in r["requests"] if q["path"] == "/pid")
    assert [q["status"] for q in r["requests"]] == [200, 200, 500, 200, 500, 200]

    # No entry carries a gunicorn timestamp of ours: journald has the time.
    for e in ours(entries) + ours(entries, "unitcorn-access"):
        assert not GUNICORN_STAMP.match(e.get("MESSAGE") or ""), e

    # The master's entries: role master, its pid as _PID (from the socket's credentials).
    start = only(with_message(errors, "Starting unitcorn"), "for the start")
    assert start["UNITCORN_ROLE"] == "master" and "WORKER_PID" not in start
    assert start["_PID"] == str(master)
    assert start["PRIORITY"] == "6"                 # info
    assert start["TARGET"] == "unitcorn::master" and start["CODE_FILE"].endswith(".rs")
    booted = with_message(errors, "Booting worker with pid: ")
    assert len(booted) == 2 and all(e["_PID"] == str(master) for e in booted)

    # Every worker entry says which worker, and that is the process that sent it.
    workers = [e for e in errors + access if e.get("UNITCORN_ROLE") == "worker"]
    assert workers
    for e in workers:
        assert e["WORKER_PID"] == e["_PID"] != str(master), e
        assert int(e["WORKER_PID"]) in r["worker_pids"]
    for e in errors + access:
        assert e["UNITCORN_ROLE"] in ("master", "worker")

    # The app's exception: one entry, the whole traceback in MESSAGE, PRIORITY=3.
    tb = only(with_message(errors, "boom-before-response"), "for the traceback")
    assert tb["PRIORITY"] == "3"
    assert tb["MESSAGE"].startswith("Error handling request\nTraceback (most recent call last):\n")
    assert tb["MESSAGE"].rstrip().endswith("RuntimeError: boom-before-response")
    assert tb["UNITCORN_ROLE"] == "worker"
    # No line of it became an entry of its own.
    assert not [e for e in entries if e.get("MESSAGE", "").strip().startswith("Traceback")]
    # A traceback larger than a datagram arrives whole (the crate's memfd path).
    big = only(with_message(errors, "big-xxxx"), "for the big traceback")
    assert len(big["MESSAGE"]) > 300000 and "x" * 300000 + "-end" in big["MESSAGE"]
    assert big["PRIORITY"] == "3"

    # The access log: one entry a request, fields of their own.
    by_path = {}
    for e in access:
        by_path.setdefault(e["REQUEST_PATH"], []).append(e)
    # WORKER_PID is the pid the app itself saw (os.getpid() in the response).
    assert sorted(int(e["WORKER_PID"]) for e in by_path["/pid"]) == served_by
    boom = only(by_path["/raise_before"], "for the 500")
    assert boom["STATUS"] == "500" and boom["REQUEST_METHOD"] == "GET"
    assert boom["REMOTE_ADDR"] == "127.0.0.1" and boom["PRIORITY"] == "6"
    assert int(boom["DURATION_US"]) >= 0 and "REQUEST_QUERY" not in boom
    assert boom["USER_AGENT"] == "journal-test/1.0"
    assert boom["TARGET"] == "unitcorn::access"
    assert '"GET /raise_before HTTP/1.1" 500' in boom["MESSAGE"]
    hello = only(by_path["/hello"], "for /hello")
    assert hello["REQUEST_QUERY"] == "a=1&b=two" and hello["STATUS"] == "200"
    assert int(hello["RESPONSE_BYTES"]) > 0
    # The access entries are not in the error log's stream and the other way round.
    assert not with_message(errors, "GET /pid")
    return errors, access


def test_errorlog_and_accesslog_journald(tmp_path):
    """errorlog/accesslog = "journald": native entries with PRIORITY and fields, one entry
    an event, WORKER_PID = the real worker, and journalctl's matches (-u, STATUS=500, -p err)
    find them."""
    r = run_scenario(
        tmp_path, unit=UNIT,
        args=["-w", "2", "--error-logfile", "journald", "--access-logfile", "journald",
              "journalapp:app"],
        requests=REQUESTS, serving_workers=2,
        queries={"status500": ["-u", UNIT, "STATUS=500"],
                 "err": ["-u", UNIT, "-p", "err"]})
    errors, access = check_native_logs(r)
    # Nothing but the app's own wsgi.errors text went to stderr.
    assert r["output"] == "app-wrote-this-to-wsgi-errors\n", r["output"][-3000:]
    # journalctl -u unitcorn@app STATUS=500: exactly the two 500 requests.
    hits = r["queries"]["status500"]
    assert sorted(e["REQUEST_PATH"] for e in hits) == ["/raise_before", "/raise_big"]
    assert all(e["_SYSTEMD_UNIT"] == UNIT for e in hits)
    # journalctl -u unitcorn@app -p err: the two tracebacks, nothing at info.
    err = r["queries"]["err"]
    assert len(err) == 2 and all(e["PRIORITY"] == "3" for e in err), [e["MESSAGE"][:300] for e in err]
    assert sorted("boom-before-response" in e["MESSAGE"] for e in err) == [False, True]


def test_stderr_and_stdout_on_the_journal_stream_become_native_entries(tmp_path):
    """The default errorlog "-" and accesslog "-", with stdout/stderr connected to journald's
    stream socket and JOURNAL_STREAM naming it (as systemd starts a service): the same native
    entries, and only the app's raw text comes through the stream."""
    r = run_scenario(
        tmp_path, stdio="stream", journal_stream="stdio",
        args=["-w", "2", "--access-logfile", "-", "journalapp:app"],
        requests=REQUESTS, serving_workers=2)
    check_native_logs(r)
    streamed = [e for e in r["journal"] if e.get("_TRANSPORT") == "stdout"]
    assert [e["MESSAGE"] for e in streamed] == ["app-wrote-this-to-wsgi-errors"], streamed


def test_journal_stream_of_another_fd_keeps_lines(tmp_path):
    """JOURNAL_STREAM names a stream, but stdout/stderr are a file (redirected after systemd
    started the parent): the logs stay gunicorn lines, nothing native is sent."""
    r = run_scenario(
        tmp_path, stdio="files", journal_stream="elsewhere",
        args=["--access-logfile", "-", "wsgiapp:app"],
        requests=[["/raise_before", {}]])
    assert r["rc"] == 0
    assert re.search(r"\[INFO\] Starting unitcorn", r["output"]), r["output"][-3000:]
    assert "RuntimeError: boom-before-response" in r["output"]
    assert '"GET /raise_before HTTP/1.1" 500' in r["output"]
    assert not native(ours(r["journal"])) and not native(ours(r["journal"], "unitcorn-access"))


def test_detected_journal_without_journald_falls_back_to_lines(tmp_path):
    """stderr and stdout match JOURNAL_STREAM but journald's socket is absent: plain lines
    on stderr/stdout, with a warning that says why."""
    r = run_scenario(
        tmp_path, journald=False, stdio="files", journal_stream="stdio",
        args=["--access-logfile", "-", "wsgiapp:app"],
        requests=[["/raise_before", {}]])
    assert r["rc"] == 0, r["output"][-3000:]
    out = r["output"]
    assert re.search(r"\[WARNING\] stderr is the journal \(JOURNAL_STREAM\) but journald's "
                     r"socket /run/systemd/journal/socket cannot be reached", out), out[-3000:]
    assert re.search(r"\[INFO\] Starting unitcorn", out)
    assert "RuntimeError: boom-before-response" in out
    assert '"GET /raise_before HTTP/1.1" 500' in out


def test_errorlog_journald_without_journald_fails_at_start(tmp_path):
    r = run_scenario(tmp_path, journald=False, expect_exit=True,
                     args=["--error-logfile", "journald", "wsgiapp:app"])
    assert r["rc"] == 1, r
    assert r["output"].startswith('unitcorn: errorlog = "journald": cannot reach journald at '
                                  '/run/systemd/journal/socket: '), r["output"]
    assert "is systemd-journald running?" in r["output"]


def test_accesslog_journald_without_journald_stops_the_server(tmp_path):
    r = run_scenario(tmp_path, journald=False, expect_exit=True,
                     args=["--access-logfile", "journald", "wsgiapp:app"])
    assert r["rc"] not in (0, None), r
    assert ('accesslog = "journald": cannot reach journald at /run/systemd/journal/socket'
            in r["output"]), r["output"][-3000:]


def test_critical_is_priority_2_and_loglevel_critical_keeps_only_it(tmp_path):
    """A worker timeout is logged as CRITICAL (gunicorn's level): PRIORITY=2 in the journal,
    and with loglevel critical it is the only error log entry."""
    r = run_scenario(
        tmp_path,
        args=["-w", "1", "-t", "1", "--log-level", "critical", "--error-logfile", "journald",
              "wsgiapp:app"],
        requests=[["/sleep?s=4", {}]], wait_for_message="WORKER TIMEOUT")
    assert [q["status"] for q in r["requests"]] == [504]
    entries = native(ours(r["journal"]))
    timeout = only(with_message(entries, "WORKER TIMEOUT"), "for the timeout")
    assert timeout["PRIORITY"] == "2" and timeout["UNITCORN_ROLE"] == "master"
    assert timeout["_PID"] == str(r["master_pid"])
    assert entries == [timeout], [e["MESSAGE"] for e in entries]
