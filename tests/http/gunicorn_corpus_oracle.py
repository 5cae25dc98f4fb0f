"""What gunicorn makes of each case of its own request corpus (tests/requests/ in its sdist):
run as `python gunicorn_corpus_oracle.py SDIST_DIR`, with that sdist's gunicorn package
imported (not the test venv's), it prints one JSON document on stdout.

For every case: its raw bytes (gunicorn's treq.py decoding of the .http file), the settings
its .py file changes from gunicorn's defaults, the exception gunicorn's own test expects
(invalid cases), and what gunicorn's parser makes of the bytes: each request with the WSGI
environ gunicorn's `wsgi.create` builds for it and its body read whole, or the error it
raises. Also, where they apply: the outcome with the settings unitcorn has no switch for
(header_map, strip_header_spaces) at the value unitcorn keeps, and the bytes with a Host
header added to each HTTP/1.1 request that lacks one, with their outcome.

Kept apart from the test (test_gunicorn_corpus.py) because it imports gunicorn's modules
from the sdist, which must not mix with the test venv's gunicorn.
"""

import base64
import copy
import glob
import json
import os
import sys

SDIST = os.path.abspath(sys.argv[1])
sys.path.insert(0, SDIST)
sys.path.insert(0, os.path.join(SDIST, "tests"))

from gunicorn.config import Config  # noqa: E402
from gunicorn.http import wsgi  # noqa: E402
from gunicorn.http.parser import RequestParser  # noqa: E402
import treq  # noqa: E402  (the sdist's tests/treq.py: its loader and its decoding)

# The environ keys the corpus decides: the request line, the headers, the scheme and the
# PROXY protocol's addresses. SERVER_*, REMOTE_PORT and wsgi.* objects are the server's own.
DECIDED = ("REQUEST_METHOD", "QUERY_STRING", "RAW_URI", "SERVER_PROTOCOL", "PATH_INFO",
           "SCRIPT_NAME", "CONTENT_TYPE", "CONTENT_LENGTH", "wsgi.url_scheme",
           "PROXY_PROTOCOL", "PROXY_ADDR", "PROXY_PORT")


class Sock:
    """What wsgi.create touches of a socket: the 100 Continue it may send."""

    def send(self, data):
        return len(data)


def changed_settings(cfg):
    default = Config()
    changed = {}
    for name, setting in cfg.settings.items():
        if name == "http_parser":
            continue
        if setting.value != default.settings[name].value:
            value = setting.value
            changed[name] = value if isinstance(value, (bool, int, str)) else repr(value)
    return changed


def environ_of(req, cfg):
    _, environ = wsgi.create(req, Sock(), ("127.0.0.1", 40000), "127.0.0.1:8000", cfg)
    decided = {k: environ[k] for k in DECIDED if k in environ}
    decided.update({k: v for k, v in environ.items() if k.startswith("HTTP_")})
    if req.proxy_protocol_info:
        decided["REMOTE_ADDR"] = environ["REMOTE_ADDR"]
    return decided


def outcome(data, cfg):
    """What gunicorn makes of `data` with `cfg`: its requests, or the error it raises."""
    requests = []
    try:
        for req in RequestParser(cfg, iter([data]), ("127.0.0.1", 40000)):
            environ = environ_of(req, cfg)
            body = req.body.read()
            requests.append({
                "method": req.method,
                "uri": req.uri,
                "path": req.path,
                "query": req.query,
                "version": list(req.version),
                "headers": [list(h) for h in req.headers],
                "environ": environ,
                "body": base64.b64encode(body).decode(),
            })
    except Exception as e:
        return {"error": type(e).__name__, "after": len(requests)}
    return {"requests": requests}


# gunicorn settings unitcorn does not have, and the value unitcorn behaves as
FIXED = {"header_map": "drop", "strip_header_spaces": False}


def as_unitcorn(data, cfg):
    """The outcome with the settings unitcorn has no switch for at the value it keeps."""
    if not any(cfg.settings[name].value != value for name, value in FIXED.items()):
        return None
    fixed = copy.deepcopy(cfg)
    for name, value in FIXED.items():
        fixed.set(name, value)
    return outcome(data, fixed)


def with_host(data, requests):
    """`data` with `Host: corpus.test` added to each HTTP/1.1 request that has none, or
    None when every request has one (each request line is found after the previous)."""
    if not any(r["version"] == [1, 1] and not any(k == "HOST" for k, _ in r["headers"])
               for r in requests):
        return None
    out, at = b"", 0
    for r in requests:
        line = ("%s %s HTTP/%d.%d\r\n" % (r["method"], r["uri"], *r["version"])).encode("latin-1")
        i = data.find(line, at)
        if i < 0:
            return None
        out += data[at:i + len(line)]
        at = i + len(line)
        if r["version"] == [1, 1] and not any(k == "HOST" for k, _ in r["headers"]):
            out += b"Host: corpus.test\r\n"
    return out + data[at:]


def case(path, kind):
    env = treq.load_py(path[:-len(".http")] + ".py", http_parser="python")
    cfg = env["cfg"]
    data = treq.request(path, env["request"]).data if kind == "valid" else treq.badrequest(path).data
    out = {"data": base64.b64encode(data).decode(), "settings": changed_settings(cfg),
           "gunicorn": outcome(data, cfg)}
    if kind == "invalid":
        expect = env["request"]
        out["expected_error"] = expect.__name__ if isinstance(expect, type) else repr(expect)
    fixed = as_unitcorn(data, cfg)
    if fixed is not None:
        out["as_unitcorn"] = fixed
    requests = (fixed or out["gunicorn"]).get("requests") or []
    hosted = with_host(data, requests)
    if hosted is not None:
        effective = cfg
        if fixed is not None:
            effective = copy.deepcopy(cfg)
            for name, value in FIXED.items():
                effective.set(name, value)
        out["hosted"] = {"data": base64.b64encode(hosted).decode(),
                         "gunicorn": outcome(hosted, effective)}
    return out


def main():
    out = {"version": __import__("gunicorn").__version__, "valid": {}, "invalid": {}}
    reqs = os.path.join(SDIST, "tests", "requests")
    for kind in ("valid", "invalid"):
        for path in sorted(glob.glob(os.path.join(reqs, kind, "*.http"))):
            name = os.path.basename(path)[:-len(".http")]
            try:
                out[kind][name] = case(path, kind)
            except Exception as e:  # a case gunicorn itself cannot run: say so, do not hide it
                out[kind][name] = {"oracle_error": "%s: %s" % (type(e).__name__, e)}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
