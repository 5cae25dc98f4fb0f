"""gunicorn's Python config files (issue 7, points 1, 2 and 4): `-c file.py`,
`-c python:module`, ./gunicorn.conf.py by default, GUNICORN_CMD_ARGS naming one; errors
that name the file, the line and the setting; gunicorn settings unitcorn does not have,
refused with the reason; --print-config/--check-config; `unitcorn config convert`; and
the seed deployment's real config file run unchanged, as root."""

import os
import re
import shutil
import signal
import textwrap
import tomllib
from pathlib import Path

import pytest

from harness import (REPO, SEED, Server, base_env, free_port, port_is_free, run_cli, seed_workdir,
                     server_cmd, wait_for)

pytestmark = pytest.mark.unitcorn_only("unitcorn's messages and subcommands")


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_a_python_config_file_sets_the_settings(start_server, tmp_path):
    port = free_port()
    cfg = _write(tmp_path / "gunicorn_config.py", '''
        import multiprocessing
        bind = "127.0.0.1:%d"
        workers = 1 + 1
        raw_env = ["FROM_PY=yes"]
        wsgi_app = "wsgiapp:app"
        timeout = 30
        not_a_setting = multiprocessing.cpu_count()
    ''' % port)
    s = start_server(None, "-c", cfg, bind=False, addr=("127.0.0.1", port))
    s.wait_workers(2)
    assert s.get("/osenv?k=FROM_PY").body == b"yes"


def test_python_module_config_and_gunicorn_cmd_args(start_server, tmp_path):
    port = free_port()
    _write(tmp_path / "deploy_conf.py", '''
        bind = ["127.0.0.1:%d"]
        raw_env = ["FROM_MODULE=1"]
    ''' % port)
    s = start_server("wsgiapp:app", "--chdir", str(REPO / "tests" / "apps"), bind=False,
                     addr=("127.0.0.1", port), cwd=tmp_path,
                     env_extra={"GUNICORN_CMD_ARGS": "-c python:deploy_conf"})
    assert s.get("/osenv?k=FROM_MODULE").body == b"1"


def test_gunicorn_conf_py_in_the_working_directory_is_read_by_default(start_server, tmp_path):
    port = free_port()
    _write(tmp_path / "gunicorn.conf.py", '''
        bind = "127.0.0.1:%d"
        raw_env = ["DEFAULT_FILE=read"]
    ''' % port)
    s = start_server("wsgiapp:app", "--chdir", str(REPO / "tests" / "apps"), bind=False,
                     addr=("127.0.0.1", port), cwd=tmp_path)
    assert s.get("/osenv?k=DEFAULT_FILE").body == b"read"


@pytest.mark.parametrize("text,expected", [
    ("workers = 2\nbind = 8000\n",
     r'^unitcorn: {path}:2: setting "bind" must be a string or a list of strings, got 8000$'),
    ("workers = 'many'\n",
     r'^unitcorn: {path}:1: setting "workers" must be a positive integer, got "many"$'),
    ("import os\nworkers = 2\nos.no_such_function()\n",
     r"^unitcorn: {path}:3: the config file raised an exception:\nTraceback"),
    ("workers = (\n",
     r"^unitcorn: {path}:1: the config file raised an exception:\n[\s\S]*SyntaxError"),
    ("certfile = '/etc/ssl/cert.pem'\n",
     r'^unitcorn: {path}:1: setting "certfile" is not supported: TLS is terminated by the '
     r"proxy"),
    ("ssl_version = 2\n",
     r'^unitcorn: {path}:1: setting "ssl_version" is not supported: deprecated'),
    ("paste = 'config.ini'\n",
     r'^unitcorn: {path}:1: setting "paste" is not supported: PasteDeploy'),
    ("def when_ready():\n    pass\n",
     r'^unitcorn: {path}:1: setting "when_ready" \(a server hook\): must take 1 positional '
     r"argument \(server\)"),
])
def test_errors_name_the_file_the_line_and_the_setting(tmp_path, text, expected):
    cfg = tmp_path / "conf.py"
    cfg.write_text(text)
    p = run_cli(["-c", str(cfg), "wsgiapp:app"])
    assert p.returncode == 1, p.stderr
    assert re.search(expected.format(path=re.escape(str(cfg))), p.stderr, re.M), p.stderr


def test_gunicorn_defaults_pass_and_settings_without_effect_are_logged(start_server, tmp_path):
    cfg = _write(tmp_path / "conf.py", '''
        keyfile = None
        certfile = None
        syslog = False
        tmp_upload_dir = "/dev/shm"
        reuse_port = True
        wokers = 3
    ''')
    s = start_server("wsgiapp:app", "-c", cfg)
    log = s.stderr()
    assert re.search(r'WARNING\] .*conf.py:6: setting "reuse_port" has no effect in unitcorn',
                     log), log
    assert 'setting "tmp_upload_dir"' not in log      # a unitcorn setting since spooling
    assert re.search(r'conf.py:7: "wokers" is not a setting \(did you mean "workers"\?\)', log)


