"""Importing the app into the embedded CPython: --chdir and --pythonpath; a missing module or
an exception at import ends the server quickly, with the traceback, without a respawn loop,
leaving no process and the port free."""

import os
import socket
import time

import pytest

from harness import alive, free_port, pgrp_members, wait_for


def _module(dirpath, name, body):
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / (name + ".py")).write_text(body)


APP_REPORTING = '''
import os, json
def app(environ, start_response):
    body = json.dumps({"cwd": os.getcwd(), "file": __file__, "tag": %r}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def test_chdir(start_server, tmp_path):
    appdir = tmp_path / "appdir"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _module(appdir, "chdir_mod", APP_REPORTING % "chdir")
    s = start_server("chdir_mod:app", "--chdir", str(appdir), cwd=elsewhere)
    j = s.get("/").json()
    assert j["tag"] == "chdir"
    assert os.path.realpath(j["cwd"]) == os.path.realpath(appdir)


def test_pythonpath(start_server, tmp_path):
    d1 = tmp_path / "pp1"
    d2 = tmp_path / "pp2"
    d1.mkdir()
    _module(d2, "pp_mod", APP_REPORTING % "pythonpath")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    s = start_server("pp_mod:app", "--pythonpath", "%s,%s" % (d1, d2), cwd=elsewhere)
    j = s.get("/").json()
    assert j["tag"] == "pythonpath"
    assert os.path.realpath(j["file"]) == os.path.realpath(d2 / "pp_mod.py")
    assert os.path.realpath(j["cwd"]) == os.path.realpath(elsewhere)


def _assert_fails_fast(s, started, limit=10.0):
    rc = s.wait_exit(limit + 2)
    elapsed = time.monotonic() - started
    assert rc is not None, "server still running %.0f s after a failed import" % elapsed
    assert rc != 0
    assert elapsed <= limit, "took %.1f s to give up" % elapsed
    # nothing of it is left
    assert wait_for(lambda: not pgrp_members(s.pid), 5), pgrp_members(s.pid)
    return rc


@pytest.mark.parametrize("preload", [False, True], ids=["workers", "preload"])
def test_missing_module_exits_with_traceback(start_server, preload):
    args = ["-w", "2"] + (["--preload"] if preload else [])
    t0 = time.monotonic()
    s = start_server("no_such_module_xyz:app", *args, wait=False)
    _assert_fails_fast(s, t0)
    err = s.stderr()
    assert "ModuleNotFoundError" in err, err[-3000:]
    assert "no_such_module_xyz" in err


@pytest.mark.parametrize("preload", [
    False,
    pytest.param(True, marks=pytest.mark.unitcorn_only(
        "gunicorn --preload prints only the message, no traceback")),
], ids=["workers", "preload"])
def test_exception_at_import_exits_with_traceback_no_respawn_loop(start_server, tmp_path,
                                                                  preload):
    log = tmp_path / "imports.log"
    args = ["-w", "2"] + (["--preload"] if preload else [])
    t0 = time.monotonic()
    s = start_server("broken_import:app", *args, wait=False, env_extra={"IMPORT_LOG": log})
    _assert_fails_fast(s, t0)
    err = s.stderr()
    assert "Traceback (most recent call last)" in err, err[-3000:]
    assert "RuntimeError: boom-at-import 42" in err
    assert "_helper_that_fails" in err
    imports = log.read_text().splitlines() if log.exists() else []
    assert 1 <= len(imports) <= 4, "module imported %d times (respawn loop?)" % len(imports)


def test_failed_start_leaves_no_process(start_server, tmp_path):
    s = start_server("broken_import:app", "-w", "3", wait=False)
    seen = set()
    for _ in range(100):
        seen.update(s.workers())
        if s.exited():
            break
        time.sleep(0.05)
    assert s.wait_exit(12) not in (None, 0)
    assert wait_for(lambda: not any(alive(p) for p in seen), 5), [p for p in seen if alive(p)]


def test_port_is_free_after_failed_start(start_server):
    port = free_port()
    s = start_server("no_such_module_xyz:app", bind="127.0.0.1:%d" % port, wait=False)
    assert s.wait_exit(12) not in (None, 0)
    with socket.socket() as so:
        so.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        so.bind(("127.0.0.1", port))       # would fail if a stray process held it
