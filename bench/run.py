#!/usr/bin/python3
"""Comparative benchmark: unitcorn against gunicorn, granian, fastwsgi and fastpysgi.

Every server runs with 2 worker processes on 127.0.0.1 and serves the apps in bench/apps/;
wrk loads each (server, app, connections) once per round, rounds interleaved, and the medians
over rounds are printed as a markdown table (also written to bench/results/latest.md).
Run: /usr/bin/python3 bench/run.py [--duration 10] [--rounds 3]   (see --help)
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
import time
from dataclasses import dataclass, field

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
APPS_DIR = os.path.join(BENCH, "apps")
VENV = os.path.join(BENCH, ".venv")
RESULTS = os.path.join(BENCH, "results")
HOST = "127.0.0.1"
WORKERS = 2
GTHREAD_THREADS = 4

APPS = {
    "hello": ("hello:app", "plain WSGI, b'Hello, World!' (13 B)"),
    "flask": ("flaskjson:app", "Flask `jsonify` of a 4-key dict"),
    "big": ("big:app", "1 MiB body, one bytes object"),
    "stream": ("stream:app", "generator of 100 x 1 KiB chunks (chunked)"),
    "sleep": ("sleep:app", "time.sleep(0.1) (gevent's under -k gevent), then 13 B"),
}
SERVER_NAMES = ["unitcorn", "gunicorn-sync", "gunicorn-gthread", "granian", "fastwsgi", "fastpysgi",
                "unitcorn-gevent", "gunicorn-gevent"]
# Run unless --servers / --apps name them: the greenlet servers and the app made for them.
DEFAULT_SERVERS = [n for n in SERVER_NAMES if not n.endswith("-gevent")]
DEFAULT_APPS = [a for a in APPS if a != "sleep"]
# pip package -> module to import to check it is there (gevent: both -k gevent workers;
# packaging: gunicorn's gevent worker, its gunicorn[gevent] extra)
PACKAGES = {"gunicorn": "gunicorn", "granian": "granian", "flask": "flask",
            "fastwsgi": "fastwsgi", "fastpysgi": "fastpysgi", "gevent": "gevent",
            "packaging": "packaging"}
GEVENT_CONNECTIONS = 1000


@dataclass
class Server:
    name: str
    describe: str
    argv: object          # function(port, target) -> list of str
    env: dict = field(default_factory=dict)


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
    p.add_argument("--rounds", type=int, default=3, help="rounds; each runs every combination once (3)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of wrk warm-up after each start (2)")
    p.add_argument("--connections", default="64,256", help="comma-separated wrk -c values (64,256)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (1: leave the 2nd core to the servers)")
    p.add_argument("--servers", default="", help="comma-separated servers of " + ",".join(SERVER_NAMES) +
                   " (default: all but the -gevent ones)")
    p.add_argument("--apps", default="", help="comma-separated subset of " + ",".join(APPS) +
                   " (default: all but sleep)")
    p.add_argument("--seed", type=int, default=None, help="seed of the shuffled order")
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


def venv_python():
    return os.path.join(VENV, "bin", "python")


def ensure_venv():
    """Create bench/.venv with /usr/bin/python3 and install what is missing; return {pkg: ok}."""
    if not os.path.exists(venv_python()):
        log("creating " + VENV)
        subprocess.run(["/usr/bin/python3", "-m", "venv", VENV], check=True, timeout=300)
    available = {}
    for pkg, module in PACKAGES.items():
        if not importable(module):
            log(f"pip install {pkg} ...")
            r = run_cmd([venv_python(), "-m", "pip", "install", "-q", pkg], 900)
            if r.returncode != 0:
                log(f"  {pkg} did not install: {r.stderr.strip()[-300:]}")
        available[pkg] = importable(module)
    return available


def importable(module):
    return run_cmd([venv_python(), "-c", f"import {module}"], 60).returncode == 0


def package_version(pkg):
    r = run_cmd([venv_python(), "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"], 60)
    return r.stdout.strip() if r.returncode == 0 else "?"


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


def server_list(unitcorn, available):
    """All servers that can run, and notes on the ones that cannot."""
    vbin = os.path.join(VENV, "bin")
    servers, skipped = [], []
    if unitcorn:
        servers.append(Server(
            "unitcorn", f"`unitcorn -w {WORKERS}` (defaults: --threads 1, no access log)",
            lambda port, t: [unitcorn, "-w", str(WORKERS), "-b", f"{HOST}:{port}",
                             "--chdir", APPS_DIR, "--log-level", "warning", t],
            {"VIRTUAL_ENV": VENV}))
    else:
        skipped.append("unitcorn")
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


def start_server(server, app, logdir):
    port = free_port()
    log_path = os.path.join(logdir, f"{server.name}-{app}.log")
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(server.argv(port, APPS[app][0]), cwd=APPS_DIR, env=server_env(server.env),
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


def vm_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mib(root):
    return sum(vm_rss_kib(pid) for pid in process_tree(root)) / 1024.0


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

def run_wrk(port, connections, duration, threads):
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "2s", "--latency",
            f"http://{HOST}:{port}/"]
    try:
        r = run_cmd(argv, duration + 60)
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
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        return {"error": "unparsable wrk output: " + " ".join(out.split())[-200:]}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    kinds = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()))) if sock else {}
    kinds["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return {"rps": float(rps.group(1)), "p50": parse_latency_ms(p50.group(1)),
            "p99": parse_latency_ms(p99.group(1)), "errors": sum(kinds.values()), "error_kinds": kinds}


# ---------------------------------------------------------------- the run

def measure_group(server, app, conn_order, args, logdir, running_list):
    """Start one server on one app, warm it up, load it at each connection count; return results."""
    out = {}
    running = start_server(server, app, logdir)
    running_list.append(running)
    try:
        problem = wait_ready(running)
        if problem:
            return {c: {"error": "did not start: " + problem} for c in conn_order}
        run_wrk(running.port, conn_order[0], args.warmup, args.wrk_threads)
        for conns in conn_order:
            res = run_wrk(running.port, conns, args.duration, args.wrk_threads)
            res["rss"] = tree_rss_mib(running.proc.pid)
            if running.proc.poll() is not None:
                res = {"error": f"server exited with {running.proc.returncode}: {log_tail(running.log_path)}"}
            out[conns] = res
        return out
    finally:
        stop_server(running)
        running_list.remove(running)


def run_rounds(servers, apps, conns, args, running_list, results):
    """Fill results[(server, app, conns)] with the list of per-round result dicts."""
    logdir = os.path.join(RESULTS, "logs")
    os.makedirs(logdir, exist_ok=True)
    rng = random.Random(args.seed)
    for rnd in range(args.rounds):
        groups = [(s, a) for s in servers for a in apps]
        rng.shuffle(groups)
        conn_order = conns if rnd % 2 == 0 else conns[::-1]
        for i, (server, app) in enumerate(groups, 1):
            log(f"round {rnd + 1}/{args.rounds} [{i}/{len(groups)}] {server.name} {app}")
            for c, res in measure_group(server, app, conn_order, args, logdir, running_list).items():
                results.setdefault((server.name, app, c), []).append(res)
                if "error" in res:
                    log(f"  -c{c}: {res['error']}")
                else:
                    log(f"  -c{c}: {res['rps']:.0f} req/s p50 {res['p50']:.2f} ms p99 {res['p99']:.2f} ms "
                        f"errors {res['errors']} rss {res['rss']:.1f} MiB")


def summarize(runs):
    """Medians over the successful rounds (errors summed), or the first error if none succeeded."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "not run"}
    return {"rps": statistics.median(r["rps"] for r in ok), "p50": statistics.median(r["p50"] for r in ok),
            "p99": statistics.median(r["p99"] for r in ok), "errors": sum(r["errors"] for r in ok),
            "rss": statistics.median(r["rss"] for r in ok), "rounds": len(ok), "failed": len(runs) - len(ok),
            "error_kinds": sum_kinds(r["error_kinds"] for r in ok)}


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


