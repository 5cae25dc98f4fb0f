"""Shared machinery of the integration tests: start the real server, talk raw HTTP, read /proc.

Environment:
    UNITCORN_BIN   the binary under test (default <repo>/target/release/unitcorn)
    TEST_SERVER    "unitcorn" (default) or "gunicorn": run the HTTP-level tests against the
                   venv's gunicorn (gthread worker, same flags) to validate the tests themselves
    TEST_VENV      the venv the apps use (default <repo>/.venv-test)

Every wait here is bounded in time; every process started is killed (its whole process
group and every descendant seen) when its test ends.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
APPS = TESTS / "apps"
VENV = Path(os.environ.get("TEST_VENV", str(REPO / ".venv-test")))
SERVER_KIND = os.environ.get("TEST_SERVER", "unitcorn")
UNITCORN_BIN = Path(os.environ.get("UNITCORN_BIN", str(REPO / "target" / "release" / "unitcorn")))
IS_GUNICORN = SERVER_KIND == "gunicorn"

# Environment variables that would change what the server does, removed from every child.
_SCRUB = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "WEB_CONCURRENCY", "UNITCORN_CMD_ARGS",
          "GUNICORN_CMD_ARGS", "SCRIPT_NAME", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
          "NOTIFY_SOCKET", "JOURNAL_STREAM", "PYTHONSTARTUP", "PORT",
          "FORWARDED_ALLOW_IPS")


# ----------------------------------------------------------------------------------------
# small utilities

def wait_for(predicate, timeout, interval=0.05):
    """Call predicate until it returns a truthy value or timeout seconds pass.

    Returns the last value (falsy on timeout). Bounded in time and in count."""
    deadline = time.monotonic() + timeout
    value = predicate()
    for _ in range(int(timeout / interval) + 2):
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
        value = predicate()
    return value


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def base_env(venv=True, **extra):
    """The server's environment: ours, minus what would steer it, plus VIRTUAL_ENV."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    # Keep the venv's bin dir out of PATH: the server must find the venv through
    # VIRTUAL_ENV / `virtualenv`, not through an activated shell.
    venv_bin = str(VENV / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and p != venv_bin)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if venv:
        env["VIRTUAL_ENV"] = str(VENV)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def server_cmd():
    """The argv prefix that starts the server under test."""
    if IS_GUNICORN:
        return [str(VENV / "bin" / "gunicorn"), "-k", "gthread"]
    return [str(UNITCORN_BIN)]


