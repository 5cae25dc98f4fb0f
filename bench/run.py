#!/usr/bin/python3
"""Comparative benchmark: unitcorn against gunicorn, granian, fastwsgi and fastpysgi.

Every server runs with 2 worker processes on 127.0.0.1 and serves the apps in bench/apps/;
wrk loads each (server, app, connections) once per round, rounds interleaved, and the medians
and spreads over rounds are printed as a markdown table (also written to bench/results/latest.md).

By default (--pin) the server's whole process tree runs on core 0 and wrk on core 1, and the
figure to trust is the server's CPU time per request (utime+stime of its process tree over
the wrk run / requests wrk completed): on a shared 2-core VM it moves far less than req/s.
Run: /usr/bin/python3 bench/run.py [--duration 10] [--rounds 5]   (see --help)
"""

import argparse
import datetime
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
APPS_DIR = os.path.join(BENCH, "apps")
VENV = os.path.join(BENCH, ".venv")
# The unitcorn-wheel* venvs (and the native wheel's build output), keyed by content hashes.
VENVS = os.path.join(BENCH, ".venvs")
# The interpreter the binary embeds (Debian's libpython3.11): the wheel venvs use it too.
SYSTEM_PYTHON = "/usr/bin/python3"
NATIVE_TARGET = "/tmp/unitcorn-native-target"
ABI3_TARGET = "/tmp/unitcorn-abi3-target"  # --wheel-from-head's abi3 build
CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULTS = os.path.join(BENCH, "results")
HOST = "127.0.0.1"
WORKERS = 2
GTHREAD_THREADS = 4

# name: (APP argument, description, interface)
APPS = {
    "hello": ("hello:app", "plain WSGI, b'Hello, World!' (13 B)", "wsgi"),
    "flask": ("flaskjson:app", "Flask `jsonify` of a 4-key dict", "wsgi"),
    "big": ("big:app", "1 MiB body, one bytes object", "wsgi"),
    "stream": ("stream:app", "generator of 100 x 1 KiB chunks (chunked)", "wsgi"),
    "asgi-hello": ("asgihello:app", "plain ASGI function, b'Hello, World!' (13 B)", "asgi"),
    "sleep": ("sleep:app", "time.sleep(0.1) (gevent's under -k gevent), then 13 B", "wsgi"),
}
SERVER_NAMES = ["unitcorn", "unitcorn-before", "unitcorn-wheel", "unitcorn-wheel-native", "gunicorn-sync", "gunicorn-gthread", "granian", "fastwsgi", "fastpysgi",
                "uvicorn", "granian-asgi", "unitcorn-gevent", "gunicorn-gevent"]
# Run unless --servers / --apps name them: the greenlet servers and the app made for them,
# and unitcorn-wheel-native (it needs a cargo build of its own, minutes on this VM).
# unitcorn-before: a second binary (UNITCORN_BEFORE_BIN) interleaved with the first, for a
# change's before/after ratios in one run; only when named.
DEFAULT_SERVERS = [n for n in SERVER_NAMES
                   if not n.endswith("-gevent") and n not in ("unitcorn-wheel-native", "unitcorn-before")]
DEFAULT_APPS = [a for a in APPS if a != "sleep"]
# pip package -> module to import to check it is there (gevent: both -k gevent workers;
# packaging: gunicorn's gevent worker, its gunicorn[gevent] extra)
PACKAGES = {"gunicorn": "gunicorn", "granian": "granian", "flask": "flask",
            "fastwsgi": "fastwsgi", "fastpysgi": "fastpysgi",
            "uvicorn": "uvicorn", "uvloop": "uvloop", "httptools": "httptools",
            "gevent": "gevent", "packaging": "packaging", "maturin": "maturin"}
# server -> the packages it needs (unitcorn's ASGI worker uses uvloop when installed)
# (unitcorn-wheel*: in the bench venv; their own venvs get uvloop and the apps' packages)
NEEDS = {"unitcorn": ["uvloop"], "unitcorn-before": ["uvloop"], "unitcorn-wheel": [], "unitcorn-wheel-native": ["maturin"],
         "gunicorn-sync": ["gunicorn"], "gunicorn-gthread": ["gunicorn"],
         "granian": ["granian"], "granian-asgi": ["granian", "uvloop"], "fastwsgi": ["fastwsgi"],
         "fastpysgi": ["fastpysgi"], "uvicorn": ["uvicorn", "uvloop", "httptools"],
         "unitcorn-gevent": ["gevent"], "gunicorn-gevent": ["gunicorn", "gevent", "packaging"]}
GEVENT_CONNECTIONS = 1000


@dataclass
class Server:
    name: str
    describe: str
    argv: object          # function(port, target) -> list of str
    env: dict = field(default_factory=dict)
    interfaces: tuple = ("wsgi",)


@dataclass
class Running:
    server: Server
    app: str
    port: int
    proc: subprocess.Popen
    log_path: str


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_cmd(argv, timeout, **kw):
    """Run a command to completion (bounded), returning CompletedProcess; never raises on rc."""
    return subprocess.run(argv, timeout=timeout, capture_output=True, text=True, **kw)


def baseline(name):
    """The server a row's req/s is compared with: greenlet servers with unitcorn's."""
    return "unitcorn-gevent" if name.endswith("-gevent") else "unitcorn"


# ---------------------------------------------------------------- set-up

