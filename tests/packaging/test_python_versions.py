"""unitcorn on the app's own Python: the Python package (one abi3 wheel) in a venv of every
CPython here, and the packaged binary's interpreter chosen by configuration, never by PATH.

The wheel is the one tests/run.sh builds (UNITCORN_WHEEL), else built here with maturin.
Every interpreter of the matrix must be on the machine: a missing one fails, it is not
skipped (CI runs on the same kind of machine, with pyenv's 3.9-3.13 and Debian's 3.11).
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from harness import (APPS, REPO, UNITCORN_BIN, VENV, Server, alive, base_env, free_port,
                     port_is_free, seed_workdir, wait_for)

# A venv per interpreter is made (and pip-installed) by the first test that needs it.
pytestmark = [pytest.mark.unitcorn_only("unitcorn's own packaging"), pytest.mark.timeout(600)]

PYENV = Path("/root/.pyenv/versions")
# (id, glob of the interpreter): the matrix of the issue, Debian's 3.11 included.
MATRIX = [
    ("3.9", str(PYENV / "3.9.*" / "bin" / "python3")),
    ("3.10", str(PYENV / "3.10.*" / "bin" / "python3")),
    ("3.11-pyenv", str(PYENV / "3.11.*" / "bin" / "python3")),
    ("3.11-debian", "/usr/bin/python3"),
    ("3.12", str(PYENV / "3.12.*" / "bin" / "python3")),
    ("3.13", str(PYENV / "3.13.*" / "bin" / "python3")),
]
IDS = [name for name, _ in MATRIX]
# What each venv gets besides unitcorn: the apps of the smoke subset. --prefer-binary: the
# newest gevent has no wheel for every version, and building it takes minutes.
APP_PACKAGES = ["flask>=3.0", "starlette>=0.40", "gevent>=24.2"]


def interpreter(name):
    pattern = dict(MATRIX)[name]
    found = sorted(glob.glob(pattern))
    assert found, "interpreter %s not on this machine (%s)" % (name, pattern)
    return found[-1]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    given = os.environ.get("UNITCORN_WHEEL")
    if given:
        assert Path(given).is_file(), "UNITCORN_WHEEL=%s: no such file" % given
        return Path(given)
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([str(VENV / "bin" / "python"), "-m", "maturin", "build", "--release",
                        "--quiet", "-o", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    wheels = list(out.glob("unitcorn-*-abi3-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="session")
def venvs(wheel, tmp_path_factory):
    """venvs[name]: a venv of that interpreter with the wheel and the apps' packages."""
    root = tmp_path_factory.mktemp("venvs")
    made = {}

    def get(name):
        if name not in made:
            venv = root / name
            subprocess.run([interpreter(name), "-m", "venv", str(venv)], check=True,
                           timeout=120)
            p = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                                "--disable-pip-version-check", "--prefer-binary", str(wheel)]
                               + APP_PACKAGES,
                               capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, p.stderr[-4000:]
            made[name] = venv
        return made[name]

    return get


def start(cmd, tmp_path, env=None, cwd=APPS, wait=True, name="server"):
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    s = Server(list(cmd) + ["-b", "127.0.0.1:%d" % port], env or base_env(venv=False), cwd,
               tmp_path, addr=("127.0.0.1", port), name=name)
    if wait:
        s.wait_ready(timeout=60)
    return s


def serve(servers, cmd, tmp_path, **kw):
    s = start(cmd, tmp_path, **kw)
    servers.append(s)
    return s


# ----- the wheel, in a venv of every version

@pytest.mark.parametrize("name", IDS)
def test_the_wheel_serves_a_flask_app_and_an_asgi_app(name, venvs, servers, tmp_path):
    venv = venvs(name)
    flask = serve(servers, [venv / "bin" / "unitcorn", "-w", "2", "flaskapp:app"], tmp_path)
    r = flask.get("/json?x=1")
    assert r.status == 200 and r.json()["hello"] == "flask", r
    # Flask is the venv's own, not the test venv's.
    assert flask.get("/flaskfile").text.startswith(str(venv)), flask.get("/flaskfile").text
    asgi = serve(servers, [venv / "bin" / "python", "-m", "unitcorn", "starletteapp:app"],
                 tmp_path / "asgi")
    r = asgi.get("/")
    assert r.status == 200 and r.body == b"Hello from Starlette", r


