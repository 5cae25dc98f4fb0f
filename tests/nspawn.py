"""A real systemd for the tests: boot the host's own OS as a throwaway systemd-nspawn container.

"Hostroot" mode: / is bind-mounted read-only at a private mount point and booted with
`--volatile=overlay`, so every write inside (units, users, /usr/bin/unitcorn) lands on a
tmpfs and nothing reaches the host; nothing is downloaded. systemd is the host's own
(252 on Debian 12, the oldest the product supports). Boot takes about 1 s, halt 1-2 s.

    with Container.boot(binds={"/host/dir": "/opt/x"}) as c:
        c.run(["systemctl", "start", "foo.socket"])

What it does, and why (the gotchas were observed on this machine type):
- the launcher first moves itself into cgroups of its own (v2 `unified/NAME` plus v1
  `systemd/NAME` on a hybrid host, or `NAME` on a pure-v2 host): started from the root
  cgroup, nspawn would leave `payload/` and `supervisor/` at the top of the host's trees;
- SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: the container gets pure cgroup v2 like production
  (on the legacy hierarchy systemd does not wait for a unit's other processes at stop, so
  prefork workers would be SIGKILLed at once);
- --register=no --keep-unit: no host systemd/machined to talk to; --link-journal=no: the
  host's machine-id is shared; --private-network: no port clash with other jobs (clients
  run inside); systemd.unit=basic.target: no service the host image enables is started;
- PID 1 is polled with `systemctl is-system-running` without --wait (which needs D-Bus,
  not up early in boot).

Every wait is bounded. Teardown (also after a failed test) halts by PID, removes the
cgroups and unmounts; a run that was killed hard leaves a state file that the next run
uses to tear its container down (only once the process that made it is gone, so that
concurrent runs in other checkouts are left alone).
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

BASE = Path(os.environ.get("UNITCORN_NSPAWN_BASE", "/var/tmp/unitcorn-nspawn"))
NSPAWN = "systemd-nspawn"

# Bounds of every wait here, in seconds.
EXEC_TIMEOUT = 5          # the launcher shell exec's systemd-nspawn
LEADER_TIMEOUT = 30       # the container's PID 1 appears and mounts /run/systemd/system
BOOT_TIMEOUT = 60         # is-system-running leaves initializing/starting
HALT_TIMEOUT = 30         # PID 1 halts after nspawn got SIGTERM
KILL_TIMEOUT = 10         # after SIGKILL, the processes are gone
CGROUP_TIMEOUT = 10       # the cgroups empty out and can be removed
UMOUNT_TIMEOUT = 10
RUN_TIMEOUT = 60          # default bound of one command run inside


class NspawnError(Exception):
    pass


def _wait(predicate, timeout, interval=0.1):
    """predicate() until truthy or timeout: the last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
    return predicate()


def _start_time(pid):
    """The start time of pid (clock ticks since boot), to tell a pid from its reuse."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(")") + 2:].split()[19])


def _alive(pid, start_time):
    """pid is the process that started at start_time, and not a zombie (a hard-killed
    run's process may stay a zombie for a while)."""
    if pid is None or start_time is None or _start_time(pid) != start_time:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2:].split()[0] not in ("Z", "X")


def _is_nspawn_of(pid, name):
    """pid is a live systemd-nspawn running machine `name` (guards against pid reuse)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        exe = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return False
    return exe.endswith("/" + NSPAWN) and name.encode() in argv


def _children(pid):
    out = []
    for n in os.listdir("/proc"):
        if not n.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % n) as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(")") + 2:].split()
        if int(rest[1]) == pid:
            out.append((int(n), data[data.index("(") + 1:data.rindex(")")]))
    return out


def cgroup_dirs(name):
    """The cgroup directories the container's launcher is moved into."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():            # pure cgroup v2
        return [root / name]
    # Hybrid (this machine type): cgroup2 at unified/, v1 name=systemd at systemd/.
    return [root / sub / name for sub in ("unified", "systemd") if (root / sub).is_dir()]


def _is_mountpoint(path):
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


