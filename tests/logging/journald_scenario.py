"""One journald scenario of test_journald.py, run as root in a private mount namespace:

    unshare --mount --propagation private -- python journald_scenario.py SPEC.json OUT.json

It puts fresh tmpfs over /run/systemd, /run/log and /var/log/journal (so only this
namespace sees them), starts a private systemd-journald unless the spec says not to, starts
unitcorn with the spec's arguments and stdio, makes the spec's requests, stops the server
with QUIT, then reads the journal with journalctl and writes what it saw to OUT.json.

SPEC keys:
    args       unitcorn's arguments (the app included); -b 127.0.0.1:PORT and --chdir to
               tests/apps are added
    journald   start systemd-journald (default true)
    stdio      "files": stdout and stderr to one file; "stream": to a journal stream
               connection, as systemd's StandardOutput=journal does
    journal_stream  "stdio": set JOURNAL_STREAM to the DEV:INODE of that stdio (what systemd
               does); "elsewhere": to a journal stream that is not our stdio (a child whose
               output was redirected); "none": leave it unset
    unit       run the server in the cgroup <cgroup2 root>/unitcorn-test-<pid>.slice/<unit>,
               so journald attributes its entries to that unit (journalctl -u)
    requests   [[path, {header: value}], ...], each on a new connection
    expect_exit  the server is expected to exit by itself (no requests are made)
    serving_workers  before the requests, call /whoami (journalapp) until this many distinct
               workers have answered (at most 300 calls)
    wait_for_message  after the requests, wait (at most 15 s) for an entry whose MESSAGE
               holds this text before stopping the server
    queries    {name: [journalctl match arguments]}; each answer is in OUT["queries"][name]

Every wait is bounded; journald and every server process are killed by pid at the end.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # tests/, for harness
from harness import (APPS, UNITCORN_BIN, Conn, ConnClosed, base_env,  # noqa: E402
                     build_request, descendants, free_port, kill_tree, wait_for)

JOURNAL_DIRS = ("/run/systemd", "/run/log", "/var/log/journal")
NATIVE_SOCKET = "/run/systemd/journal/socket"
STDOUT_SOCKET = "/run/systemd/journal/stdout"
JOURNALD = "/lib/systemd/systemd-journald"


def mount_tmpfs():
    for d in JOURNAL_DIRS:
        if not os.path.isdir(d):
            raise SystemExit("missing %s: cannot hide it under a tmpfs" % d)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", d], check=True,
                       timeout=10)
    os.makedirs("/run/systemd/journal", exist_ok=True)


def start_journald():
    proc = subprocess.Popen([JOURNALD], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_for(lambda: os.path.exists(NATIVE_SOCKET) and os.path.exists(STDOUT_SOCKET), 10):
        proc.kill()
        raise SystemExit("systemd-journald did not bind its sockets within 10 s")
    return proc


def journal_stream(identifier):
    """A connection to journald's stdout stream, set up as systemd does for a service."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(STDOUT_SOCKET)
    s.shutdown(socket.SHUT_RD)
    # identifier, unit id, priority, level prefix, forward to syslog / kmsg / console
    s.sendall(("%s\n\n6\n1\n0\n0\n0\n" % identifier).encode())
    return s


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] == "cgroup2":
                return pre.split()[4]
    raise SystemExit("no cgroup2 mount: cannot place the server in a unit's cgroup")


def query(args):
    out = subprocess.run(["journalctl", "--no-pager", "-D", "/run/log/journal", "-o", "json",
                          "-a"] + list(args), capture_output=True, text=True, timeout=30)
    entries = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    # journald also reads /dev/kmsg: the kernel's lines are not ours.
    return [e for e in entries if e.get("_TRANSPORT") != "kernel"]


def request(addr, path, headers):
    with Conn(addr, timeout=15) as c:
        c.send(build_request("GET", path, headers=list(headers.items()), close=True))
        r = c.read_response()
        return {"path": path, "status": r.status, "body": r.text[:200]}