def render_table(results, servers, apps, conns, header_lines):
    lines = list(header_lines)
    for app in apps:
        lines += ["", f"### {app}: {APPS[app][1]}", "",
                  "| conns | server | req/s | vs unitcorn (-gevent) | p50 ms | p99 ms | errors | RSS MiB |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for c in conns:
            for server in servers:
                base = summarize(results.get((baseline(server.name), app, c), []))
                lines.append(render_row(c, server.name, summarize(results.get((server.name, app, c), [])), base))
    return "\n".join(lines) + "\n"


def render_row(conns, name, s, base):
    if s.get("error") == "not run":
        return f"| {conns} | {name} | not run | | | | | |"
    if "error" in s:
        return f"| {conns} | {name} | failed: {s['error'][:120].replace('|', '/')} | | | | | |"
    ratio = f"{s['rps'] / base['rps']:.2f}" if "rps" in base and base["rps"] > 0 else "n/a"
    note = f" ({s['failed']} round(s) failed)" if s["failed"] else ""
    kinds = ", ".join(f"{k} {n}" for k, n in s["error_kinds"].items() if n)
    errors = f"{s['errors']} ({kinds})" if kinds else "0"
    return (f"| {conns} | {name} | {s['rps']:.0f}{note} | {ratio} | {s['p50']:.2f} | {s['p99']:.2f} | "
            f"{errors} | {s['rss']:.1f} |")


def header(args, servers, skipped, unitcorn_note, conns):
    m = machine_info()
    cmd = " ".join([sys.executable if sys.argv[0].endswith(".py") else ""] + sys.argv).strip()
    lines = ["## unitcorn comparative benchmark", "",
             f"- date: {m['date']}; nproc: {m['nproc']}; CPU: {m['cpu']}; load average at the end: {m['load']}",
             f"- command: `{cmd}`",
             f"- load: `wrk -t{args.wrk_threads} -c{{{','.join(map(str, conns))}}} -d{args.duration}s "
             f"--timeout 2s --latency` on 127.0.0.1, after a {args.warmup}s warm-up; {args.rounds} round(s), "
             "each running every (server, app, connections) once in shuffled order, every server started "
             "afresh for each app in each round",
             "- req/s, p50, p99 and RSS are medians over rounds; errors (socket connect/read/write/timeout "
             "+ non-2xx) summed over rounds; RSS = sum of VmRSS over the server's process tree after the load",
             f"- unitcorn: {unitcorn_note}", "- servers (2 worker processes each):"]
    for s in servers:
        version = "" if s.name.startswith("unitcorn") else " " + package_version(s.name.split("-")[0])
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


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    ensure_wrk()
    available = ensure_venv()
    wanted = pick(SERVER_NAMES, args.servers, "server", DEFAULT_SERVERS)
    uses_unitcorn = any(n.startswith("unitcorn") for n in wanted)
    unitcorn, unitcorn_note = find_unitcorn() if uses_unitcorn else (None, "not selected")
    servers, skipped = server_list(unitcorn, available)
    servers = [s for s in servers if s.name in wanted]
    skipped = [n for n in skipped if n in wanted]
    apps = pick(list(APPS), args.apps, "app", DEFAULT_APPS)
    if not available["flask"] and "flask" in apps:
        log("flask is not installed: skipping the flask app")
        apps.remove("flask")
    conns = [int(c) for c in args.connections.split(",")]
    os.makedirs(RESULTS, exist_ok=True)
    running, results, interrupted = [], {}, False
    try:
        run_rounds(servers, apps, conns, args, running, results)
    except KeyboardInterrupt:
        log("interrupted: stopping servers; the table below holds the rounds done so far")
        interrupted = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for r in list(running):
            stop_server(r)
    table = render_table(results, servers, apps, conns, header(args, servers, skipped, unitcorn_note, conns))
    print(table)
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(table)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump({f"{s}|{a}|{c}": v for (s, a, c), v in results.items()}, f, indent=1)
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
