"""gunicorn's server hooks (issue 7, point 3), set in a Python config file: each is called
where gunicorn calls it, in the process gunicorn calls it in, with the objects hooks use
(server.pid/cfg/log/num_workers/WORKERS, worker.pid/ppid/age/alive/log/cfg, req, environ,
resp). A hook that raises is logged with its traceback; only those that stop gunicorn
(on_starting, when_ready, post_fork, post_worker_init) stop the start. The seed
deployment's commented-out hooks run as they are once uncommented."""

import re
import signal
import textwrap

import pytest

from harness import APPS, REPO, new_master_of, quit_and_wait, run_cli, wait_for

pytestmark = pytest.mark.unitcorn_only("unitcorn's error log lines and exit paths")

# Every hook logs one line "HOOK <name> <what it saw>", through the logger it is given.
ALL_HOOKS = textwrap.dedent('''
    workers = 2
    loglevel = "debug"

    def on_starting(server):
        server.log.info("HOOK on_starting pid=%s workers=%s cfg_workers=%s", server.pid,
                        server.num_workers, server.cfg.workers)

    def when_ready(server):
        server.log.info("HOOK when_ready pid=%s bind=%s", server.pid, server.cfg.bind)

    def nworkers_changed(server, new_value, old_value):
        server.log.info("HOOK nworkers_changed new=%s old=%s", new_value, old_value)

    def pre_fork(server, worker):
        server.log.info("HOOK pre_fork pid=%s age=%s", worker.pid, worker.age)

    def post_fork(server, worker):
        import os
        server.log.info("HOOK post_fork pid=%s ppid=%s real=%s", worker.pid, worker.ppid,
                        os.getpid())

    def post_worker_init(worker):
        worker.log.info("HOOK post_worker_init pid=%s wsgi=%s", worker.pid,
                        getattr(worker.wsgi, "__name__", None))

    def pre_request(worker, req):
        worker.log.info("HOOK pre_request %s %s path=%s query=%s ua=%s", worker.pid,
                        req.method, req.path, req.query, dict(req.headers).get("USER-AGENT"))

    def post_request(worker, req, environ, resp):
        worker.log.info("HOOK post_request %s %s %s path_info=%s sent=%s", worker.pid,
                        req.uri, resp.status, environ.get("PATH_INFO"), resp.sent)

    def on_reload(server):
        server.log.info("HOOK on_reload workers=%s", server.cfg.workers)

    def worker_int(worker):
        worker.log.info("HOOK worker_int %s alive=%s", worker.pid, worker.alive)

    def worker_exit(server, worker):
        import os
        server.log.info("HOOK worker_exit %s real=%s", worker.pid, os.getpid())

    def child_exit(server, worker):
        import os
        server.log.info("HOOK child_exit %s in=%s workers_left=%s", worker.pid, os.getpid(),
                        sorted(server.WORKERS))

    def on_exit(server):
        server.log.info("HOOK on_exit %s", server.pid)
''')


