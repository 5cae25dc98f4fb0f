"""The app's virtualenv (VIRTUAL_ENV, the `virtualenv` setting) makes its packages
importable in the embedded CPython: Flask lives only in the test venv, so it imports with
the venv and not without.

Elsewhere: a venv of another Python, and the venvs of the Python package (one per
CPython), tests/packaging/test_python_versions.py."""

import os

import pytest

from harness import VENV


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