def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds of wrk per measurement (10)")
    p.add_argument("--rounds", type=int, default=5, help="rounds; each runs every combination once (5)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of wrk warm-up after each start (2)")
    p.add_argument("--connections", default="64,256", help="comma-separated wrk -c values (64,256)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (1: leave the 2nd core to the servers)")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                   help="run the server's process tree on --server-cpus and wrk on --wrk-cpus with "
                        "taskset (default); --no-pin lets the scheduler place both")
    p.add_argument("--server-cpus", default="0", help="taskset -c list for the server under --pin (0)")
    p.add_argument("--wrk-cpus", default="1", help="taskset -c list for wrk under --pin (1)")
    p.add_argument("--servers", default="", help="comma-separated servers of " + ",".join(SERVER_NAMES) +
                   " (default: all but the -gevent ones and unitcorn-wheel-native)")
    p.add_argument("--apps", default="", help="comma-separated subset of " + ",".join(APPS) +
                   " (default: all but sleep)")
    p.add_argument("--wheel-from-head", action="store_true",
                   help="unitcorn-wheel: build the abi3 wheel from `git archive HEAD` as unitcorn-wheel-native "
                        "is built (the same source for both) instead of $UNITCORN_WHEEL / target/wheels")
    p.add_argument("--setup-only", action="store_true",
                   help="install and build what the chosen servers need, then exit without measuring")
    return p.parse_args()


def ensure_wrk():
    if shutil.which("wrk"):
        return
    log("installing wrk with apt-get ...")
    if run_cmd(["apt-get", "install", "-y", "wrk"], 600).returncode != 0:
        run_cmd(["apt-get", "update"], 600)
        run_cmd(["apt-get", "install", "-y", "wrk"], 600)
    if not shutil.which("wrk"):
        sys.exit("wrk is missing and could not be installed")


def venv_python(venv=VENV):
    return os.path.join(venv, "bin", "python")


def ensure_venv(wanted, venv=VENV):
    """Create `venv` with /usr/bin/python3 and install what the `wanted` packages miss;
    return {pkg: ok} for every package (those not wanted: whether they are there)."""
    if not os.path.exists(venv_python(venv)):
        log("creating " + venv)
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", venv], check=True, timeout=300)
    available = {}
    for pkg, module in PACKAGES.items():
        if pkg in wanted and not importable(module, venv):
            log(f"pip install {pkg} into {venv} ...")
            r = run_cmd([venv_python(venv), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                         pkg], 900)
            if r.returncode != 0:
                log(f"  {pkg} did not install: {r.stderr.strip()[-300:]}")
        available[pkg] = importable(module, venv)
    return available


def importable(module, venv=VENV):
    return run_cmd([venv_python(venv), "-c", f"import {module}"], 60).returncode == 0


def package_version(pkg, venv=VENV):
    r = run_cmd([venv_python(venv), "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"], 60)
    return r.stdout.strip() if r.returncode == 0 else "?"


def sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mtime_str(path):
    return datetime.datetime.fromtimestamp(os.path.getmtime(path)).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def find_abi3_wheel():
    """Return (path or None, note): $UNITCORN_WHEEL, else the newest target/wheels/unitcorn-*-abi3-*.whl."""
    path = os.environ.get("UNITCORN_WHEEL")
    if path is None:
        import glob
        found = sorted(glob.glob(os.path.join(REPO, "target", "wheels", "unitcorn-*-abi3-*.whl")),
                       key=os.path.getmtime)
        if not found:
            return None, "no target/wheels/unitcorn-*-abi3-*.whl (and UNITCORN_WHEEL not set)"
        path = found[-1]
    if not os.path.isfile(path):
        return None, f"no wheel at {path}"
    note = f"{os.path.basename(path)} (modified {mtime_str(path)}, sha256 {sha256(path)[:12]})"
    core = git("log", "-1", "--format=%h %ct", "--", *CORE_PATHS).split()
    if len(core) == 2 and os.path.getmtime(path) < int(core[1]):
        note += f"; older than commit {core[0]}, the last to change the Rust/Python source: rebuild it"
    return path, note


# What the extension module is built from: a change here makes a wheel stale.
CORE_PATHS = ["src", "python", "Cargo.toml", "Cargo.lock", "pyproject.toml", "build.rs"]


def git(*argv):
    return run_cmd(["git", *argv], 120, cwd=REPO).stdout.strip()