def _config(tmp_path, text, name="hooks.conf.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _hook_lines(s):
    return [line.split("] ", 3)[-1] for line in s.stderr().splitlines() if "HOOK " in line]


def test_every_hook_runs_where_gunicorn_calls_it(start_server, tmp_path):
    cfg = _config(tmp_path, ALL_HOOKS)
    s = start_server("wsgiapp:app", "-c", cfg)
    workers = s.wait_workers(2)
    master = s.pid
    r = s.get("/hello?x=1", headers=[("User-Agent", "hooktest")])
    assert r.status == 200
    s.wait_log(r"HOOK post_request \d+ /hello\?x=1 200 OK path_info=/hello sent=14")
    s.wait_log(r"HOOK pre_request \d+ GET path=/hello query=x=1 ua=hooktest")
    log = s.stderr()
    assert "HOOK on_starting pid=%d" % master in log
    assert "workers=2 cfg_workers=2" in log
    assert "HOOK when_ready pid=%d" % master in log
    assert "HOOK nworkers_changed new=2 old=None" in log
    assert log.count("HOOK pre_fork pid=[booting]") == 2
    for pid in workers:
        assert "HOOK post_fork pid=%d ppid=%d real=%d" % (pid, master, pid) in log
        s.wait_log(r"HOOK post_worker_init pid=%d wsgi=app" % pid)
    # gunicorn's order: on_starting, when_ready, then the workers' forks.
    lines = _hook_lines(s)
    order = [l.split()[1] for l in lines]
    assert order[:3] == ["nworkers_changed", "on_starting", "when_ready"], order
    assert order.index("when_ready") < order.index("pre_fork")

    s.signal(signal.SIGTTIN)
    s.wait_log(r"HOOK nworkers_changed new=3 old=2")
    s.wait_workers(3)
    s.signal(signal.SIGHUP)
    s.wait_log(r"HOOK on_reload workers=2")
    s.wait_log(r"HOOK nworkers_changed new=2 old=3")
    s.wait_log(r"reload: generation 2 ready")
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0
    log = s.stderr()
    exits = re.findall(r"HOOK worker_exit (\d+) real=(\d+)", log)
    assert exits and all(a == b for a, b in exits), exits
    assert re.search(r"HOOK worker_int \d+ alive=False", log)
    children = re.findall(r"HOOK child_exit (\d+) in=(\d+)", log)
    assert children and all(int(m) == master for _, m in children), children
    # Every worker that exited was reported to the master once.
    assert sorted(p for p, _ in children) == sorted(set(p for p, _ in children))
    assert _hook_lines(s)[-1] == "HOOK on_exit %d" % master


def test_hooks_that_raise_are_logged_and_the_server_serves(start_server, tmp_path):
    cfg = _config(tmp_path, textwrap.dedent('''
        def pre_fork(server, worker):
            raise RuntimeError("pre_fork broke")

        def post_request(worker, req, environ, resp):
            raise ValueError("post_request broke")

        def pre_request(worker, req):
            if req.path == "/refuse":
                raise KeyError("pre_request broke")

        def child_exit(server, worker):
            raise RuntimeError("child_exit broke")
    '''))
    s = start_server("wsgiapp:app", "-c", cfg, "-w", "1")
    s.wait_log(r"Exception in pre_fork hook\nTraceback[\s\S]*RuntimeError: pre_fork broke")
    assert s.get("/hello").body == b"Hello, World!\n"
    s.wait_log(r"Exception in post_request hook\nTraceback[\s\S]*ValueError: post_request broke")
    # pre_request raising: the app is not called, the client gets a 500, as in gunicorn.
    r = s.get("/refuse")
    assert r.status == 500
    s.wait_log(r"KeyError: 'pre_request broke'")
    # A worker dies: child_exit raises in the master, which replaces the worker.
    old = s.wait_workers(1)[0]
    import os
    os.kill(old, signal.SIGKILL)
    s.wait_log(r"Exception in child_exit hook\nTraceback[\s\S]*RuntimeError: child_exit broke")
    assert wait_for(lambda: [p for p in s.workers() if p != old], 10)
    assert s.get("/hello").status == 200


@pytest.mark.parametrize("hook", ["on_starting", "when_ready"])
def test_a_start_hook_that_raises_stops_the_start(tmp_path, hook):
    cfg = _config(tmp_path, "def %s(server):\n    raise RuntimeError('no start')\n" % hook)
    p = run_cli(["-c", str(cfg), "-b", "127.0.0.1:0", "wsgiapp:app"])
    assert p.returncode == 1, p.stderr
    assert "the %s hook raised; stopping" % hook in p.stderr
    assert "RuntimeError: no start" in p.stderr


def test_a_post_fork_that_raises_is_a_boot_failure(tmp_path):
    cfg = _config(tmp_path, "def post_fork(server, worker):\n    raise RuntimeError('no')\n")
    p = run_cli(["-c", str(cfg), "-b", "127.0.0.1:0", "wsgiapp:app"], timeout=30)
    assert p.returncode == 3, p.stderr
    assert "Exception in worker process (post_fork hook)" in p.stderr
    assert "RuntimeError: no" in p.stderr


def test_worker_abort_runs_on_a_timeout(start_server, tmp_path):
    cfg = _config(tmp_path, textwrap.dedent('''
        timeout = 1
        def worker_abort(worker):
            worker.log.info("HOOK worker_abort %s aborted=%s", worker.pid, worker.aborted)
    '''))
    s = start_server("wsgiapp:app", "-c", cfg, "-w", "1")
    pid = s.wait_workers(1)[0]
    r = s.get("/sleep?s=6", timeout=15)
    assert r.status == 504
    s.wait_log(r"HOOK worker_abort %d aborted=True" % pid)
    # The traceback dump still comes first, and the worker is replaced.
    assert "WORKER TIMEOUT" in s.stderr()
    assert wait_for(lambda: [p for p in s.workers() if p != pid], 10)


def test_a_hook_that_sleeps_does_not_hold_up_another_threads_hook(start_server, tmp_path):
    """worker_int runs on the worker's I/O thread and worker_abort on a thread of its own:
    while the first sleeps (the GIL released, as any Python code may), the second runs.
    A lock held across a hook's Python would make it wait for the first to end, or, with
    the GIL taken in the other order, deadlock."""
    import os
    import time
    cfg = _config(tmp_path, textwrap.dedent('''
        graceful_timeout = 30
        def worker_int(worker):
            import time
            worker.log.info("HOOK worker_int start %s", worker.pid)
            for _ in range(40):
                time.sleep(0.1)
            worker.log.info("HOOK worker_int end %s", worker.pid)
        def worker_abort(worker):
            worker.log.info("HOOK worker_abort %s", worker.pid)
    '''))
    s = start_server("wsgiapp:app", "-c", cfg, "-w", "1")
    (pid,) = s.wait_workers(1)
    os.kill(pid, signal.SIGQUIT)
    s.wait_log(r"HOOK worker_int start %d" % pid)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGABRT)
    s.wait_log(r"HOOK worker_abort %d" % pid, timeout=10)
    took = time.monotonic() - t0
    assert "HOOK worker_int end %d" % pid not in s.stderr(), \
        "worker_abort waited for worker_int to end (%.1f s)" % took
    assert took < 2, "worker_abort ran %.1f s after SIGABRT" % took


