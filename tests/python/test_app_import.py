"""Point 4: the embedded CPython — the app's virtualenv (VIRTUAL_ENV, `virtualenv =`) makes
its packages importable (Flask lives only in the test venv), --chdir, --pythonpath, and a
missing module / an exception at import ends the server quickly, with the traceback, without
a respawn loop."""

import os
import socket
import time

import pytest

from harness import VENV, alive, free_port, pgrp_members, wait_for


def _flask_location(s):
    r = s.get("/import?name=flask")
    assert r.status == 200, r
    return r.json()


@pytest.mark.unitcorn_only("gunicorn itself runs from the venv, so flask is always importable")
def test_flask_not_importable_without_venv(start_server):
    """The control: without VIRTUAL_ENV, the embedded Python does not see the venv's Flask."""
    s = start_server("wsgiapp:app", venv=False)
    j = _flask_location(s)
    assert j["ok"] is False, "flask importable without the venv: %s" % j["file"]
    assert "ModuleNotFoundError" in j["file"]


@pytest.mark.unitcorn_only("gunicorn itself runs from the venv, so flask is always importable")
def test_app_needing_flask_fails_without_venv(start_server):
    s = start_server("needs_flask:app", venv=False, wait=False)
    rc = s.wait_exit(15)
    assert rc is not None and rc != 0
    err = s.stderr()
    assert "ModuleNotFoundError" in err and "flask" in err, err[-3000:]


def test_virtual_env_variable_makes_flask_importable(start_server):
    s = start_server("wsgiapp:app")          # VIRTUAL_ENV=<repo>/.venv-test
    j = _flask_location(s)
    assert j["ok"] is True, j
    site = os.path.realpath(VENV / "lib")
    assert os.path.realpath(j["file"]).startswith(site + os.sep), (j["file"], site)


def test_flask_app_served_from_venv(start_server):
    s = start_server("needs_flask:app")
    assert s.get("/hello").body == b"Hello, World!\n"
    s2 = start_server("flaskapp:app", ready_path="/json")
    r = s2.get("/flaskfile")
    assert r.status == 200
    assert os.path.realpath(r.text).startswith(os.path.realpath(VENV) + os.sep)


@pytest.mark.unitcorn_only("`virtualenv` is a unitcorn setting")
def test_virtualenv_setting_in_config_file(start_server, tmp_path):
    cfg = tmp_path / "venv.toml"
    cfg.write_text('virtualenv = "%s"\n' % VENV)
    s = start_server("flaskapp:app", "-c", str(cfg), venv=False, ready_path="/json")
    r = s.get("/json?x=1")
    assert r.status == 200 and r.json()["hello"] == "flask"
    assert os.path.realpath(s.get("/flaskfile").text).startswith(os.path.realpath(VENV))


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