def build_wheel_from_head(abi3, commit):
    """Build the extension for /usr/bin/python3 from `git archive <commit>` (HEAD, resolved
    once per run so that both wheels come from one commit while others commit) with maturin: on the
    stable ABI (abi3=True) or for this interpreter's own ABI (abi3=False: the copy's
    pyproject.toml loses its `features = ["abi3"]` line and nothing else). Cached under
    bench/.venvs/built-wheels/<variant>-<hash of HEAD's CORE_PATHS>; cargo builds in
    /tmp/unitcorn-{native,abi3}-target, never in the work tree's target/.
    Return (path or None, note)."""
    import glob
    import hashlib
    variant = "abi3" if abi3 else "native"
    listing = git("ls-tree", commit, "--", *CORE_PATHS)
    if not listing:
        return None, f"git ls-tree {commit} failed"
    key = hashlib.sha256(listing.encode()).hexdigest()[:16]
    outdir = os.path.join(VENVS, "built-wheels", f"{variant}-{key}")
    core = git("log", "-1", "--format=%h", commit, "--", *CORE_PATHS)
    note = (f"built by the bench from HEAD {commit[:7]} (the source last changed in {core})"
            + ("" if abi3 else " without the abi3 feature"))
    found = glob.glob(os.path.join(outdir, "unitcorn-*.whl"))
    if found:
        return found[0], note
    if not importable("maturin"):
        return None, "maturin is not installed in bench/.venv"
    src = tempfile.mkdtemp(prefix=f"unitcorn-{variant}-src-")
    partial = outdir + ".partial"
    try:
        archive = subprocess.Popen(["git", "archive", commit], cwd=REPO, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", src], stdin=archive.stdout, check=True, timeout=300)
        archive.stdout.close()
        if archive.wait(timeout=60) != 0:
            return None, f"git archive {commit} failed"
        if not abi3:
            pyproject = os.path.join(src, "pyproject.toml")
            with open(pyproject) as f:
                lines = f.readlines()
            kept = [line for line in lines if line.strip() != 'features = ["abi3"]']
            if len(kept) != len(lines) - 1:
                return None, "pyproject.toml has no single `features = [\"abi3\"]` line to remove"
            with open(pyproject, "w") as f:
                f.writelines(kept)
        target = NATIVE_TARGET if not abi3 else ABI3_TARGET
        log(f"maturin build --release -i {SYSTEM_PYTHON} ({variant}; HEAD {commit[:7]}, "
            f"CARGO_TARGET_DIR={target}) ...")
        shutil.rmtree(partial, ignore_errors=True)
        r = run_cmd([os.path.join(VENV, "bin", "maturin"), "build", "--release", "-i", SYSTEM_PYTHON,
                     "-o", partial], 3600, cwd=src, env=dict(os.environ, CARGO_TARGET_DIR=target))
        if r.returncode != 0:
            return None, "maturin build failed: " + " ".join(r.stderr.split())[-400:]
        built = glob.glob(os.path.join(partial, "unitcorn-*.whl"))
        if len(built) != 1 or ("abi3" in os.path.basename(built[0])) != abi3:
            return None, f"maturin built {built}, not one {variant} wheel"
        os.rename(partial, outdir)
        return os.path.join(outdir, os.path.basename(built[0])), note
    finally:
        shutil.rmtree(src, ignore_errors=True)


def wheel_venv(kind, wheel, packages):
    """A venv of /usr/bin/python3 with `wheel` and `packages`, cached as
    bench/.venvs/<kind>-<the wheel's sha256[:16]>; return (venv or None, problem)."""
    venv = os.path.join(VENVS, f"{kind}-{sha256(wheel)[:16]}")
    marker = os.path.join(venv, ".unitcorn-installed")
    if not os.path.exists(marker):
        shutil.rmtree(venv, ignore_errors=True)
        os.makedirs(VENVS, exist_ok=True)
        log(f"creating {venv} with {os.path.basename(wheel)}")
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", venv], check=True, timeout=300)
        r = run_cmd([venv_python(venv), "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
                    900)
        if r.returncode != 0:
            return None, "pip install of the wheel failed: " + r.stderr.strip()[-300:]
        with open(marker, "w") as f:
            f.write(wheel + "\n")
    available = ensure_venv(packages, venv)
    missing = [p for p in packages if not available.get(p)]
    if missing:
        log(f"{venv}: {', '.join(missing)} did not install")
    return venv, None


def find_unitcorn():
    """Return (path or None, note). Builds the default binary with cargo if it is missing."""
    path = os.environ.get("UNITCORN_BIN")
    if path is None:
        path = os.path.join(REPO, "target", "release", "unitcorn")
        if not os.path.exists(path):
            log("building unitcorn with cargo build --release ...")
            try:
                r = run_cmd(["cargo", "build", "--release"], 1800, cwd=REPO)
                if r.returncode != 0:
                    return None, "cargo build --release failed: " + r.stderr.strip()[-300:]
            except (OSError, subprocess.TimeoutExpired) as e:
                return None, f"cargo build --release failed: {e}"
    if not os.access(path, os.X_OK):
        return None, f"no unitcorn binary at {path}"
    built = datetime.datetime.fromtimestamp(os.path.getmtime(path)).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return path, f"{path} (modified {built})"


def server_list(unitcorn, available, wheel_venvs):
    """All servers that can run, and notes on the ones that cannot. wheel_venvs: name ->
    (venv or None, description) for unitcorn-wheel and unitcorn-wheel-native."""
    vbin = os.path.join(VENV, "bin")
    servers, skipped = [], []
    def binary(name, path, describe):
        """A unitcorn binary, served from the bench venv."""
        return Server(name, describe,
                      lambda port, t: [path, "-w", str(WORKERS), "-b", f"{HOST}:{port}",
                                       "--chdir", APPS_DIR, "--log-level", "warning", t],
                      {"VIRTUAL_ENV": VENV}, ("wsgi", "asgi"))

    if unitcorn:
        servers.append(binary("unitcorn", unitcorn, f"`unitcorn -w {WORKERS}` (the binary; defaults: "
                                                    "--threads 1, no access log)"))
    else:
        skipped.append("unitcorn")
    before = os.environ.get("UNITCORN_BEFORE_BIN")
    if before and os.access(before, os.X_OK):
        servers.append(binary("unitcorn-before", before, f"`{before} -w {WORKERS}` (UNITCORN_BEFORE_BIN: "
                                                          "the binary before a change)"))
    else:
        skipped.append("unitcorn-before (set UNITCORN_BEFORE_BIN to a binary)")
    for name, (venv, describe) in wheel_venvs.items():
        if venv is None:
            skipped.append(f"{name} ({describe})")
            continue
        servers.append(Server(
            name, f"`<venv>/bin/unitcorn -w {WORKERS}`, the Python package in a venv of {SYSTEM_PYTHON}: "
                  + describe,
            lambda port, t, venv=venv: [os.path.join(venv, "bin", "unitcorn"), "-w", str(WORKERS),
                                        "-b", f"{HOST}:{port}", "--chdir", APPS_DIR,
                                        "--log-level", "warning", t],
            {}, ("wsgi", "asgi")))
    if unitcorn and available["gevent"]:
        servers.append(Server(
            "unitcorn-gevent", f"`unitcorn -k gevent -w {WORKERS} --worker-connections {GEVENT_CONNECTIONS}`",
            lambda port, t: [unitcorn, "-k", "gevent", "-w", str(WORKERS),
                             "--worker-connections", str(GEVENT_CONNECTIONS), "-b", f"{HOST}:{port}",
                             "--chdir", APPS_DIR, "--log-level", "warning", t],
            {"VIRTUAL_ENV": VENV}))
    else:
        skipped.append("unitcorn-gevent")
    if available["gunicorn"] and available["gevent"] and available["packaging"]:
        servers.append(Server(
            "gunicorn-gevent", f"`gunicorn -k gevent -w {WORKERS} --worker-connections {GEVENT_CONNECTIONS}`",
            lambda port, t: [f"{vbin}/gunicorn", "-k", "gevent", "-w", str(WORKERS),
                             "--worker-connections", str(GEVENT_CONNECTIONS), "-b", f"{HOST}:{port}",
                             "--chdir", APPS_DIR, "--log-level", "warning", t]))
    else:
        skipped.append("gunicorn-gevent")
    if available["gunicorn"]:
        servers.append(Server(
            "gunicorn-sync", f"`gunicorn -k sync -w {WORKERS}` (no access log by default)",
            lambda port, t: [f"{vbin}/gunicorn", "-k", "sync", "-w", str(WORKERS), "-b", f"{HOST}:{port}",
                             "--chdir", APPS_DIR, "--log-level", "warning", t]))
        servers.append(Server(
            "gunicorn-gthread", f"`gunicorn -k gthread -w {WORKERS} --threads {GTHREAD_THREADS}`",
            lambda port, t: [f"{vbin}/gunicorn", "-k", "gthread", "-w", str(WORKERS),
                             "--threads", str(GTHREAD_THREADS), "-b", f"{HOST}:{port}",
                             "--chdir", APPS_DIR, "--log-level", "warning", t]))
    else:
        skipped += ["gunicorn-sync", "gunicorn-gthread"]
    if available["granian"]:
        servers.append(Server(
            "granian", f"`granian --interface wsgi --workers {WORKERS} --http 1 --no-ws --no-access-log` "
                       "(defaults: 1 runtime thread, blocking threads = backlog/workers/2 = 256 per worker)",
            lambda port, t: [f"{vbin}/granian", "--interface", "wsgi", "--workers", str(WORKERS),
                             "--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning",
                             "--host", HOST, "--port", str(port), "--working-dir", APPS_DIR, t]))
    else:
        skipped.append("granian")
    if available["uvicorn"]:
        servers.append(Server(
            "uvicorn", f"`uvicorn --workers {WORKERS} --loop uvloop --http httptools --no-access-log`",
            lambda port, t: [f"{vbin}/uvicorn", "--workers", str(WORKERS), "--loop", "uvloop",
                             "--http", "httptools", "--no-access-log", "--log-level", "warning",
                             "--host", HOST, "--port", str(port), "--app-dir", APPS_DIR, t],
            interfaces=("asgi",)))
    else:
        skipped.append("uvicorn")
    if available["granian"]:
        servers.append(Server(
            "granian-asgi", f"`granian --interface asgi --workers {WORKERS} --http 1 --no-ws "
                            "--loop uvloop --no-access-log` (1 runtime thread)",
            lambda port, t: [f"{vbin}/granian", "--interface", "asgi", "--workers", str(WORKERS),
                             "--http", "1", "--no-ws", "--loop", "uvloop", "--no-access-log",
                             "--log-level", "warning", "--host", HOST, "--port", str(port),
                             "--working-dir", APPS_DIR, t],
            interfaces=("asgi",)))
    else:
        skipped.append("granian-asgi")
    for name in ("fastwsgi", "fastpysgi"):
        if available[name]:
            servers.append(Server(
                name, f"`{name}.run(app, workers={WORKERS})` via bench/fastrun.py: the parent imports "
                      f"the app and forks {WORKERS} children, each with its own SO_REUSEPORT listener",
                lambda port, t, name=name: [venv_python(), os.path.join(BENCH, "fastrun.py"), name, t,
                                            HOST, str(port), str(WORKERS)]))
        else:
            skipped.append(name)
    return servers, skipped


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_env(extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("GUNICORN_CMD_ARGS", "UNITCORN_CMD_ARGS", "WEB_CONCURRENCY", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def taskset(cpus, argv):
    """argv run on `cpus` (None: unpinned). taskset execs the command, and fork() passes the
    affinity on, so a server's master, workers and any other descendants all stay there."""
    return argv if cpus is None else ["taskset", "-c", cpus, *argv]


def start_server(server, app, logdir, cpus):
    port = free_port()
    log_path = os.path.join(logdir, f"{server.name}-{app}.log")
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(taskset(cpus, server.argv(port, APPS[app][0])), cwd=APPS_DIR,
                                env=server_env(server.env),
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Running(server, app, port, proc, log_path)


def wait_ready(running, timeout=30.0):
    """Poll GET / until it answers 200; return None when ready, else a reason."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            return f"exited with {running.proc.returncode}: {log_tail(running.log_path)}"
        try:
            conn = http.client.HTTPConnection(HOST, running.port, timeout=5)
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return None
            last = f"status {resp.status}"
        except (OSError, http.client.HTTPException) as e:
            last = repr(e)
        time.sleep(0.2)
    return f"not ready after {timeout:.0f}s ({last}): {log_tail(running.log_path)}"


def log_tail(path, chars=300):
    try:
        with open(path, errors="replace") as f:
            return " ".join(f.read()[-chars:].split())
    except OSError:
        return ""


def read_proc_stat(pid):
    """(state, ppid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def process_tree(root):
    """The root pid and all its descendants, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_proc_stat(int(entry))
            if stat:
                children.setdefault(stat[1], []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def status_field(path, key):
    """The first word after `key:` in a /proc status-like file, or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split()[1]
    except (OSError, IndexError):
        pass
    return None


def tree_memory_mib(root):
    """(RSS, PSS) in MiB summed over the tree: VmRSS from status, Pss from smaps_rollup. RSS
    counts pages shared by the master and its forked workers once per process; PSS splits them."""
    rss = pss = 0
    for pid in process_tree(root):
        rss += int(status_field(f"/proc/{pid}/status", "VmRSS") or 0)
        pss += int(status_field(f"/proc/{pid}/smaps_rollup", "Pss") or 0)
    return rss / 1024.0, pss / 1024.0


def cpu_ticks(pid):
    """(utime + stime, cutime + cstime) of a process in clock ticks, or None if it is gone.
    /proc/PID/stat's fields 14-17; utime/stime cover all the process's threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): field N is fields[N - 3]
        return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
    except (OSError, IndexError, ValueError):
        return None


def context_switches(pid):
    """Voluntary + involuntary context switches summed over the process's live threads."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        for key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            total += int(status_field(f"/proc/{pid}/task/{tid}/status", key) or 0)
    return total


def tree_sample(root):
    """CPU ticks and context switches of the server's process tree, per pid and in total.

    total = sum over the tree of utime+stime+cutime+cstime. A child that exits during the run
    and is reaped by a process of the tree moves its time into that parent's cutime/cstime, so
    it is not lost; only a descendant reaped outside the tree (an orphan adopted by init) would
    be undercounted. None of the servers here does that: their workers live through a run."""
    per_pid, total, switches = {}, 0, 0
    for pid in process_tree(root):
        ticks = cpu_ticks(pid)
        if ticks is None:
            continue
        per_pid[pid] = ticks[0]
        total += ticks[0] + ticks[1]
        switches += context_switches(pid)
    return {"pids": per_pid, "ticks": total, "switches": switches}


def proc_stat_cpus():
    """{'cpu0': [user, nice, system, idle, iowait, irq, softirq, steal], ...} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                out[parts[0]] = [int(x) for x in parts[1:9]]
    return out


def core_usage(before, after, server_ticks, server_cpus):
    """Per run: the steal share over all cores, and the share of the server's core(s) taken by
    anything but the server (other jobs on the machine, interrupts), both in %."""
    steal = total = 0
    core_busy = core_total = 0
    mine = set(parse_cpu_list(server_cpus)) if server_cpus is not None else None
    for cpu, a in after.items():
        d = [x - y for x, y in zip(a, before.get(cpu, a))]
        steal += d[7]
        total += sum(d)
        if mine is not None and int(cpu[3:]) in mine:
            core_busy += sum(d) - d[3] - d[4]
            core_total += sum(d)
    usage = {"steal_pct": 100.0 * steal / total if total else 0.0}
    if mine is not None and core_total:
        usage["others_on_server_core_pct"] = max(0.0, 100.0 * (core_busy - server_ticks) / core_total)
    return usage


def parse_cpu_list(text):
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def tree_affinity(root):
    """{pid: Cpus_allowed_list} over the tree, to check that pinning took."""
    return {pid: status_field(f"/proc/{pid}/status", "Cpus_allowed_list") for pid in process_tree(root)}


def stop_server(running, grace=5.0):
    """SIGTERM the server's process group and tree; SIGKILL whatever is left after `grace`."""
    pids = process_tree(running.proc.pid)
    send_signal(running.proc.pid, pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        running.proc.poll()
        time.sleep(0.05)
    send_signal(running.proc.pid, pids, signal.SIGKILL)
    try:
        running.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(f"{running.server.name}: pid {running.proc.pid} did not exit")


def send_signal(pgid, pids, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def alive(pid):
    stat = read_proc_stat(pid)
    return stat is not None and stat[0] != "Z"


# ---------------------------------------------------------------- wrk

def run_wrk(port, connections, duration, threads, cpus):
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "2s", "--latency",
            f"http://{HOST}:{port}/"]
    try:
        r = run_cmd(taskset(cpus, argv), duration + 60)
    except subprocess.TimeoutExpired:
        return {"error": "wrk did not finish"}
    if r.returncode != 0:
        return {"error": f"wrk failed: {(r.stderr or r.stdout).strip()[-200:]}"}
    return parse_wrk(r.stdout)


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def parse_latency_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(out):
    """requests/s, p50/p99 in ms and the error count from wrk --latency output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"^\s*(\d+) requests in ", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99 and requests):
        return {"error": "unparsable wrk output: " + " ".join(out.split())[-200:]}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    kinds = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()))) if sock else {}
    kinds["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return {"rps": float(rps.group(1)), "requests": int(requests.group(1)), "p50": parse_latency_ms(p50.group(1)),
            "p99": parse_latency_ms(p99.group(1)), "errors": sum(kinds.values()), "error_kinds": kinds}


# ---------------------------------------------------------------- the run

def measure_group(server, app, conn_order, args, logdir, running_list):
    """Start one server on one app, warm it up, load it at each connection count; return results."""
    out = {}
    server_cpus, wrk_cpus = (args.server_cpus, args.wrk_cpus) if args.pin else (None, None)
    running = start_server(server, app, logdir, server_cpus)
    running_list.append(running)
    try:
        problem = wait_ready(running)
        if problem:
            return {c: {"error": "did not start: " + problem} for c in conn_order}
        run_wrk(running.port, conn_order[0], args.warmup, args.wrk_threads, wrk_cpus)
        if args.pin:
            wrong = {pid: cpus for pid, cpus in tree_affinity(running.proc.pid).items()
                     if cpus != args.server_cpus}
            if wrong:
                log(f"  not pinned to {args.server_cpus}: {wrong}")
        for conns in conn_order:
            stat0, tree0 = proc_stat_cpus(), tree_sample(running.proc.pid)
            res = run_wrk(running.port, conns, args.duration, args.wrk_threads, wrk_cpus)
            tree1, stat1 = tree_sample(running.proc.pid), proc_stat_cpus()
            if running.proc.poll() is not None:
                res = {"error": f"server exited with {running.proc.returncode}: {log_tail(running.log_path)}"}
            if "error" not in res:
                ticks = tree1["ticks"] - tree0["ticks"]
                res["cpu_s"] = ticks / CLK_TCK
                res["cpu_us"] = 1e6 * res["cpu_s"] / res["requests"] if res["requests"] else float("nan")
                res["switches"] = (tree1["switches"] - tree0["switches"]) / max(res["requests"], 1)
                # each process's share of the tree's CPU (master, workers, ...), by pid
                res["cpu_by_pid"] = {str(pid): (t - tree0["pids"].get(pid, 0)) / CLK_TCK
                                     for pid, t in tree1["pids"].items()}
                res.update(core_usage(stat0, stat1, ticks, server_cpus))
                res["rss"], res["pss"] = tree_memory_mib(running.proc.pid)
            out[conns] = res
        return out
    finally:
        stop_server(running)
        running_list.remove(running)


def rotated(items, k):
    k %= max(len(items), 1)
    return items[k:] + items[:k]


def run_rounds(servers, apps, conns, args, running_list, results, rounds_meta):
    """Fill results[(server, app, conns)] with the list of per-round result dicts.

    Each round takes the apps in turn and runs every server once on each, the servers' order
    rotated by one between rounds (so no server always follows the same one), and the
    connection counts' order reversed every other round."""
    logdir = os.path.join(RESULTS, "logs")
    os.makedirs(logdir, exist_ok=True)
    for rnd in range(args.rounds):
        groups = [(s, a) for a in apps for s in rotated(servers, rnd) if APPS[a][2] in s.interfaces]
        conn_order = conns if rnd % 2 == 0 else conns[::-1]
        rounds_meta.append({"round": rnd + 1, "load_at_start": os.getloadavg()})
        log(f"round {rnd + 1}/{args.rounds}: load average {load_str()}")
        for i, (server, app) in enumerate(groups, 1):
            log(f"round {rnd + 1}/{args.rounds} [{i}/{len(groups)}] {server.name} {app}")
            for c, res in measure_group(server, app, conn_order, args, logdir, running_list).items():
                res["round"] = rnd + 1
                results.setdefault((server.name, app, c), []).append(res)
                if "error" in res:
                    log(f"  -c{c}: {res['error']}")
                else:
                    shares = sorted(res["cpu_by_pid"].values(), reverse=True)
                    split = "/".join(f"{100 * x / res['cpu_s']:.0f}" for x in shares) if res["cpu_s"] else "-"
                    others = res.get("others_on_server_core_pct")
                    log(f"  -c{c}: {res['cpu_us']:.1f} us/req {res['rps']:.0f} req/s p50 {res['p50']:.2f} ms "
                        f"p99 {res['p99']:.2f} ms errors {res['errors']} rss {res['rss']:.1f} MiB "
                        f"pss {res['pss']:.1f} MiB; {res['switches']:.2f} ctx sw/req; CPU split % {split}; "
                        f"steal {res['steal_pct']:.1f}%"
                        + (f"; others on the server's core {others:.1f}%" if others is not None else ""))


def load_str():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def spread(values):
    """(median, min, max, (max - min) / median in %)."""
    med = statistics.median(values)
    return med, min(values), max(values), (100.0 * (max(values) - min(values)) / med if med else 0.0)


def summarize(runs):
    """Medians and spreads over the successful rounds (errors summed), or the first error if
    none succeeded."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "not run"}
    out = {key: statistics.median(r[key] for r in ok) for key in ("p50", "p99", "rss", "pss", "switches")}
    others = [r["others_on_server_core_pct"] for r in ok if "others_on_server_core_pct" in r]
    out["others"] = statistics.median(others) if others else None
    out["cpu"], out["rps_spread"] = spread([r["cpu_us"] for r in ok]), spread([r["rps"] for r in ok])
    out.update(rps=out["rps_spread"][0], cpu_us=out["cpu"][0], errors=sum(r["errors"] for r in ok),
               rounds=len(ok), failed=len(runs) - len(ok), error_kinds=sum_kinds(r["error_kinds"] for r in ok),
               by_round={r["round"]: r for r in ok})
    return out


def sum_kinds(dicts):
    total = {}
    for d in dicts:
        for kind, n in d.items():
            total[kind] = total.get(kind, 0) + n
    return total


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "nproc": os.cpu_count(), "cpu": model, "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}


NOISY_PCT = 10.0  # a spread ((max - min) / median) above this is flagged in the table


def render_table(results, servers, apps, conns, header_lines):
    lines = list(header_lines)
    noisy = False
    for app in apps:
        lines += ["", f"### {app}: {APPS[app][1]}", "",
                  "| conns | server | CPU µs/req (min–max) | spread | vs unitcorn | req/s (min–max) | spread "
                  "| vs unitcorn | p50 ms | p99 ms | errors | RSS MiB | PSS MiB | ctx sw/req | others on core % |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        summary = []
        for c in conns:
            for server in servers:
                if APPS[app][2] not in server.interfaces:
                    continue
                base = summarize(results.get((baseline(server.name), app, c), []))
                row, flagged = render_row(c, server.name, summarize(results.get((server.name, app, c), [])), base)
                lines.append(row)
                noisy |= flagged
            summary += summary_lines(results, servers, app, c)
        lines += [""] + summary
    if noisy:
        lines += ["", f"(!) spread over {NOISY_PCT:.0f}% of the median: that figure moved a lot between "
                      "rounds (a busy machine); compare it with care."]
    return "\n".join(lines) + "\n"


def fmt_spread(sp, digits):
    med, lo, hi, pct = sp
    flag = " (!)" if pct > NOISY_PCT else ""
    return f"{med:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})", f"{pct:.0f}%{flag}", pct > NOISY_PCT


def render_row(conns, name, s, base):
    """One table row, and whether a spread in it is flagged."""
    if s.get("error") == "not run":
        return f"| {conns} | {name} | not run |" + " |" * 12, False
    if "error" in s:
        return f"| {conns} | {name} | failed: {s['error'][:120].replace('|', '/')} |" + " |" * 12, False
    cpu_ratio = f"{s['cpu_us'] / base['cpu_us']:.2f}" if base.get("cpu_us") else "n/a"
    rps_ratio = f"{s['rps'] / base['rps']:.2f}" if base.get("rps") else "n/a"
    note = f" ({s['failed']} round(s) failed)" if s["failed"] else ""
    kinds = ", ".join(f"{k} {n}" for k, n in s["error_kinds"].items() if n)
    errors = f"{s['errors']} ({kinds})" if kinds else "0"
    cpu, cpu_pct, cpu_noisy = fmt_spread(s["cpu"], 1)
    rps, rps_pct, rps_noisy = fmt_spread(s["rps_spread"], 0)
    return (f"| {conns} | {name} | {cpu}{note} | {cpu_pct} | {cpu_ratio} | {rps} | {rps_pct} | {rps_ratio} | "
            f"{s['p50']:.2f} | {s['p99']:.2f} | {errors} | {s['rss']:.1f} | {s['pss']:.1f} | "
            f"{s['switches']:.2f} | {'' if s['others'] is None else format(s['others'], '.0f')} |"), \
        cpu_noisy or rps_noisy


def cpu_ratio(a, b):
    """'0.83x (rounds 0.80–0.86)': a's median CPU per request over b's, and the range of the
    same ratio within each round both ran in (the pairs share the machine's state)."""
    paired = [a["by_round"][r]["cpu_us"] / b["by_round"][r]["cpu_us"]
              for r in a["by_round"] if r in b["by_round"] and b["by_round"][r]["cpu_us"]]
    rounds = f" (rounds {min(paired):.2f}–{max(paired):.2f})" if len(paired) > 1 else ""
    return f"{a['cpu_us'] / b['cpu_us']:.2f}x{rounds}"


def summary_lines(results, servers, app, conns):
    """CPU per request of unitcorn against fastpysgi and the best peer (lowest CPU per request
    among the other servers on this app), and of the Python package against the binary."""
    names = [s.name for s in servers if APPS[app][2] in s.interfaces]
    got = {n: summarize(results.get((n, app, conns), [])) for n in names}
    got = {n: v for n, v in got.items() if "cpu_us" in v}
    out = []
    for base in sorted({baseline(n) for n in got}):
        if base not in got:
            continue
        b = got[base]
        peers = {n: v for n, v in got.items() if baseline(n) == base and not n.startswith("unitcorn")}
        parts = []
        if "fastpysgi" in peers:
            f = peers["fastpysgi"]
            parts.append(f"{cpu_ratio(b, f)} fastpysgi's ({b['cpu_us']:.1f} vs {f['cpu_us']:.1f} µs)")
        if peers:
            best = min(peers, key=lambda n: peers[n]["cpu_us"])
            parts.append(f"{cpu_ratio(b, peers[best])} the best peer's ({best}, {peers[best]['cpu_us']:.1f} µs)")
        for name in ("unitcorn-wheel", "unitcorn-wheel-native"):
            if base == "unitcorn" and name in got:
                parts.append(f"{name}: {cpu_ratio(got[name], b)} unitcorn's")
        if base == "unitcorn" and "unitcorn-wheel" in got and "unitcorn-wheel-native" in got:
            parts.append("abi3 cost (unitcorn-wheel / unitcorn-wheel-native): "
                         + cpu_ratio(got["unitcorn-wheel"], got["unitcorn-wheel-native"]))
        if parts:
            out.append(f"- **{app} -c{conns}**, CPU per request: {base} {parts[0]}"
                       + "".join("; " + p for p in parts[1:]))
    return out


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "nproc": os.cpu_count(), "cpu": model}


def header(args, servers, skipped, unitcorn_note, conns, loads):
    m = machine_info()
    cmd = " ".join([sys.executable if sys.argv[0].endswith(".py") else ""] + sys.argv).strip()
    placement = (f"pinned with taskset: the server's whole process tree on CPU {args.server_cpus}, "
                 f"wrk on CPU {args.wrk_cpus}" if args.pin else "not pinned (--no-pin): the scheduler "
                 "places the server and wrk")
    lines = ["## unitcorn comparative benchmark", "",
             f"- date: {m['date']}; nproc: {m['nproc']}; CPU: {m['cpu']}",
             f"- load average (1, 5, 15 min) before the first round: {loads['before']}; after the last: "
             f"{loads['after']}; at each round's start: " + ", ".join(loads["rounds"]),
             f"- command: `{cmd}`",
             f"- load: `wrk -t{args.wrk_threads} -c{{{','.join(map(str, conns))}}} -d{args.duration}s "
             f"--timeout 2s --latency` on 127.0.0.1, after a {args.warmup}s warm-up; {placement}",
             f"- {args.rounds} round(s), interleaved: each takes the apps in turn and runs every server on "
             "each once, started afresh, the servers' order rotated by one between rounds",
             "- CPU µs/req: utime+stime (+ cutime+cstime) summed over the server's process tree (master, "
             "workers, all descendants) from right before to right after the wrk run, over the requests wrk "
             "completed; median over rounds, (min–max), spread = (max − min) / median",
             "- req/s likewise; p50, p99, RSS, PSS and context switches per request are medians over rounds; "
             "errors (socket connect/read/write/timeout + non-2xx) summed over rounds; RSS = sum of VmRSS, "
             "PSS = sum of smaps_rollup's Pss over the tree after the load; 'vs unitcorn' = this server's "
             "figure / unitcorn's (-gevent's for the gevent servers); 'others on core' = median share "
             "of the server's core(s) busy with anything but the server during the run (other jobs, "
             "interrupts): the higher, the more the server's CPU per request is inflated by sharing its "
             "core (caches, switches)",
             f"- unitcorn: {unitcorn_note}", "- servers (2 worker processes each):"]
    for s in servers:
        version = "" if s.name.startswith("unitcorn") else " " + package_version(s.name.split("-")[0])
        if s.name == "unitcorn" and importable("uvloop"):
            version = f" (ASGI on uvloop {package_version('uvloop')})"
        lines.append(f"  - {s.name}{version}: {s.describe}")
    for name in skipped:
        lines.append(f"  - {name}: not available, skipped")
    return lines


def pick(names, wanted, what, default=None):
    if not wanted:
        return list(default or names)
    chosen = [n for n in wanted.split(",") if n]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(names)})")
    return chosen


def prepare_wheel_servers(wanted, apps, from_head):
    """{name: (venv or None, description)} for the unitcorn-wheel* servers asked for."""
    out = {}
    packages = set(NEEDS["unitcorn"]) | ({"flask"} if "flask" in apps else set())
    head = git("rev-parse", "HEAD")
    if "unitcorn-wheel" in wanted:
        if from_head:
            wheel, note = build_wheel_from_head(True, head)
            note = f"{os.path.basename(wheel)} (sha256 {sha256(wheel)[:12]}), {note}" if wheel else note
        else:
            wheel, note = find_abi3_wheel()
        venv, problem = wheel_venv("wheel", wheel, packages) if wheel else (None, note)
        out["unitcorn-wheel"] = (venv, f"the abi3 wheel {note}" if venv else problem)
    if "unitcorn-wheel-native" in wanted:
        wheel, note = build_wheel_from_head(False, head)
        venv, problem = wheel_venv("native", wheel, packages) if wheel else (None, note)
        out["unitcorn-wheel-native"] = (
            venv, f"a version-specific wheel, {os.path.basename(wheel)} (sha256 {sha256(wheel)[:12]}), {note}"
            if venv else problem)
    return out


def check_pinning(args):
    if not args.pin:
        return
    allowed = os.sched_getaffinity(0)
    for what, cpus in (("--server-cpus", args.server_cpus), ("--wrk-cpus", args.wrk_cpus)):
        try:
            missing = set(parse_cpu_list(cpus)) - allowed
        except ValueError:
            sys.exit(f"{what} {cpus}: not a CPU list")
        if missing:
            sys.exit(f"{what} {cpus}: CPU(s) {sorted(missing)} not available here (have {sorted(allowed)}); "
                     "pick others or run with --no-pin")
    if set(parse_cpu_list(args.server_cpus)) & set(parse_cpu_list(args.wrk_cpus)):
        log("warning: the server and wrk share CPUs")
    if not shutil.which("taskset"):
        sys.exit("taskset is missing (util-linux); run with --no-pin")


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    check_pinning(args)
    ensure_wrk()
    wanted = pick(SERVER_NAMES, args.servers, "server", DEFAULT_SERVERS)
    apps = pick(list(APPS), args.apps, "app", DEFAULT_APPS)
    packages = {pkg for name in wanted for pkg in NEEDS[name]}
    if "flask" in apps:
        packages.add("flask")
    available = ensure_venv(packages)
    uses_unitcorn = "unitcorn" in wanted or "unitcorn-gevent" in wanted
    unitcorn, unitcorn_note = find_unitcorn() if uses_unitcorn else (None, "not selected")
    servers, skipped = server_list(unitcorn, available, prepare_wheel_servers(wanted, apps, args.wheel_from_head))
    servers = [s for s in servers if s.name in wanted]
    skipped = [n for n in skipped if n.split(" ")[0] in wanted]
    if not available["flask"] and "flask" in apps:
        log("flask is not installed: skipping the flask app")
        apps.remove("flask")
    for name in skipped:
        log(f"skipped: {name}")
    if args.setup_only:
        log("set up: " + ", ".join(s.name for s in servers))
        return
    conns = [int(c) for c in args.connections.split(",")]
    os.makedirs(RESULTS, exist_ok=True)
    running, results, rounds_meta, interrupted = [], {}, [], False
    loads = {"before": load_str()}
    try:
        run_rounds(servers, apps, conns, args, running, results, rounds_meta)
    except KeyboardInterrupt:
        log("interrupted: stopping servers; the table below holds the rounds done so far")
        interrupted = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for r in list(running):
            stop_server(r)
    loads["after"] = load_str()
    loads["rounds"] = [" ".join(f"{x:.2f}" for x in r["load_at_start"]) for r in rounds_meta]
    table = render_table(results, servers, apps, conns,
                         header(args, servers, skipped, unitcorn_note, conns, loads))
    print(table)
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(table)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        raw = {f"{s}|{a}|{c}": v for (s, a, c), v in results.items()}
        raw["_meta"] = {"argv": sys.argv, "pin": args.pin, "server_cpus": args.server_cpus,
                        "wrk_cpus": args.wrk_cpus, "clk_tck": CLK_TCK, "loads": loads, "rounds": rounds_meta}
        json.dump(raw, f, indent=1)
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