class Container:
    """One booted container. Use Container.boot(...); always call close() (or `with`)."""

    def __init__(self, name, binds):
        self.name = name
        self.dir = BASE / name
        self.root = self.dir / "hostroot"
        self.log_path = self.dir / "nspawn.log"
        self.state_path = self.dir / "state.json"
        self.binds = dict(binds)
        self.proc = None
        self.nspawn_pid = None
        self.leader = None
        self.state = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def boot(cls, binds=None, prefix="unitcorn-t"):
        """Boot a fresh container; binds: {host path: container path} (read-only)."""
        if shutil.which(NSPAWN) is None:
            raise NspawnError("systemd-nspawn is missing: apt-get install --no-install-recommends "
                              "systemd-container (tests/run.sh does)")
        if os.geteuid() != 0:
            raise NspawnError("booting systemd in systemd-nspawn needs root")
        cleanup_leftovers()
        # Unique per run and per module: concurrent runs never share a name, cgroup or mount.
        name = "%s%d-%s" % (prefix, os.getpid(), secrets.token_hex(3))
        c = cls(name, binds or {})
        try:
            c._boot()
        except BaseException:
            c.close()
            raise
        return c

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _save_state(self):
        state = {"name": self.name, "owner_pid": os.getpid(),
                 "owner_start": _start_time(os.getpid()), "nspawn_pid": self.nspawn_pid,
                 "root": str(self.root), "cgroups": [str(d) for d in cgroup_dirs(self.name)]}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    def _boot(self):
        self.dir.mkdir(parents=True)
        self.root.mkdir()
        self._save_state()          # before the first mount: a hard kill from here on is undone
        # A read-only view of / at a private mount point: nothing the container does (or
        # nspawn's own mounts) propagates back to the host's /.
        for cmd in (["mount", "--bind", "/", str(self.root)],
                    ["mount", "--make-private", str(self.root)],
                    ["mount", "-o", "remount,bind,ro", str(self.root)]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=UMOUNT_TIMEOUT)
            if r.returncode != 0:
                raise NspawnError("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
        cgroups = cgroup_dirs(self.name)
        for d in cgroups:
            d.mkdir()
        argv = [NSPAWN, "-M", self.name, "-D", str(self.root), "-b", "--volatile=overlay",
                "--register=no", "--keep-unit", "--private-network", "--link-journal=no",
                "--console=pipe"]
        argv += ["--bind-ro=%s:%s" % (host, inside) for host, inside in self.binds.items()]
        argv += ["systemd.unit=basic.target"]
        # The shell moves itself (and so nspawn, which it exec's) into our cgroups first.
        launcher = 'for f in $UC_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@"'
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1",
                   UC_CGROUP_PROCS=" ".join(str(d / "cgroup.procs") for d in cgroups))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["sh", "-c", launcher, "sh"] + argv, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        self.nspawn_pid = self.proc.pid
        self._save_state()
        # The pid is the shell's until it has exec'd nspawn: wait for that before trusting it.
        if not _wait(lambda: self.proc.poll() is not None or _is_nspawn_of(self.nspawn_pid, self.name),
                     EXEC_TIMEOUT, 0.02) or self.proc.poll() is not None:
            raise NspawnError("systemd-nspawn did not start (exit %s):\n%s" % (
                self.proc.poll(), self.log_tail()))

        def leader():
            if self.proc.poll() is not None:
                return "exited"
            for pid, comm in _children(self.nspawn_pid):
                if comm == "systemd" and os.path.exists("/proc/%d/root/run/systemd/system" % pid):
                    return pid
            return None
        got = _wait(leader, LEADER_TIMEOUT)
        if not isinstance(got, int):
            raise NspawnError("the container's PID 1 did not come up (%s) in %d s:\n%s" % (
                got, LEADER_TIMEOUT, self.log_tail()))
        self.leader = got

        def booted():
            r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            state = r.stdout.strip()
            return None if state in ("", "initializing", "starting") else state
        self.state = _wait(booted, BOOT_TIMEOUT, 0.2)
        if self.state not in ("running", "degraded"):
            failed = self.run(["systemctl", "--failed", "--no-pager"], check=False).stdout
            raise NspawnError("container systemd state %r after %d s; failed units:\n%s\n%s" % (
                self.state, BOOT_TIMEOUT, failed, self.log_tail()))

    def log_tail(self, n=4000):
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "<no nspawn log>"

    def close(self):
        """Halt the container and remove every trace of it; safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            _halt(self.nspawn_pid, self.name, self.leader, self.proc)
        elif self.nspawn_pid is not None and _is_nspawn_of(self.nspawn_pid, self.name):
            _halt(self.nspawn_pid, self.name, self.leader, None)
        _remove_traces(self.name, self.root, cgroup_dirs(self.name), self.dir)

    # ------------------------------------------------------------------ inside
    def run(self, cmd, timeout=RUN_TIMEOUT, check=True, input=None):
        """Run cmd (argv list, or a string for sh -c) inside; CompletedProcess, text output.

        check: raise AssertionError with the output when it exits non-zero. On timeout
        the nsenter process (and what it runs) is killed and TimeoutExpired raised."""
        argv = self.command(cmd)
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               input=input, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise subprocess.TimeoutExpired(argv, timeout, e.stdout, e.stderr) from None
        if check and r.returncode != 0:
            raise AssertionError("in container %s: %r exited %d\nstdout: %s\nstderr: %s" % (
                self.name, cmd, r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def command(self, cmd):
        """The host argv that runs cmd inside the container (all of PID 1's namespaces)."""
        if isinstance(cmd, str):
            cmd = ["sh", "-c", cmd]
        assert self.leader, "container not booted"
        # nsenter forks to enter the pid namespace, and killing nsenter (a timeout, a
        # failed test) would leave the command running inside: the parent-death signal
        # makes it die with nsenter.
        return (["nsenter", "-t", str(self.leader), "-a", "--",
                 "setpriv", "--pdeathsig", "KILL", "--"] + list(cmd))

    def popen(self, cmd, **kw):
        """Start cmd inside in the background (the caller waits for it, bounded)."""
        return subprocess.Popen(self.command(cmd), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

    def path(self, inside):
        """A host path to a file inside the container (through its PID 1's root)."""
        return Path("/proc/%d/root" % self.leader) / str(inside).lstrip("/")


# ---------------------------------------------------------------------- teardown

def _kill_entered(leader):
    """Kill the commands run inside through nsenter (the host-side nsenter forked them).

    Needed before a halt: systemd-shutdown SIGSTOPs every process in the container, and
    nsenter, seeing its child stop, stops itself -- for good, as nothing in the container
    can SIGCONT it; its child then stays a zombie and the halt waits for it (90 s). The
    child is killed first and nsenter continued, so that nsenter reaps it: had nsenter
    died first, the child would go to the host's init, reaped whenever that gets to it."""
    try:
        inside = os.readlink("/proc/%d/ns/pid" % leader)
    except OSError:
        return
    for n in os.listdir("/proc"):
        if not n.isdigit():
            continue
        try:
            entering = os.readlink("/proc/%s/ns/pid_for_children" % n) == inside and \
                os.readlink("/proc/%s/ns/pid" % n) != inside
        except OSError:
            continue
        if entering:
            for child, _ in _children(int(n)):
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.kill(int(n), signal.SIGCONT)
            except ProcessLookupError:
                pass


def _leader_of(nspawn_pid):
    return next((pid for pid, comm in _children(nspawn_pid) if comm == "systemd"), None)


def _halt(nspawn_pid, name, leader, proc):
    """SIGTERM nspawn (it asks PID 1 to halt); SIGKILL both if that takes too long."""
    leader = leader or _leader_of(nspawn_pid)
    if leader:
        _kill_entered(leader)

    def gone():
        if proc is not None:
            return proc.poll() is not None
        return not _is_nspawn_of(nspawn_pid, name)
    try:
        os.kill(nspawn_pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait(gone, HALT_TIMEOUT, 0.1):
        return
    # Killing the container's PID 1 kills its whole pid namespace.
    for pid in (leader, nspawn_pid):
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _wait(gone, KILL_TIMEOUT, 0.1)


def _cgroup_pids(d):
    pids = []
    for dirpath, _, files in os.walk(d):
        if "cgroup.procs" in files:
            try:
                pids += (Path(dirpath) / "cgroup.procs").read_text().split()
            except OSError:
                pass
    return pids


def _rmdir_tree(d):
    """rmdir every directory under d, deepest first (cgroupfs: files go with their dir)."""
    for dirpath, _, _ in sorted(os.walk(d), key=lambda t: -t[0].count("/")):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return True


def _remove_traces(name, root, cgroups, state_dir):
    problems = []
    for d in cgroups:
        d = Path(d)
        if not d.exists():
            continue
        # Processes left in the cgroups (nspawn killed hard) are killed: they are ours.
        for pid in _cgroup_pids(d):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        if not _wait(lambda: _rmdir_tree(d) and not d.exists(), CGROUP_TIMEOUT, 0.1):
            problems.append("cgroup %s not removed (pids %s)" % (d, _cgroup_pids(d)))
    root = Path(root)
    if root.exists():
        def unmounted():
            if not _is_mountpoint(root):
                return True
            subprocess.run(["umount", str(root)], capture_output=True, timeout=UMOUNT_TIMEOUT)
            return not _is_mountpoint(root)
        if not _wait(unmounted, UMOUNT_TIMEOUT, 0.2):
            # Busy (a process still has its cwd there?): detach it rather than leave it.
            subprocess.run(["umount", "-l", str(root)], capture_output=True, timeout=UMOUNT_TIMEOUT)
            if _is_mountpoint(root):
                problems.append("%s still mounted" % root)
    # nspawn's own runtime litter (/run is not a tmpfs on this machine type).
    shutil.rmtree("/run/systemd/nspawn/propagate/%s" % name, ignore_errors=True)
    for d in ("/run/systemd/nspawn/propagate", "/run/systemd/nspawn/locks", "/run/systemd/nspawn"):
        try:
            os.rmdir(d)             # only when empty: another run may be using it
        except OSError:
            pass
    if not problems and Path(state_dir).exists():
        if _is_mountpoint(root):
            problems.append("%s still mounted" % root)
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
    try:
        BASE.rmdir()
    except OSError:
        pass
    if problems:
        raise NspawnError("teardown of container %s incomplete: %s" % (name, "; ".join(problems)))


def cleanup_leftovers():
    """Tear down containers of earlier runs whose owning process is gone (hard-killed)."""
    if not BASE.is_dir():
        return
    for state_path in BASE.glob("*/state.json"):
        try:
            st = json.loads(state_path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(st.get("owner_pid"), st.get("owner_start")):
            continue                # a live run (maybe another checkout's): not ours
        name = st["name"]
        pid = st.get("nspawn_pid")
        if pid and _is_nspawn_of(pid, name):
            _halt(pid, name, None, None)
        try:
            _remove_traces(name, st["root"], st.get("cgroups", []), state_path.parent)
        except NspawnError:
            pass                    # reported by the next attempt; do not block this run