def test_print_config_and_check_config_read_the_python_file(tmp_path):
    cfg = _write(tmp_path / "conf.py", '''
        workers = 3
        bind = ["127.0.0.1:9999"]
        def post_fork(server, worker):
            pass
    ''')
    p = run_cli(["-c", str(cfg), "--print-config"])
    assert p.returncode == 0, p.stderr
    printed = tomllib.loads(p.stdout)
    assert printed["workers"] == 3 and printed["bind"] == ["127.0.0.1:9999"]
    assert re.search(r"^# post_fork = post_fork \(%s:4\)$" % re.escape(str(cfg)), p.stdout,
                     re.M), p.stdout
    assert re.search(r"^# on_starting is unset$", p.stdout, re.M)
    ok = run_cli(["-c", str(cfg), "--check-config", "wsgiapp:app"])
    assert ok.returncode == 0, ok.stderr
    bad = run_cli(["-c", str(cfg), "--check-config", "broken_import:app"])
    assert bad.returncode == 1 and "the app did not load" in bad.stderr


def test_config_convert_prints_toml_that_loads_the_same(tmp_path):
    p = run_cli(["config", "convert", str(SEED)])
    assert p.returncode == 0, p.stderr
    converted = tomllib.loads(p.stdout)
    assert converted["workers"] == 3 and converted["worker_class"] == "gevent"
    assert converted["user"] == "natadmin" and converted["umask"] == 0
    assert "tmp_upload_dir" not in converted
    toml = tmp_path / "seed.toml"
    toml.write_text(p.stdout)
    from_py = run_cli(["-c", str(SEED), "--print-config"])
    from_toml = run_cli(["-c", str(toml), "--print-config"])
    strip = lambda text: [l for l in text.splitlines() if not l.startswith("# config =")]
    assert strip(from_py.stdout) == strip(from_toml.stdout)
    # Hooks cannot be converted: listed as comments.
    hooks = _write(tmp_path / "hooks.py", '''
        workers = 2
        def on_starting(server):
            pass
    ''')
    p = run_cli(["config", "convert", str(hooks)])
    assert p.returncode == 0, p.stderr
    assert re.search(r"^# on_starting = on_starting \(.*hooks.py:3\)$", p.stdout, re.M)
    assert tomllib.loads(p.stdout) == {"workers": 2}


# ----- the seed deployment's config, unchanged, as root (its user and directories are
# conftest.py's fixtures natadmin and seed_dirs)

def test_the_seed_config_runs_unchanged_as_root(natadmin, seed_dirs, tmp_path):
    assert wait_for(lambda: port_is_free(8000), 30), "the seed binds 127.0.0.1:8000: in use"
    work = seed_workdir("unitcorn-seed-", "b'served by uid %d' % os.getuid()")
    try:
        binary = work / "unitcorn"
        shutil.copy(server_cmd()[0], binary)
        assert (work / "gunicorn_config.py").read_bytes() == SEED.read_bytes()
        s = Server([str(binary), "-c", "gunicorn_config.py", "app:app"], base_env(), work,
                   tmp_path, addr=("127.0.0.1", 8000), name="seed")
        try:
            s.wait_ready(timeout=30)
            r = s.get("/")
            assert r.status == 200 and r.body == b"served by uid %d" % natadmin.pw_uid
            workers = s.wait_workers(3)
            for pid in workers:
                with open("/proc/%d/status" % pid) as f:
                    status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
                assert status["Uid"].split()[0] == str(natadmin.pw_uid)
                assert status["Gid"].split()[0] == str(natadmin.pw_gid)
            assert Path("/run/gunicorn.pid").read_text().strip() == str(s.pid)
            access = Path("/var/log/gunicorn/access.log")
            assert wait_for(lambda: access.exists() and '"GET / HTTP/1.1" 200' in
                            access.read_text(), 10), access.read_text()
            error = Path("/var/log/gunicorn/error.log")
            assert "Booting worker with pid" in error.read_text()
            # Nothing of the seed's is silently dropped: worker_class gevent is the gevent
            # worker's (another branch); reload is the reloader's.
            s.signal(signal.SIGQUIT)
            assert s.wait_exit(30) == 0, error.read_text()[-3000:]
            assert "Shutting down: Master" in error.read_text()
        finally:
            s.kill_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if Path("/run/gunicorn.pid").exists():
            os.unlink("/run/gunicorn.pid")
