"""Client side of tests/systemd/test_real_systemd.py and tests/packaging/test_packages.py,
run INSIDE the systemd-nspawn container (its network is private, and the service's socket
lives in the container's /run).

    SOCKET is a unix socket path or tcp:HOST:PORT.

    python3 systemd_client.py get SOCKET PATH [TIMEOUT]
        one GET on a fresh connection; prints JSON {status, body, headers} (or {error})
    python3 systemd_client.py tree PID
        PID and its descendants, as the container sees them; prints JSON
        [{pid, ppid, uid, state, comm}]
    python3 systemd_client.py load SOCKET PROGRESS_FILE STOP_FILE MAX_SECONDS MAX_REQUESTS
        harness.Load (keep-alive, fresh and slow connections) until STOP_FILE exists,
        MAX_SECONDS pass or MAX_REQUESTS succeed; rewrites PROGRESS_FILE with the counts
        every 0.1 s; prints the result as JSON on stdout.

Only the standard library and harness.py (copied next to this file) are used: the
container runs the host's /usr/bin/python3.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Conn, ConnClosed, Load, build_request  # noqa: E402

PROGRESS_EVERY = 0.1     # seconds between rewrites of the progress file


def address(where):
    """tcp:HOST:PORT -> (HOST, PORT); anything else is a unix socket path."""
    if where.startswith("tcp:"):
        host, _, port = where[len("tcp:"):].rpartition(":")
        return (host, int(port))
    return where


def get(sock, path, timeout=10.0):
    try:
        with Conn(address(sock), timeout=timeout) as c:
            c.send(build_request("GET", path, close=True))
            r = c.read_response(timeout=timeout)
    except (OSError, ConnClosed) as e:
        return {"error": repr(e)}
    return {"status": r.status, "body": r.body.decode("latin-1"), "complete": r.complete,
            "headers": r.headers}


def tree(root):
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            with open("/proc/%s/status" % name) as f:
                status = f.read()
        except OSError:
            continue                 # exited meanwhile
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        uid = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("Uid:"))
        procs[int(name)] = {"pid": int(name), "ppid": int(rest[1]), "state": rest[0],
                            "uid": uid, "comm": comm}
    out, todo = [], [root]
    while todo and len(out) < 10000:
        pid = todo.pop()
        if pid in procs:
            out.append(procs[pid])
            todo.extend(p for p, info in procs.items() if info["ppid"] == pid)
    return out


def load(sock, progress_file, stop_file, max_seconds, max_requests):
    t0 = time.monotonic()
    stopped_by = "max_seconds"
    with Load(address(sock), keepalive=2, fresh=2, slow=1, path="/pid", slow_path="/sleep?s=0.3",
              timeout=10.0) as ld:
        while time.monotonic() - t0 < max_seconds:
            with ld._lock:
                progress = {"ok": ld.ok, "failed": len(ld.failures),
                            "pids": {str(p): n for p, n in ld.pids.items()}}
            tmp = progress_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(progress, f)
            os.replace(tmp, progress_file)
            if os.path.exists(stop_file):
                stopped_by = "stop_file"
                break
            if ld.ok >= max_requests:
                stopped_by = "max_requests"
                break
            time.sleep(PROGRESS_EVERY)
    return {"ok": ld.ok, "failures": ld.failures, "retried": ld.retried,
            "retried_reset": ld.retried_reset,
            "pids": {str(p): n for p, n in ld.pids.items()},
            "first_seen": {str(p): t for p, t in ld.first_seen.items()},
            "last_seen": {str(p): t for p, t in ld.last_seen.items()},
            "seconds": round(time.monotonic() - t0, 3), "stopped_by": stopped_by,
            "summary": ld.summary()}


def main(argv):
    cmd = argv[1]
    if cmd == "get":
        result = get(argv[2], argv[3], float(argv[4]) if len(argv) > 4 else 10.0)
    elif cmd == "tree":
        result = tree(int(argv[2]))
    elif cmd == "load":
        result = load(argv[2], argv[3], argv[4], float(argv[5]), int(argv[6]))
    else:
        sys.exit("unknown command %r" % cmd)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