def test_request_hooks_that_release_the_gil_under_concurrent_requests(start_server,
                                                                      tmp_path):
    """pre_request and post_request that give the GIL away (sleep) on four app threads at
    once: every request is answered, in bounded time (no hook waits on another's lock)."""
    from concurrent.futures import ThreadPoolExecutor
    cfg = _config(tmp_path, textwrap.dedent('''
        import time
        def pre_request(worker, req):
            time.sleep(0)
            time.sleep(0.002)
        def post_request(worker, req, environ, resp):
            time.sleep(0)
            time.sleep(0.002)
    '''))
    s = start_server("wsgiapp:app", "-c", cfg, "-w", "1", "--threads", "4")
    s.wait_workers(1)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: s.get("/hello", timeout=10).status, range(200)))
    assert statuses == [200] * 200, sorted(set(statuses))


def _seed_hooks():
    """The hooks the seed config has commented out, uncommented (and nothing else)."""
    text = (REPO / "examples" / "gunicorn_config.py").read_text()
    block = text[text.index("# def post_fork(server, worker):"):]
    lines = []
    for line in block.splitlines():
        assert line.startswith("#"), line
        line = line[1:]
        lines.append(line[1:] if line.startswith(" ") else line)
    return "\n".join(lines) + "\n"


def test_the_seed_files_commented_hooks_work_uncommented(start_server, tmp_path):
    hooks = _seed_hooks()
    assert "sys._current_frames()" in hooks and "def worker_abort(worker):" in hooks
    cfg = _config(tmp_path, "loglevel = 'debug'\nworkers = 2\n" + hooks)
    s = start_server("wsgiapp:app", "-c", cfg, "--threads", "2")
    workers = s.wait_workers(2)
    for pid in workers:
        s.wait_log(r"Worker spawned \(pid: %d\)" % pid)
    assert "Server is ready. Spawning workers" in s.stderr()
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0
    log = s.stderr()
    assert log.count("worker received INT or QUIT signal") == 2
    # worker_int's dump: every thread of the worker, each with its stack.
    dumps = re.findall(r"\n# Thread: ([^\n]*)\((\d+)\)\n((?:File: [^\n]*\n(?:  [^\n]*\n)?)+)",
                       log)
    assert len(dumps) >= 2, log[-4000:]
    names = {name for name, _, _ in dumps}
    assert "MainThread" in names, names


def test_spew_prints_every_line_the_app_runs(start_server, tmp_path):
    s = start_server("wsgiapp:app", "--spew")
    assert s.get("/hello").status == 200
    assert wait_for(lambda: re.search(r"^wsgiapp:\d+: ", s.stdout(), re.M), 10), \
        s.stdout()[-2000:]


def test_pre_exec_runs_before_a_usr2_upgrade(start_server, tmp_path):
    cfg = _config(tmp_path, textwrap.dedent('''
        def pre_exec(server):
            server.log.info("HOOK pre_exec in %s", server.pid)
        def when_ready(server):
            server.log.info("HOOK when_ready in %s", server.pid)
    '''))
    s = start_server("wsgiapp:app", "-c", cfg, "-w", "1", "-p", tmp_path / "app.pid")
    s.signal(signal.SIGUSR2)
    new = new_master_of(s)
    try:
        s.wait_log(r"HOOK pre_exec in %d" % s.pid)
        # The new master ran the config again: its own when_ready.
        s.wait_log(r"HOOK when_ready in %d" % new)
        assert s.wait_exit(15) == 0
    finally:
        quit_and_wait(new)