@pytest.mark.parametrize("name", IDS)
def test_the_wheel_reloads_on_hup_and_stops_gracefully_on_quit(name, venvs, servers, tmp_path):
    venv = venvs(name)
    s = serve(servers, [venv / "bin" / "unitcorn", "-w", "2", "wsgiapp:app"], tmp_path)
    before = set(s.wait_workers(2))
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: (w := set(s.workers())) and len(w) == 2 and not (w & before), 30), \
        s.stderr()[-3000:]
    assert s.get("/").status == 200
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(30) == 0, s.stderr()[-3000:]
    assert "Shutting down: Master" in s.stderr()


@pytest.mark.parametrize("name", IDS)
def test_the_wheel_runs_the_gevent_worker(name, venvs, servers, tmp_path):
    venv = venvs(name)
    s = serve(servers, [venv / "bin" / "unitcorn", "-k", "gevent", "geventapp:app"], tmp_path)
    r = s.get("/")
    assert r.status == 200 and r.body == b"ok\n", r


@pytest.mark.parametrize("name", IDS)
def test_the_app_sees_its_own_interpreter_under_the_wheel(name, venvs, servers, tmp_path):
    venv = venvs(name)
    s = serve(servers, [venv / "bin" / "unitcorn", "--threads", "2", "ownpython:app"], tmp_path)
    _assert_own_interpreter(s, venv)


def _assert_own_interpreter(s, venv):
    info = s.get("/interpreter").json()
    assert Path(info["prefix"]) == venv, info
    assert Path(info["executable"]).parent == venv / "bin", info
    assert Path(info["executable"]).is_file(), info
    assert info["purelib"].startswith(str(venv)), info
    assert any(p.startswith(str(venv)) for p in info["site_packages"]), info
    # The venv's base interpreter's standard library, not another Python's.
    assert info["stdlib"].startswith(info["base_prefix"]), info
    assert s.get("/subprocess", timeout=60).json() == {"child_prefix": str(venv)}
    assert s.get("/spawn", timeout=60).json() == {"squares": [0, 1, 4, 9, 16]}
    assert s.get("/pool", timeout=60).json() == {"squares": [0, 1, 4, 9, 16]}
    return info


def test_a_binary_upgrade_under_the_wheel_stays_in_the_venv(venvs, servers, tmp_path):
    """USR2 starts the new master as the old one was started: `python -m unitcorn` of the
    venv (not the resolved interpreter binary, which would lose the venv)."""
    venv = venvs("3.12")
    pidfile = tmp_path / "unitcorn.pid"
    s = serve(servers, [venv / "bin" / "unitcorn", "-p", pidfile, "ownpython:app"], tmp_path)
    old = s.pid
    s.signal(signal.SIGUSR2)
    assert wait_for(lambda: not alive(old), 30), s.stderr()[-3000:]
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()
                    and int(pidfile.read_text()) != old, 10), s.stderr()[-3000:]
    new = int(pidfile.read_text())
    try:
        r = s.get("/interpreter")
        assert r.status == 200 and Path(r.json()["prefix"]) == venv, r
        # The process title hides argv: the executable tells it is the venv's Python.
        assert os.path.realpath("/proc/%d/exe" % new) == os.path.realpath(venv / "bin" /
                                                                          "python")
    finally:
        os.kill(new, signal.SIGQUIT)
        assert wait_for(lambda: not alive(new), 30), "the new master did not stop"


# ----- the packaged binary: its interpreter comes from the configuration

def test_the_binary_serves_the_venvs_own_interpreter(servers, tmp_path):
    env = base_env(venv=True)
    s = serve(servers, [UNITCORN_BIN, "--threads", "2", "ownpython:app"], tmp_path, env=env)
    info = _assert_own_interpreter(s, VENV)
    assert info["base_prefix"] == "/usr", info


def test_another_python3_on_path_does_not_change_the_standard_library(servers, tmp_path):
    """A same-minor python3 first on PATH (pyenv's 3.11) once lent the embedded Debian 3.11
    its prefix: the other stdlib loaded and `import ssl` failed, so gevent could not boot."""
    other = interpreter("3.11-pyenv")
    env = base_env(venv=True)
    env["PATH"] = "%s:%s" % (Path(other).parent, env["PATH"])
    s = serve(servers, [UNITCORN_BIN, "ownpython:app"], tmp_path, env=env)
    info = s.get("/interpreter").json()
    assert info["stdlib"] == "/usr/lib/python3.11", info
    g = serve(servers, [UNITCORN_BIN, "-k", "gevent", "geventapp:app"], tmp_path / "g", env=env)
    assert g.get("/").status == 200


