"""The exit status, decided in one place (src/lib.rs `exit_status`), and the message the
operator reads with it: what failed, on what, and the next step.

0 a stop that was asked for; 2 a wrong command line; 3 gunicorn's WORKER_BOOT_ERROR; 4
gunicorn's APP_LOAD_ERROR; 1 any other failure."""

import re
import signal
import socket
import subprocess
import textwrap

import pytest

from harness import UNITCORN_BIN, run_cli

pytestmark = pytest.mark.unitcorn_only("unitcorn's exit statuses and error wording")


def test_a_wrong_command_line_is_2():
    p = run_cli(["--no-such-flag"])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.startswith("unitcorn: ") and "--no-such-flag" in p.stderr, p.stderr


def test_an_app_that_does_not_import_is_4():
    p = run_cli(["-b", "127.0.0.1:0", "-w", "2", "broken_import:app"], timeout=30)
    assert p.returncode == 4, (p.returncode, p.stderr[-3000:])
    assert "RuntimeError: boom-at-import 42" in p.stderr
    assert re.search(r"Worker \(pid:\d+\) could not start; stopping: fix the error above",
                     p.stderr), p.stderr[-3000:]


def test_a_worker_that_cannot_boot_is_3(tmp_path):
    cfg = tmp_path / "conf.py"
    cfg.write_text("def post_fork(server, worker):\n    raise RuntimeError('no boot')\n")
    p = run_cli(["-c", str(cfg), "-b", "127.0.0.1:0", "wsgiapp:app"], timeout=30)
    assert p.returncode == 3, (p.returncode, p.stderr[-3000:])


def test_a_taken_address_is_1_and_names_the_address_and_the_os_error():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        p = run_cli(["-b", "127.0.0.1:%d" % port, "wsgiapp:app"])
    assert p.returncode == 1, (p.returncode, p.stderr)
    line = [l for l in p.stderr.splitlines() if "cannot listen on" in l]
    assert line, p.stderr
    # what, on what, which setting from where, the OS error, a next step: one line
    assert "cannot listen on 127.0.0.1:%d (bind, from --bind): address already in use: " \
           "is unitcorn, or another server, running there?" % port in line[0], line


def test_an_unknown_user_is_1():
    p = run_cli(["-b", "127.0.0.1:0", "-u", "no-such-user-xyz", "wsgiapp:app"])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert 'no such user "no-such-user-xyz" (user, from --user)' in p.stderr, p.stderr


def test_a_preload_that_fails_is_1_with_the_traceback_on_its_own_lines():
    p = run_cli(["--preload", "-b", "127.0.0.1:0", "broken_import:app"])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "the app did not load (preload_app)\nTraceback (most recent call last):" \
        in p.stderr, p.stderr


def test_a_start_hook_that_raises_is_1_with_its_traceback_below(tmp_path):
    cfg = tmp_path / "conf.py"
    cfg.write_text(textwrap.dedent("""\
        def on_starting(server):
            raise RuntimeError('not today')
    """))
    p = run_cli(["-c", str(cfg), "-b", "127.0.0.1:0", "wsgiapp:app"])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "the on_starting hook raised; stopping\nTraceback" in p.stderr, p.stderr
    assert "RuntimeError: not today" in p.stderr


def test_a_chdir_that_does_not_exist_is_1_and_names_the_setting():
    p = run_cli(["-b", "127.0.0.1:0", "--chdir", "/nonexistent-dir-xyz", "wsgiapp:app"])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "cannot chdir to /nonexistent-dir-xyz (chdir, from --chdir): no such directory" \
        in p.stderr, p.stderr


def test_the_reload_helper_without_a_master_is_1_and_says_why():
    r = subprocess.run([str(UNITCORN_BIN), "reload", "999999999"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert r.stderr.startswith("unitcorn: reload: cannot send HUP to the master, pid "
                               "999999999 (is it running?): "), r.stderr


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGTERM, signal.SIGINT],
                         ids=lambda s: s.name)
def test_a_stop_that_was_asked_for_is_0(start_server, sig):
    s = start_server("wsgiapp:app", "-w", "1")
    s.wait_workers(1)
    s.signal(sig)
    assert s.wait_exit(15) == 0, s.stderr()[-3000:]
