"""A plain PEP 3333 app with one route per behaviour the integration tests check.

No third-party import: it must load without any virtualenv. Routes (PATH_INFO, after any
SCRIPT_NAME prefix):

    /, /hello             fixed text body with Content-Length
    /pid                  the worker's pid
    /environ...           JSON view of the environ (values of plain types, type names of all)
    /osenv?k=NAME         os.environ[NAME] in the worker ("<unset>" if missing)
    /cwd                  os.getcwd() of the worker
    /syspath              JSON sys.path
    /import?name=MOD      JSON {"ok": bool, "file": MOD.__file__ or the error}
    /echo?via=METHOD      the request body read back through one wsgi.input method:
                          read, readn (read(n) loop, n from &n=), read-1, readline (with
                          &size=), readlines, iter. Header X-Eof says whether read() and
                          readline() then return b'' (both "b''" when correct).
    /hash                 reads wsgi.input in 64 KiB blocks: JSON {"length", "sha256"}
    /ignore_body          answers without touching wsgi.input
    /stream?n=&delay=     yields n chunks, sleeping delay seconds between them
    /sleep?s=             sleeps s seconds, answers its pid
    /raise_before         raises before start_response
    /raise_after          yields a first chunk, then raises
    /raise_after_empty    start_response(200), yields b'', then raises
    /write                uses the write() callable, then returns one more chunk
    /excinfo_before       start_response(200), then start_response(500, exc_info) before any body
    /excinfo_after        yields a chunk, then calls start_response(exc_info): must re-raise
    /cl_big               declares Content-Length: 100, sends 10 bytes
    /cl_small             declares Content-Length: 5, sends b"helloEXTRA"
    /file?path=           wsgi.file_wrapper over the file at path (close() is recorded)
    /status?code=         answers with that status and no body
    /closable?id=&n=&delay=  iterable whose close() is recorded in $CLOSE_LOG
    /closable_raise?id=   iterable that raises after one chunk; close() recorded
    /errors?msg=          writes msg to wsgi.errors
    /big?n=               n bytes of b"x" in one chunk, with Content-Length
    /cookies              two Set-Cookie headers
    /inject               a header value with CRLF in it (must never reach the wire as is)

At import, the module appends a line to the file named by $IMPORT_LOG (when set).
"""

import hashlib
import json
import os
import sys
import time
import urllib.parse

if os.environ.get("IMPORT_LOG"):
    with open(os.environ["IMPORT_LOG"], "a") as f:
        f.write("wsgiapp imported in %d\n" % os.getpid())

# A slow import, as a big app's: $IMPORT_DELAY_S seconds.
time.sleep(float(os.environ.get("IMPORT_DELAY_S", "0")))

HELLO = b"Hello, World!\n"