def _refused(cmd, env, tmp_path):
    port = free_port()
    p = subprocess.run([str(c) for c in cmd] + ["-b", "127.0.0.1:%d" % port], env=env,
                       cwd=APPS, capture_output=True, text=True, timeout=30)
    # Refused before anything was bound: the port is free, nothing was left running.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    return p


def test_a_venv_of_another_python_is_refused_at_start_with_the_fix(venvs, tmp_path):
    other = venvs("3.12")
    config = tmp_path / "app.toml"
    config.write_text('virtualenv = "%s"\n' % other)
    p = _refused([UNITCORN_BIN, "-c", config, "wsgiapp:app"], base_env(venv=False), tmp_path)
    assert p.returncode == 1, p
    line = p.stderr.strip()
    assert "\n" not in line, p.stderr
    assert "virtualenv %s (virtualenv, from %s:1) is Python 3.12" % (other, config) in line, \
        line
    assert "serves Python 3.11" in line and "pip install unitcorn" in line, line
    # The same venv named by the environment.
    p = _refused([UNITCORN_BIN, "wsgiapp:app"], base_env(venv=False, VIRTUAL_ENV=other),
                 tmp_path)
    assert p.returncode == 1 and "VIRTUAL_ENV=%s is Python 3.12" % other in p.stderr, p


def test_virtual_env_pointing_to_nothing_is_a_clear_error(tmp_path):
    p = _refused([UNITCORN_BIN, "wsgiapp:app"],
                 base_env(venv=False, VIRTUAL_ENV=tmp_path / "nothing"), tmp_path)
    assert p.returncode == 1, p
    assert p.stderr.strip() == ("unitcorn: VIRTUAL_ENV=%s: no such directory: unset "
                                "VIRTUAL_ENV, or point it at the app's virtualenv"
                                % (tmp_path / "nothing")), p.stderr
    notvenv = tmp_path / "plain"
    notvenv.mkdir()
    p = _refused([UNITCORN_BIN, "--virtualenv", notvenv, "wsgiapp:app"], base_env(venv=False),
                 tmp_path)
    assert p.returncode == 1 and "not a virtualenv (no pyvenv.cfg)" in p.stderr, p


# ----- the seed's deployment line, through pipenv

def test_the_seed_deployment_line_runs_under_pipenv(wheel, natadmin, seed_dirs, tmp_path):
    """supervisor-nat.ini's `pipenv run gunicorn app:app -c gunicorn_config.py`, the
    program name aside: the seed config unchanged (gevent workers as natadmin, log files,
    pid file), in a pipenv-made venv of Debian's Python (readable after the drop)."""
    assert wait_for(lambda: port_is_free(8000), 30), "the seed binds 127.0.0.1:8000: in use"
    work = seed_workdir("unitcorn-pipenv-",
                        "b'uid %d prefix %s' % (os.getuid(), sys.prefix.encode())")
    pipenv = str(VENV / "bin" / "pipenv")
    env = base_env(venv=False, PIPENV_VENV_IN_PROJECT=1, PIPENV_YES=1, PIPENV_NOSPIN=1,
                   PIPENV_IGNORE_VIRTUALENVS=1, PIPENV_VERBOSITY=-1)
    try:
        p = subprocess.run([pipenv, "install", "--python", "/usr/bin/python3", str(wheel),
                            "gevent"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=600)
        assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
        subprocess.run(["chmod", "-R", "a+rX", str(work)], check=True)
        s = Server([pipenv, "run", "unitcorn", "app:app", "-c", "gunicorn_config.py"], env,
                   work, tmp_path, addr=("127.0.0.1", 8000), name="pipenv-seed")
        try:
            s.wait_ready(timeout=60)
            r = s.get("/")
            assert r.status == 200, r
            assert r.body == b"uid %d prefix %s" % (natadmin.pw_uid, bytes(work / ".venv")), r
            workers = s.wait_workers(3)
            for pid in workers:
                with open("/proc/%d/status" % pid) as f:
                    status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
                assert status["Uid"].split()[0] == str(natadmin.pw_uid)
            access = Path("/var/log/gunicorn/access.log")
            assert wait_for(lambda: access.exists() and '"GET / HTTP/1.1" 200' in
                            access.read_text(), 10)
            s.signal(signal.SIGQUIT)
            assert s.wait_exit(30) == 0, Path("/var/log/gunicorn/error.log").read_text()[-3000:]
        finally:
            s.kill_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if Path("/run/gunicorn.pid").exists():
            os.unlink("/run/gunicorn.pid")