def main(spec_path, out_path):
    spec = json.loads(Path(spec_path).read_text())
    result = {"requests": [], "queries": {}}
    mount_tmpfs()
    journald = start_journald() if spec.get("journald", True) else None
    workdir = Path(out_path).parent
    server = None
    server_pids = set()
    cgroup = None
    stdio = None
    try:
        port = free_port()
        addr = ("127.0.0.1", port)
        # Run from the scratch dir (--chdir finds the app): a relative log path that a
        # regression would open as a file lands there, not in the checkout.
        cmd = [str(UNITCORN_BIN), "-b", "127.0.0.1:%d" % port, "--chdir", str(APPS)] + spec["args"]
        env = base_env()
        if spec.get("stdio", "files") == "stream":
            stdio = journal_stream("unitcorn")
        else:
            stdio = open(workdir / "server.out", "wb")
        named = {"stdio": lambda: stdio, "elsewhere": lambda: journal_stream("elsewhere"),
                 "none": lambda: None}[spec.get("journal_stream", "none")]()
        if named is not None:
            st = os.fstat(named.fileno())
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        preexec = None
        if spec.get("unit"):
            cgroup = Path(cgroup2_root()) / ("unitcorn-test-%d.slice" % os.getpid()) / spec["unit"]
            cgroup.mkdir(parents=True)
            procs = str(cgroup / "cgroup.procs")

            def preexec():
                with open(procs, "w") as f:
                    f.write("0")
        server = subprocess.Popen(cmd, env=env, cwd=str(workdir), stdin=subprocess.DEVNULL,
                                  stdout=stdio.fileno(), stderr=stdio.fileno(),
                                  preexec_fn=preexec)
        result["master_pid"] = server.pid
        server_pids.add(server.pid)
        if spec.get("expect_exit"):
            try:
                result["rc"] = server.wait(20)
            except subprocess.TimeoutExpired:
                result["rc"] = None
        else:
            def ready():
                if server.poll() is not None:
                    return True
                try:
                    return request(addr, "/", {})
                except (OSError, ConnClosed):
                    return None
            wait_for(ready, 30, interval=0.1)
            if server.poll() is not None:
                result["rc"] = server.returncode
            else:
                # Every worker serves before the test starts (a worker still importing the
                # app when QUIT comes is another matter than logging).
                serving = set()
                want = spec.get("serving_workers", 0)
                for _ in range(300 if want else 0):
                    serving.add(int(request(addr, "/whoami", {})["body"]))
                    if len(serving) >= want:
                        break
                    time.sleep(0.05)
                result["serving_workers"] = sorted(serving)
                server_pids.update(descendants(server.pid))
                for path, headers in spec.get("requests", []):
                    result["requests"].append(request(addr, path, headers))
                wanted = spec.get("wait_for_message")
                if wanted and journald is not None:
                    wait_for(lambda: any(wanted in (e.get("MESSAGE") or "")
                                         for e in query([])), 15, interval=0.2)
                server_pids.update(descendants(server.pid))
                result["worker_pids"] = sorted(server_pids - {server.pid})
                server.send_signal(signal.SIGQUIT)
                try:
                    result["rc"] = server.wait(20)
                except subprocess.TimeoutExpired:
                    result["rc"] = None
        if journald is not None:
            # journald writes an entry when it receives it; the stream side may lag a
            # little: read until two reads 0.2 s apart agree (at most 5 s).
            seen = None
            for _ in range(25):
                count = len(query([]))
                if count == seen:
                    break
                seen = count
                time.sleep(0.2)
            result["journal"] = query([])
            for name, args in spec.get("queries", {}).items():
                result["queries"][name] = query(args)
    finally:
        if server is not None:
            kill_tree(server.pid, server_pids | set(descendants(server.pid)))
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if stdio is not None:
            stdio.close()
        if journald is not None:
            journald.terminate()
            try:
                journald.wait(10)
            except subprocess.TimeoutExpired:
                journald.kill()
                journald.wait(10)
        if cgroup is not None:
            # Empty once every server process has exited (bounded wait), then removable.
            wait_for(lambda: not (cgroup / "cgroup.procs").read_text().strip(), 10)
            for d in (cgroup, cgroup.parent):
                try:
                    d.rmdir()
                except OSError as e:
                    result.setdefault("cleanup_errors", []).append("%s: %s" % (d, e))
        out = workdir / "server.out"
        result["output"] = out.read_text(errors="replace") if out.exists() else ""
        result["pids"] = sorted(server_pids) + ([journald.pid] if journald else [])
        Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