def _record_close(line):
    path = os.environ.get("CLOSE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, tuple) and all(isinstance(v, (int, str)) for v in value):
        return list(value)
    return None


def environ_view(environ):
    out = {}
    types = {}
    for key, value in environ.items():
        types[key] = type(value).__name__
        plain = _plain(value)
        if plain is not None or value is None:
            out[key] = plain
    inp = environ.get("wsgi.input")
    err = environ.get("wsgi.errors")
    fw = environ.get("wsgi.file_wrapper")
    return {
        "values": out,
        "types": types,
        "input_methods": [m for m in ("read", "readline", "readlines", "__iter__")
                          if callable(getattr(inp, m, None))],
        "errors_methods": [m for m in ("write", "writelines", "flush")
                           if callable(getattr(err, m, None))],
        "file_wrapper_callable": callable(fw),
        "path_info_codepoints": [ord(c) for c in environ.get("PATH_INFO", "")],
    }


class ClosableIter:
    """Yields n chunks with a delay; records in $CLOSE_LOG when close() is called."""

    def __init__(self, ident, n, delay, raise_after=None):
        self.ident = ident
        self.n = n
        self.delay = delay
        self.raise_after = raise_after
        self.sent = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.raise_after is not None and self.sent >= self.raise_after:
            raise RuntimeError("closable-raise %s" % self.ident)
        if self.sent >= self.n:
            raise StopIteration
        if self.sent and self.delay:
            time.sleep(self.delay)
        self.sent += 1
        return b"chunk %d\n" % self.sent

    def close(self):
        _record_close("%s closed after %d chunks" % (self.ident, self.sent))


class RecordingFile:
    """A real file whose close() is recorded in $CLOSE_LOG."""

    def __init__(self, path, ident):
        self.f = open(path, "rb")
        self.ident = ident

    def read(self, *args):
        return self.f.read(*args)

    def fileno(self):
        return self.f.fileno()

    def seek(self, *args):
        return self.f.seek(*args)

    def tell(self):
        return self.f.tell()

    def close(self):
        self.f.close()
        _record_close("%s file closed" % self.ident)


def echo_body(environ, via, qs):
    inp = environ["wsgi.input"]
    if via == "read":
        body = inp.read()
    elif via == "read-1":
        body = inp.read(-1)
    elif via == "readn":
        n = int(qs.get("n", "7"))
        parts = []
        while True:
            part = inp.read(n)
            assert len(part) <= n, "read(%d) returned %d bytes" % (n, len(part))
            if not part:
                break
            parts.append(part)
        body = b"".join(parts)
    elif via == "readline":
        size = int(qs.get("size", "-1"))
        parts = []
        while True:
            line = inp.readline(size) if size >= 0 else inp.readline()
            if size >= 0:
                assert len(line) <= size, "readline(%d) returned %d bytes" % (size, len(line))
            if not line:
                break
            parts.append(line)
        body = b"".join(parts)
    elif via == "readlines":
        lines = inp.readlines()
        body = b"".join(lines)
    elif via == "iter":
        body = b"".join(line for line in inp)
    else:
        raise ValueError("unknown via %r" % via)
    eof = "read=%r;readline=%r" % (inp.read(), inp.readline())
    return body, eof


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))

    def text(body, status="200 OK", ctype="text/plain", extra=()):
        if isinstance(body, str):
            body = body.encode()
        start_response(status, [("Content-Type", ctype),
                                ("Content-Length", str(len(body)))] + list(extra))
        return [body]

    if path in ("/", "/hello"):
        return text(HELLO)
    if path == "/pid":
        return text(str(os.getpid()))
    if path.startswith("/environ"):
        return text(json.dumps(environ_view(environ)), ctype="application/json")
    if path == "/osenv":
        return text(os.environ.get(qs["k"], "<unset>"))
    if path == "/cwd":
        return text(os.getcwd())
    if path == "/syspath":
        return text(json.dumps(sys.path), ctype="application/json")
    if path == "/import":
        try:
            mod = __import__(qs["name"])
            res = {"ok": True, "file": getattr(mod, "__file__", None)}
        except Exception as e:  # noqa: BLE001 - reported to the test
            res = {"ok": False, "file": "%s: %s" % (type(e).__name__, e)}
        return text(json.dumps(res), ctype="application/json")
    if path == "/echo":
        body, eof = echo_body(environ, qs.get("via", "read"), qs)
        return text(body, ctype="application/octet-stream", extra=[("X-Eof", eof)])
    if path == "/hash":
        inp = environ["wsgi.input"]
        h = hashlib.sha256()
        n = 0
        while True:
            block = inp.read(65536)
            if not block:
                break
            n += len(block)
            h.update(block)
        return text(json.dumps({"length": n, "sha256": h.hexdigest()}),
                    ctype="application/json")
    if path == "/ignore_body":
        return text(b"ignored")
    if path == "/stream":
        n = int(qs.get("n", "3"))
        delay = float(qs.get("delay", "1"))

        def gen():
            for i in range(n):
                if i:
                    time.sleep(delay)
                yield b"chunk %d\n" % i
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/sleep":
        time.sleep(float(qs.get("s", "1")))
        return text(str(os.getpid()))
    if path == "/raise_before":
        raise RuntimeError("boom-before-response")
    if path == "/raise_after":
        def gen():
            yield b"first chunk\n"
            raise RuntimeError("boom-after-first-chunk")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/raise_after_empty":
        def gen():
            yield b""
            raise RuntimeError("boom-after-empty-chunk")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-1;")
        write(b"written-2;")
        return [b"returned"]
    if path == "/excinfo_before":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("handled-before-body")
        except ValueError:
            body = b"oops handled"
            start_response("500 Internal Oops", [("Content-Type", "text/plain"),
                                                 ("Content-Length", str(len(body)))],
                           sys.exc_info())
        return [body]
    if path == "/excinfo_after":
        def gen():
            yield b"part1\n"
            try:
                raise ValueError("late-error-after-headers")
            except ValueError:
                try:
                    start_response("500 Internal Server Error", [], sys.exc_info())
                except ValueError as e:
                    environ["wsgi.errors"].write("exc_info re-raised: %s\n" % e)
                    environ["wsgi.errors"].flush()
                    raise
                environ["wsgi.errors"].write("exc_info NOT re-raised\n")
                environ["wsgi.errors"].flush()
            yield b"part2-must-not-be-sent\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/cl_big":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"0123456789"]
    if path == "/cl_small":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hel", b"loEXTRA", b"MORE-EXTRA"]
    if path == "/file":
        f = RecordingFile(qs["path"], qs.get("id", "file"))
        size = os.fstat(f.fileno()).st_size
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/status":
        code = int(qs.get("code", "204"))
        start_response("%d Whatever" % code, [("X-Status", str(code))])
        return []
    if path == "/closable":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosableIter(qs.get("id", "x"), int(qs.get("n", "3")), float(qs.get("delay", "0")))
    if path == "/closable_raise":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosableIter(qs.get("id", "x"), 10, 0, raise_after=1)
    if path == "/errors":
        environ["wsgi.errors"].write(qs.get("msg", "wsgi-errors-line") + "\n")
        environ["wsgi.errors"].flush()
        return text(b"logged")
    if path == "/big":
        n = int(qs.get("n", str(1 << 20)))
        return text(b"x" * n, ctype="application/octet-stream")
    if path == "/cookies":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2"),
                                  ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
        return [b"ok"]
    if path == "/inject":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("X-Safe", "v\r\nX-Injected: 1")])
        return [b"injected?"]
    return text(b"not found: " + path.encode("latin-1"), status="404 Not Found")


application = app