def kill_tree(leader, pids):
    """SIGKILL the process group led by `leader` and every pid in `pids` (some may be
    gone already, or belong to another session)."""
    try:
        os.killpg(leader, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_cli(args, env=None, cwd=None, timeout=20, venv=True):
    """Run the server binary to completion (e.g. --print-config, --version).

    Started in its own session; if it is still running after timeout (e.g. it started
    serving instead of printing), its whole process group and descendants are killed and
    subprocess.TimeoutExpired is raised."""
    proc = subprocess.Popen(server_cmd() + list(args), env=env or base_env(venv=venv),
                            cwd=str(cwd or APPS), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid, set(descendants(proc.pid)) | set(pgrp_members(proc.pid)))
        out, err = proc.communicate(timeout=10)
        raise subprocess.TimeoutExpired(proc.args, timeout, out, err)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# ----------------------------------------------------------------------------------------
# /proc

def stat_fields(pid):
    """{state, ppid, pgrp, session} of pid from /proc/PID/stat, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: read after its last ')'.
    rest = data[data.rfind(")") + 2:].split()
    return {"state": rest[0], "ppid": int(rest[1]), "pgrp": int(rest[2]),
            "session": int(rest[3])}


def proc_stat(pid):
    """(state, ppid, pgrp) of pid, or None if it does not exist."""
    f = stat_fields(pid)
    return f and (f["state"], f["ppid"], f["pgrp"])


def cmdline(pid):
    """The raw bytes of /proc/PID/cmdline (the process's argv memory)."""
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


def title(pid):
    """What ps shows: the argv memory up to the NULs that pad it."""
    return cmdline(pid).rstrip(b"\0").decode("utf-8", "replace")


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def children(pid):
    """Live (non-zombie) child processes of pid."""
    out = []
    for p in all_pids():
        st = proc_stat(p)
        if st and st[1] == pid and st[0] not in ("Z", "X"):
            out.append(p)
    return sorted(out)


def descendants(pid):
    out = []
    todo = [pid]
    for _ in range(10000):
        if not todo:
            break
        parent = todo.pop()
        kids = [p for p in all_pids() if (proc_stat(p) or (None, None))[1] == parent]
        out.extend(kids)
        todo.extend(kids)
    return out


def pgrp_members(pgid):
    return [p for p in all_pids() if (proc_stat(p) or (None, None, None))[2] == pgid]


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def socket_inodes(pid):
    """Inodes of the sockets pid holds open."""
    out = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except (FileNotFoundError, PermissionError):
        return out
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            out.add(int(m.group(1)))
    return out


def listening_inodes(port):
    """Inodes of the TCP/TCP6 sockets in LISTEN state on port (any address)."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], int(fields[9])
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    out.append(inode)
    return out


# ----------------------------------------------------------------------------------------
# raw HTTP

class Response:
    def __init__(self, version, status, reason, headers):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # [(name, value)] as received
        self.body = b""
        self.complete = False           # body framing fully satisfied
        self.interim = []               # 1xx responses received before this one
        self.raw_head = b""

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("latin-1")

    def __repr__(self):
        return "<Response %s %s %r complete=%s body=%r>" % (
            self.status, self.reason, self.headers, self.complete, self.body[:200])


class ConnClosed(Exception):
    pass


class Conn:
    """One client connection with a receive buffer; every read has a deadline."""

    def __init__(self, addr, timeout=10.0, family=None):
        self.addr = addr
        if family is None:
            family = socket.AF_UNIX if isinstance(addr, str) else (
                socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.buf = b""
        self.eof = False
        self.reset = False              # the peer reset the connection (RST)
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read more bytes into buf. Returns False at EOF; raises socket.timeout past deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, delim, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while delim not in self.buf:
            if not self._fill(deadline):
                raise ConnClosed("EOF before %r; got %r" % (delim, self.buf[:300]))
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, timeout=None):
        """Up to n bytes: fewer only at EOF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                break
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self, timeout=None, limit=1 << 30):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < limit and self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def read_head(self, timeout=None):
        head = self.read_until(b"\r\n\r\n", timeout)
        lines = head[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        r = Response(m.group(1), int(m.group(2)), m.group(3) or "", headers)
        r.raw_head = head
        return r

    def read_response(self, method="GET", timeout=None):
        """One final response (1xx interim ones are collected in .interim).

        .complete is False when the connection ended before the framing said the body ended."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        interim = []
        for _ in range(20):
            r = self.read_head(max(0.01, deadline - time.monotonic()))
            if 100 <= r.status < 200 and r.status != 101:
                interim.append(r)
                continue
            break
        r.interim = interim
        if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
            r.complete = True
            return r
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if "chunked" in te:
            body = b""
            try:
                for _ in range(10_000_000):
                    size_line = self.read_until(b"\r\n", max(0.01, deadline - time.monotonic()))
                    size = int(size_line.split(b";")[0].strip(), 16)
                    if size == 0:
                        # trailers until the empty line
                        for _ in range(1000):
                            if self.read_until(b"\r\n", max(0.01, deadline - time.monotonic())) == b"\r\n":
                                break
                        r.complete = True
                        break
                    chunk = self.read_exact(size + 2, max(0.01, deadline - time.monotonic()))
                    body += chunk[:size]
                    if len(chunk) < size + 2:
                        break
            except ConnClosed:
                pass
            r.body = body
        elif cl is not None:
            n = int(cl)
            r.body = self.read_exact(n, max(0.01, deadline - time.monotonic()))
            r.complete = len(r.body) == n
        else:
            r.body = self.read_to_eof(max(0.01, deadline - time.monotonic()))
            r.complete = True
        return r

    def closed_by_peer(self, timeout=5.0):
        """True if the server closes the connection within timeout (pending data is dropped)."""
        deadline = time.monotonic() + timeout
        try:
            for _ in range(100000):
                if not self._fill(deadline):
                    return True
                self.buf = b""
        except socket.timeout:
            return False
        except OSError:
            return True
        return False

    def nothing_within(self, seconds):
        """True if no byte arrives (and no EOF) within seconds."""
        deadline = time.monotonic() + seconds
        if self.buf:
            return False
        try:
            self._fill(deadline)
        except socket.timeout:
            return True
        return False


def build_request(method, path, headers=(), body=None, version="HTTP/1.1", host="127.0.0.1",
                  close=False):
    lines = ["%s %s %s" % (method, path, version)]
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    lines.extend("%s: %s" % (k, v) for k, v in headers)
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        data += body
    return data


def chunked(parts):
    out = b""
    for p in parts:
        if p:
            out += b"%x\r\n%s\r\n" % (len(p), p)
    return out + b"0\r\n\r\n"


# ----------------------------------------------------------------------------------------
# the server under test

class Server:
    """A running server process (master) started in its own session / process group."""

    def __init__(self, args, env, cwd, logdir, addr=None, pass_fds=(), name="server"):
        self.args = list(args)
        self.addr = addr                       # (host, port) or unix path
        self.stdout_path = Path(logdir) / ("%s.stdout" % name)
        self.stderr_path = Path(logdir) / ("%s.stderr" % name)
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.args, env=env, cwd=str(cwd), stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL,
                                     start_new_session=True, pass_fds=tuple(pass_fds))
        self.pid = self.proc.pid
        self._seen = set()

    # --- output
    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    # --- processes
    def workers(self):
        kids = children(self.pid)
        self._seen.update(kids)
        return kids

    def wait_workers(self, n, timeout=15):
        """Wait until exactly n live workers; returns their pids (asserts)."""
        def exactly_n():
            ws = self.workers()
            return ws if len(ws) == n else None
        got = wait_for(exactly_n, timeout)
        assert got and len(got) == n, "expected %d workers, have %r; stderr:\n%s" % (
            n, self.workers(), self.stderr()[-3000:])
        return got

    def watch_workers(self, seconds, interval=0.02):
        """Poll the worker processes for `seconds`: {pid: [first seen, last seen]}, in seconds
        from the call (a pid present at the first poll was there before)."""
        seen = {}
        t0 = time.monotonic()
        for _ in range(int(seconds / interval) + 2):
            now = time.monotonic() - t0
            for p in self.workers():
                seen.setdefault(p, [now, now])[1] = now
            if now >= seconds:
                break
            time.sleep(interval)
        return seen

    def rss_kib(self):
        return sum(rss_kib(p) for p in [self.pid] + descendants(self.pid))

    def exited(self):
        return self.proc.poll() is not None

    # --- HTTP
    def conn(self, timeout=10.0):
        return Conn(self.addr, timeout=timeout)

    def request(self, method="GET", path="/", headers=(), body=None, timeout=10.0,
                version="HTTP/1.1"):
        """One request on a fresh connection (Connection: close)."""
        with self.conn(timeout) as c:
            c.send(build_request(method, path, headers, body, version=version, close=True))
            return c.read_response(method, timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def wait_ready(self, timeout=30, path="/"):
        """Wait until the server answers an HTTP request (any status)."""
        deadline = time.monotonic() + timeout
        last = None
        for _ in range(int(timeout / 0.1) + 1):
            if self.exited():
                raise AssertionError("server exited with %s before serving; stderr:\n%s" % (
                    self.proc.returncode, self.stderr()[-5000:]))
            try:
                r = self.request("GET", path, timeout=max(0.5, deadline - time.monotonic()))
                return r
            except (OSError, ConnClosed, AssertionError) as e:
                last = e
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        raise AssertionError("server not ready after %ss (%r); stderr:\n%s" % (
            timeout, last, self.stderr()[-5000:]))

    # --- the error log (stderr unless --error-logfile says otherwise)
    def log_findall(self, pattern, path=None):
        """re.findall of pattern over the error log (stderr, or the file at path)."""
        text = Path(path).read_text(errors="replace") if path else self.stderr()
        return re.findall(pattern, text)

    def wait_log(self, pattern, timeout=10, count=1, path=None):
        """Wait until pattern matches at least count times in the error log; returns the
        matches (asserts, showing the log's tail)."""
        def enough():
            try:
                found = self.log_findall(pattern, path)
            except FileNotFoundError:
                return None
            return found if len(found) >= count else None
        got = wait_for(enough, timeout, interval=0.02)
        assert got, "%r not logged %d time(s) within %ss; log:\n%s" % (
            pattern, count, timeout,
            (Path(path).read_text(errors="replace") if path and Path(path).exists()
             else self.stderr())[-4000:])
        return got

    def log_times(self, pattern, seconds, interval=0.02):
        """Watch the error log for `seconds`; returns [(monotonic time first seen, match)]
        for each line matching pattern, in order (the log's own stamps are whole seconds)."""
        seen = []
        deadline = time.monotonic() + seconds
        for _ in range(int(seconds / interval) + 2):
            found = self.log_findall(pattern)
            now = time.monotonic()
            for m in found[len(seen):]:
                seen.append((now, m))
            self.workers()          # remember every worker pid, for the leak check
            if now >= deadline:
                break
            time.sleep(interval)
        return seen

    # --- stop
    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self):
        """SIGKILL the process group and every descendant we know of; reap the master."""
        targets = set(self._seen)
        if alive(self.pid):
            targets.update(descendants(self.pid))
        targets.update(pgrp_members(self.pid))
        kill_tree(self.pid, targets)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        wait_for(lambda: not any(alive(p) for p in targets | set(pgrp_members(self.pid))), 10)
        self._out.close()
        self._err.close()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------
# continuous client load

class Load:
    """Client threads sending GETs to a server until stopped, to check that reloads and
    recycling never fail a request.

    `keepalive` threads each reuse one connection (a new one when the server says
    `Connection: close` or closes it); `fresh` threads open a connection per request
    (`Connection: close`). The paths must answer the worker's pid as the body (wsgiapp's
    /pid and /sleep?s= do); `slow` threads (fresh connections) ask for `slow_path`, so that
    requests are in flight when a worker is told to stop.

    A request fails when it gets an error, a timeout, an incomplete response, a status other
    than 200 or a body that is not a pid -- with one exception, the case an HTTP client
    retries on its own (RFC 9112 section 9.3.1): the server closed a *reused* keep-alive
    connection before sending any byte of the answer (it closed an idle connection while the
    request was on its way). Those are counted in `retried` and sent again on a new
    connection. Every wait is bounded by `timeout`.
    """

    def __init__(self, addr, keepalive=2, fresh=2, slow=0, path="/pid",
                 slow_path="/sleep?s=0.3", timeout=10.0):
        self.addr = addr
        self.path = path
        self.slow_path = slow_path
        self.timeout = timeout
        self.ok = 0
        self.retried = 0
        self.retried_reset = 0          # of which the server reset (RST) the connection
        self.failures = []              # (seconds since start, kind, detail)
        self.pids = Counter()           # worker pid -> responses
        self.first_seen = {}            # worker pid -> seconds since start
        self.last_seen = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = None
        self._threads = (
            [threading.Thread(target=self._keepalive, daemon=True) for _ in range(keepalive)]
            + [threading.Thread(target=self._fresh, args=(path,), daemon=True)
               for _ in range(fresh)]
            + [threading.Thread(target=self._fresh, args=(slow_path,), daemon=True)
               for _ in range(slow)])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._t0 = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        stuck = [t for t in self._threads if t.is_alive()]
        assert not stuck, "%d load thread(s) still running" % len(stuck)
        return self

    def wait_requests(self, n, timeout=10):
        """Wait until n more requests have succeeded (asserts)."""
        start = self.ok
        got = wait_for(lambda: self.ok - start >= n, timeout)
        assert got, "only %d requests succeeded in %ss (%s)" % (self.ok - start, timeout,
                                                                  self.summary())

    def _now(self):
        return time.monotonic() - self._t0

    def _fail(self, kind, detail):
        with self._lock:
            self.failures.append((round(self._now(), 3), kind, detail))

    def _check(self, r):
        """True if r is a complete 200 carrying a pid (recorded), else records a failure."""
        body = r.body.strip()
        if r.status != 200 or not r.complete or not body.isdigit():
            self._fail("bad response", repr(r))
            return False
        pid = int(body)
        now = self._now()
        with self._lock:
            self.ok += 1
            self.pids[pid] += 1
            self.first_seen.setdefault(pid, now)
            self.last_seen[pid] = now
        return True

    def _keepalive(self):
        c = None
        reused = False
        try:
            while not self._stop.is_set():
                if c is None:
                    try:
                        c = Conn(self.addr, timeout=self.timeout)
                    except OSError as e:
                        self._fail("connect", repr(e))
                        time.sleep(0.05)
                        continue
                    reused = False
                try:
                    c.send(build_request("GET", self.path))
                    r = c.read_response(timeout=self.timeout)
                except (ConnClosed, ConnectionError) as e:
                    nothing = not c.buf
                    reset = c.reset or isinstance(e, ConnectionError)
                    c.close()
                    c = None
                    if reused and nothing:
                        with self._lock:
                            self.retried += 1
                            self.retried_reset += reset
                    else:
                        self._fail("keep-alive %s" % ("reused" if reused else "new"), repr(e))
                    continue
                except OSError as e:       # socket.timeout and the rest
                    c.close()
                    c = None
                    self._fail("keep-alive error", repr(e))
                    continue
                self._check(r)
                reused = True
                if (r.header("connection") or "").lower() == "close":
                    c.close()
                    c = None
        finally:
            if c is not None:
                c.close()

    def _fresh(self, path):
        while not self._stop.is_set():
            c = None
            try:
                c = Conn(self.addr, timeout=self.timeout)
                c.send(build_request("GET", path, close=True))
                r = c.read_response(timeout=self.timeout)
            except (OSError, ConnClosed) as e:
                how = "reset" if c is not None and (c.reset or isinstance(e, ConnectionError)) \
                    else "closed"
                self._fail("fresh connection %s %s" % (path, how), repr(e))
                time.sleep(0.01)
                continue
            finally:
                if c is not None:
                    c.close()
            self._check(r)

    def summary(self):
        with self._lock:
            return ("%d ok, %d failed, %d retried on a reused connection (%d of them reset), "
                    "pids %s%s") % (
                self.ok, len(self.failures), self.retried, self.retried_reset, dict(self.pids),
                ("; failures: %r" % self.failures[:10]) if self.failures else "")


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.seen = []     # (monotonic time, fields dict, sender pid)

    def _recv(self, timeout):
        self.sock.settimeout(max(timeout, 0.01))
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = next((struct.unpack("3i", d)[0] for _, typ, d in anc
                    if typ == socket.SCM_CREDENTIALS), None)
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.seen.append((time.monotonic(), fields, pid))
        return fields, pid

    def expect(self, key, within=10.0):
        """The next datagram carrying `key` (others are kept in self.seen)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                fields, pid = self._recv(deadline - time.monotonic())
            except socket.timeout:
                break
            if key in fields:
                return fields, pid
        raise AssertionError("no %s within %.1fs; seen: %r" % (
            key, within, [f for _, f, _ in self.seen]))

    def count(self, key, seconds):
        """How many datagrams carrying `key` arrive in the next `seconds`."""
        n, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                fields, _ = self._recv(deadline - time.monotonic())
            except socket.timeout:
                break
            n += key in fields
        return n

    def close(self):
        self.sock.close()


# ----------------------------------------------------------------------------------------
# the master from outside: its log, generations, helper threads, the scoreboard

BOOTING = r"Booting worker with pid: (\d+)"


def hup(s, old, n, timeout=10):
    """HUP the master; wait until every worker of `old` is gone and n new ones run.

    Returns (seconds from the signal to the old generation gone, the new workers)."""
    t0 = time.monotonic()
    s.signal(signal.SIGHUP)

    def old_gone():
        s.workers()                     # remember the new pids for the leak check
        return not any(alive(p) for p in old)

    gone = wait_for(old_gone, timeout, interval=0.01)
    took = time.monotonic() - t0
    assert gone, "old generation %r still running %ss after HUP: %r; log:\n%s" % (
        old, timeout, [p for p in old if alive(p)], s.stderr()[-4000:])
    new = s.wait_workers(n)
    assert not set(new) & set(old), (old, new)
    return took, new


def in_thread(fn, *args):
    """Run fn(*args) in a thread; returns (thread, result dict with "r" or "e")."""
    out = {}

    def run():
        try:
            out["r"] = fn(*args)
        except Exception as e:  # reported by the test
            out["e"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


def new_master_of(s, timeout=10):
    """The pid of the new master the old one (s) started, from its log."""
    (pid,) = s.wait_log(r"binary upgrade: started new master (\d+)", timeout=timeout)
    return int(pid)


def quit_and_wait(pid, timeout=15):
    os.kill(pid, signal.SIGQUIT)
    assert wait_for(lambda: not alive(pid), timeout), "master %d still up after QUIT" % pid


# The scoreboard, read from the master's memory (layout of src/scoreboard.rs's Slot:
# pid i32, generation u32, ready u32, retire u32, connections u32, in_flight u32,
# requests u64, heartbeat_ms u64, oldest_ms u64, one 64-byte line a slot, 512 slots)
SLOT = struct.Struct("=iIIIIIQQQ")
SLOT_SIZE = 64
SLOTS = 512


def read_scoreboard(master):
    """{pid: slot dict} of the used slots, from the master's MAP_SHARED mapping."""
    size = SLOT_SIZE * SLOTS
    with open("/proc/%d/maps" % master) as f:
        maps = [line.split() for line in f]
    cands = [m for m in maps if m[1][3] == "s"
             and int(m[0].split("-")[1], 16) - int(m[0].split("-")[0], 16) == size]
    assert len(cands) == 1, "scoreboard mapping not found: %r" % cands
    start = int(cands[0][0].split("-")[0], 16)
    with open("/proc/%d/mem" % master, "rb") as mem:
        mem.seek(start)
        data = mem.read(size)
    out = {}
    for i in range(SLOTS):
        f = SLOT.unpack_from(data, i * SLOT_SIZE)
        if f[0]:
            out[f[0]] = dict(zip(("pid", "generation", "ready", "retire", "connections",
                                  "in_flight", "requests", "heartbeat_ms", "oldest_ms"), f))
    return out


# ----------------------------------------------------------------------------------------
# the seed deployment (the gunicorn one unitcorn replaces): examples/gunicorn_config.py

SEED = REPO / "examples" / "gunicorn_config.py"


def port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def seed_workdir(prefix, body_expr):
    """A directory as the seed deployment's, readable after the switch to natadmin: the
    seed's gunicorn_config.py, unchanged, and an app.py whose response is `body_expr`."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(work, 0o755)
    shutil.copy(SEED, work / "gunicorn_config.py")
    (work / "app.py").write_text(
        "import os, sys\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [%s]\n" % body_expr)
    for f in ("gunicorn_config.py", "app.py"):
        os.chmod(work / f, 0o644)
    return work
