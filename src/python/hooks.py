"""The objects gunicorn's server hooks are given, with the attributes hooks use.

`server` (the arbiter), `worker`, `req`, `resp`, and their `cfg` and `log`. The Rust side
(hooks.rs) creates them, keeps them up to date and calls the hooks through `call`, which
returns a traceback instead of raising. `_emit(level, text)` is set by Rust: it writes to
unitcorn's error log.
"""
import os
import sys
import traceback

_emit = None

DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50


class Log:
    """`server.log` / `worker.log`: gunicorn's logger methods, into unitcorn's error log."""

    def _log(self, level, msg, args, exc_info=None):
        try:
            if len(args) == 1 and isinstance(args[0], dict) and args[0]:
                text = str(msg) % args[0]
            else:
                text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = "%s %r" % (msg, args)
        if exc_info:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif not isinstance(exc_info, tuple):
                exc_info = sys.exc_info()
            if exc_info[0] is not None:
                text += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip()
        _emit(level, text)

    def debug(self, msg, *args, **kwargs):
        self._log(DEBUG, msg, args, kwargs.get("exc_info"))

    def info(self, msg, *args, **kwargs):
        self._log(INFO, msg, args, kwargs.get("exc_info"))

    def warning(self, msg, *args, **kwargs):
        self._log(WARNING, msg, args, kwargs.get("exc_info"))

    warn = warning

    def error(self, msg, *args, **kwargs):
        self._log(ERROR, msg, args, kwargs.get("exc_info"))

    def critical(self, msg, *args, **kwargs):
        self._log(CRITICAL, msg, args, kwargs.get("exc_info"))

    def exception(self, msg, *args, **kwargs):
        self._log(ERROR, msg, args, kwargs.get("exc_info", True))

    def log(self, level, msg, *args, **kwargs):
        self._log(level, msg, args, kwargs.get("exc_info"))

    # gunicorn's logger also has these; unitcorn reopens its own files (USR1).
    def reopen_files(self):
        pass

    def close_on_exec(self):
        pass


class Config:
    """`server.cfg`: every setting as an attribute, by gunicorn's name."""

    def __init__(self, values):
        self.__dict__.update(values)

    def __getattr__(self, name):
        raise AttributeError("unitcorn has no setting %r" % name)

    @property
    def worker_class_str(self):
        return self.worker_class

    @property
    def address(self):
        return list(self.bind)

    @property
    def env(self):
        return dict(pair.split("=", 1) for pair in self.raw_env)

    @property
    def settings(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __repr__(self):
        return "<unitcorn Config %s>" % ", ".join(
            "%s=%r" % kv for kv in sorted(self.settings.items()))


class App:
    """`server.app`: what gunicorn's hooks reach through it (its cfg)."""

    def __init__(self, cfg):
        self.cfg = cfg


class Server:
    """The master (gunicorn's Arbiter), as hooks see it."""

    def __init__(self, pid, cfg, log):
        self.pid = pid
        self.cfg = cfg
        self.app = App(cfg)
        self.log = log
        self.num_workers = None
        self.timeout = cfg.timeout
        self.proc_name = cfg.proc_name or "unitcorn"
        self.master_name = "Master"
        self.WORKERS = {}

    def reconfigure(self, cfg):
        self.cfg = cfg
        self.app = App(cfg)
        self.timeout = cfg.timeout
        self.proc_name = cfg.proc_name or "unitcorn"


class Worker:
    """A worker, as hooks see it: made in the master before the fork (pre_fork), the
    same object in the child (post_fork ...) and in the master's WORKERS."""

    def __init__(self, age, ppid, cfg, log):
        self.age = age
        self.ppid = ppid
        self.pid = "[booting]"
        self.cfg = cfg
        self.log = log
        self.timeout = cfg.timeout
        self.alive = True
        self.booted = False
        self.aborted = False
        self.nr = 0
        self.wsgi = None

    def __str__(self):
        return "<Worker %s>" % self.pid


class Request:
    """`req` of pre_request/post_request: gunicorn's Request attributes."""

    def __init__(self, method, uri, path, query, version, headers, scheme, peer_addr):
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.fragment = ""
        self.version = version
        self.headers = headers
        self.trailers = []
        self.scheme = scheme
        self.peer_addr = peer_addr
        self.remote_addr = peer_addr

    def __repr__(self):
        return "<Request %s %s>" % (self.method, self.uri)


class Response:
    """`resp` of post_request: what gunicorn's Response tells once it is sent."""

    def __init__(self, status, headers, sent, version):
        self.status = status
        self.status_code = int(status.split(None, 1)[0])
        self.headers = headers
        self.sent = sent
        self.response_length = sent
        self.version = version
        self.headers_sent = True


def call(hook, args):
    """Call a hook; None, or the traceback of what it raised (SystemExit included)."""
    try:
        hook(*args)
    except BaseException:  # noqa: B902 -- a hook's failure is reported, never propagated
        return traceback.format_exc()
    return None


def in_child(worker):
    """Right after the fork, in the worker."""
    worker.pid = os.getpid()
