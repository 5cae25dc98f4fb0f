"""Issue 7 point 5: `reload` -- a change to a source file of the app (a module it imported
from outside the stdlib and site-packages, lazily imported ones included) or to a
`reload_extra_files` match starts a new generation of workers, as HUP does: the old one
serves until the new one does, and keeps serving when the new code does not load. Both
engines (inotify, poll); bursts of writes make one reload; unrelated files make none.

The apps are written to a fresh directory per test, since the tests edit them.
"""

import re
import signal
import textwrap
import time

import pytest

from harness import Load, wait_for

pytestmark = pytest.mark.unitcorn_only("unitcorn's reload keeps the old workers serving")

APP = '''
import os
import helper

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid":
        body = str(os.getpid())
    elif path == "/lazy":
        import lazy
        body = lazy.TEXT
    else:
        body = helper.text()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
'''


def write_helper(d, text, broken=False):
    """helper.py returns `text`; `broken` adds a syntax error on its line 3."""
    body = "def text():\n    return %r\n" % text
    if broken:
        body += "def oops(:\n"
    (d / "helper.py").write_text(body)


def make_app(tmp_path, text="v1"):
    d = tmp_path / "app"
    d.mkdir()
    (d / "reloadapp.py").write_text(APP)
    write_helper(d, text)
    (d / "lazy.py").write_text("TEXT = 'lazy v1'\n")
    return d


def serves(s, path, body, timeout):
    """Wait until every one of 4 answers to GET path is body; seconds it took (asserts)."""
    t0 = time.monotonic()

    def all_new():
        try:
            return all(s.get(path, timeout=5).body == body for _ in range(4))
        except OSError:
            return False
    assert wait_for(all_new, timeout, interval=0.05), "still not serving %r after %ss; log:\n%s" % (
        body, timeout, s.stderr()[-4000:])
    return time.monotonic() - t0


def generations_started(s):
    return len(s.log_findall(r"reload: starting generation"))


@pytest.mark.parametrize("engine", ["inotify", "poll"])
def test_an_edit_is_served_within_2s_without_a_failed_request(start_server, tmp_path, engine):
    d = make_app(tmp_path)
    s = start_server("reloadapp:app", "--reload", "--reload-engine", engine, "-w", "2",
                     "--chdir", str(d), "--keep-alive", "5")
    old = s.wait_workers(2)
    assert s.get("/").body == b"v1"
    s.wait_log(r"reload: watching the app's modules \(%s" % ("inotify" if engine == "inotify"
                                                             else "polling"))
    with Load(s.addr, keepalive=1, fresh=1) as load:
        load.wait_requests(30)
        write_helper(d, "v2 is here")
        took = serves(s, "/", b"v2 is here", timeout=5)
        load.wait_requests(30)
    print("%s: new text served %.2fs after the edit" % (engine, took))
    assert took < 2.0, took
    assert not load.failures, load.summary()
    assert not set(s.wait_workers(2)) & set(old)
    assert s.log_findall(r"reload: \S*helper\.py changed")


def test_the_app_module_itself_is_watched(start_server, tmp_path):
    d = make_app(tmp_path)
    s = start_server("reloadapp:app", "--reload", "--chdir", str(d))
    s.wait_log(r"reload: watching")
    (d / "reloadapp.py").write_text(APP.replace("body = helper.text()", "body = 'main v2'"))
    serves(s, "/", b"main v2", timeout=5)


def test_a_syntax_error_keeps_the_old_code_serving_then_the_fix_is_served(start_server,
                                                                         tmp_path):
    d = make_app(tmp_path)
    s = start_server("reloadapp:app", "--reload", "-w", "2", "--chdir", str(d),
                     "--keep-alive", "5")
    old = s.wait_workers(2)
    s.wait_log(r"reload: watching")
    with Load(s.addr, keepalive=1, fresh=1) as load:
        load.wait_requests(20)
        write_helper(d, "v2", broken=True)
        s.wait_log(r"reload failed[^\n]*", timeout=10)
        log = s.stderr()
        # The worker's traceback names the file and the line, and the error.
        assert re.search(r'File "%s", line 3' % re.escape(str(d / "helper.py")), log), log[-3000:]
        assert "SyntaxError" in log
        time.sleep(0.5)
        assert not s.exited()
        load.wait_requests(20)
        assert s.workers() == old
        assert {s.get("/").body for _ in range(4)} == {b"v1"}
        write_helper(d, "v3 fixed")
        serves(s, "/", b"v3 fixed", timeout=5)
        load.wait_requests(20)
    assert not load.failures, load.summary()


def test_a_lazily_imported_module_is_watched_once_loaded(start_server, tmp_path):
    d = make_app(tmp_path)
    s = start_server("reloadapp:app", "--reload", "--chdir", str(d))
    assert s.get("/lazy").body == b"lazy v1"
    # The worker looks at sys.modules every second.
    time.sleep(1.5)
    (d / "lazy.py").write_text("TEXT = 'lazy v2'\n")
    serves(s, "/lazy", b"lazy v2", timeout=5)


def test_extra_files_glob_triggers_and_unrelated_files_do_not(start_server, tmp_path):
    d = make_app(tmp_path)
    (d / "templates").mkdir()
    (d / "templates" / "index.html").write_text("<p>v1</p>")
    s = start_server("reloadapp:app", "--reload", "--chdir", str(d),
                     "--reload-extra-file", "templates/*.html")
    (old,) = s.wait_workers(1)
    s.wait_log(r"reload: watching the app's modules and templates/\*\.html")
    # Not the app's: a file next to its modules, a non-matching template, a hidden file.
    (d / "notes.txt").write_text("unrelated")
    (d / "templates" / "readme.txt").write_text("unrelated")
    (d / "templates" / ".index.html.swp").write_text("editor state")
    (d / "unimported.py").write_text("X = 1\n")
    time.sleep(1.5)
    assert generations_started(s) == 0, s.stderr()[-3000:]
    assert s.workers() == [old]
    (d / "templates" / "index.html").write_text("<p>v2</p>")
    s.wait_log(r"reload: \S*templates/index\.html changed", timeout=3)
    wait_for(lambda: s.workers() and old not in s.workers(), 10)
    assert old not in s.workers()
    # A new matching file counts too.
    gen = generations_started(s)
    (d / "templates" / "new.html").write_text("<p>new</p>")
    s.wait_log(r"reload: \S*templates/new\.html changed", timeout=3)
    assert generations_started(s) == gen + 1


def test_a_burst_of_writes_makes_one_reload(start_server, tmp_path):
    d = make_app(tmp_path)
    s = start_server("reloadapp:app", "--reload", "--chdir", str(d))
    s.wait_log(r"reload: watching")
    # An editor's save: several writes, a rename over the file, a chmod.
    for i in range(5):
        write_helper(d, "burst %d" % i)
        time.sleep(0.02)
    tmp = d / ".helper.py.tmp"
    tmp.write_text("def text():\n    return 'burst final'\n")
    tmp.rename(d / "helper.py")
    (d / "helper.py").chmod(0o644)
    serves(s, "/", b"burst final", timeout=5)
    time.sleep(1)
    assert generations_started(s) == 1, s.log_findall(r"reload: [^\n]*")


def test_without_reload_nothing_is_watched(start_server, tmp_path):
    d = make_app(tmp_path)
    s = start_server("reloadapp:app", "--chdir", str(d))
    (old,) = s.wait_workers(1)
    write_helper(d, "v2")
    time.sleep(1.5)
    assert s.workers() == [old]
    assert s.get("/").body == b"v1"
    assert "reload:" not in s.stderr()


def test_reload_with_preload_app_serves_the_edit(start_server, tmp_path):
    """gunicorn's reloader cannot work with preload_app; here the master re-imports the
    app's own modules first, as at HUP."""
    d = make_app(tmp_path)
    s = start_server("reloadapp:app", "--reload", "--preload", "-w", "2", "--chdir", str(d))
    s.wait_log(r"reload: watching")
    s.wait_workers(2)
    write_helper(d, "preloaded v2")
    serves(s, "/", b"preloaded v2", timeout=5)
