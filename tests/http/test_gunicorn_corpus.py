"""gunicorn's own request corpus (tests/requests/{valid,invalid} in the gunicorn 27.0.1 sdist,
fetched from PyPI at test time, never copied into this repository), run against the real
server as gunicorn's test_valid_requests.py and test_invalid_requests.py run it against
gunicorn's parser:

- a valid case must reach the app with exactly the environ gunicorn's `wsgi.create` builds
  for it (method, target, RAW_URI, PATH_INFO, QUERY_STRING, protocol, every header, the
  scheme, the PROXY addresses) and exactly its body; a case of several requests must give
  them all, in order, on the one connection;
- an invalid case must be refused: a 4xx or 5xx from the server, the app never called.

Every case runs on every worker class's HTTP/1.1 path (sync with 1 thread, gthread with 4,
gevent, ASGI), with the case's own settings, its bytes sent at once and line by line.
What gunicorn makes of each case comes from gunicorn itself: gunicorn_corpus_oracle.py runs
the sdist's parser and `wsgi.create` on the same bytes.

Where unitcorn deliberately differs from gunicorn, the case is in DIFFERENCES below with the
RFC reason and what unitcorn does instead (README "Request parsing: where unitcorn differs
from gunicorn" lists the same cases); the test checks unitcorn does that.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.parse

import pytest

from harness import APPS, ConnClosed, Conn, IS_GUNICORN, Server, base_env, free_port, server_cmd

pytestmark = pytest.mark.unitcorn_only("the corpus is gunicorn's own; this runs it against unitcorn")

GUNICORN = "27.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("UNITCORN_TEST_CACHE", os.path.expanduser("~/.cache/unitcorn-tests"))

# name -> worker-class arguments and the app (every class's HTTP/1.1 path)
CLASSES = {
    "sync": (["-w", "1"], "corpus_echo:app"),
    "gthread": (["-w", "1", "--threads", "4"], "corpus_echo:app"),
    "gevent": (["-w", "1", "-k", "gevent"], "corpus_echo:app"),
    "asgi": (["-w", "1"], "corpus_echo:asgi"),
}

# Where unitcorn deliberately differs from gunicorn (README, "Request parsing: where
# unitcorn differs from gunicorn"). Each is a rule `plan` applies, not a list of cases to
# excuse: the cases it touches still run, with the outcome the rule gives.
DIFFERENCES = {
    "missing Host": "RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without "
                    "Host; gunicorn serves it. The case also runs with a Host added, and must "
                    "then reach the app exactly as gunicorn sees it.",
    "CONNECT": "RFC 9110 9.3.6: a server that makes no tunnels answers CONNECT 501; gunicorn "
               "hands it to the app, which cannot use the socket.",
    "absolute-form Host": "RFC 9112 3.2.2: for an absolute-form target the server MUST use the "
                          "target's authority as the Host; gunicorn keeps the Host header.",
    "header_map, strip_header_spaces": "unitcorn has no such switches: underscore headers are "
                                       "always dropped (gunicorn's default) and whitespace "
                                       "before a colon always refused (RFC 9112 5.1); a case "
                                       "that sets them runs with those values.",
    "PROXY on every request": "the PROXY header describes the connection: every request on it "
                              "carries its addresses; gunicorn gives them to the first only.",
    "characters outside RFC 3986": "`<`, `>` and a backtick in the path, `\"`, `<` and `>` in the "
                                   "query are not URI characters (RFC 3986 2, appendix A): hyper's "
                                   "URI parser refuses them with 400; gunicorn passes them on.",
    "userinfo in the target": "RFC 9110 4.2.4: userinfo in an http(s) URI is to be treated as an "
                              "error; unitcorn answers 400, gunicorn ignores it.",
    "fragment": "RFC 9112 3.2: a request target has no fragment; hyper drops one, so RAW_URI "
                "lacks it (PATH_INFO and QUERY_STRING are gunicorn's).",
    "folds across reads": "with permit_obsolete_folding, a fold is joined only when the field it "
                          "continues came in the same read; otherwise the request is refused "
                          "400, which RFC 9112 5.2 allows for any obs-fold. Sent line by line, "
                          "either may happen: the test takes the join (exact) or the 400.",
    "limit_request_line over 8190": "a limit_request_line above gunicorn's documented maximum "
                                    "(8190) is refused at start, naming the setting; gunicorn "
                                    "clamps it silently. The case runs at the maximum.",
    "body shorter than its Content-Length": "a case whose file holds less body than it declares "
                                            "cannot be sent whole over a connection: the client "
                                            "half-closes, and the request is dropped unanswered "
                                            "or refused, never given to the app.",
}

# gunicorn errors that mean the client stopped mid-request (its parser reached the end of
# the bytes): over a connection, the client half-closes.
ENDED_EARLY = ("NoMoreData", "ChunkMissingTerminator")


def sdist():
    """The gunicorn sdist, downloaded from PyPI once per machine and unpacked."""
    root = os.path.join(CACHE, "gunicorn-%s" % GUNICORN)
    if os.path.isdir(os.path.join(root, "tests", "requests")):
        return root
    os.makedirs(CACHE, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "--dest", CACHE, "gunicorn==%s" % GUNICORN],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "cannot fetch gunicorn %s's sdist from PyPI:\n%s" % (GUNICORN, r.stderr)
    unpack = root + ".partial"
    with tarfile.open(os.path.join(CACHE, "gunicorn-%s.tar.gz" % GUNICORN)) as tar:
        # (Debian 12's tarfile has no extraction filter: refuse what would land outside)
        members = tar.getmembers()
        for m in members:
            assert not (m.name.startswith("/") or ".." in m.name.split("/")
                        or m.issym() or m.islnk()), "unexpected sdist member %r" % m.name
        tar.extractall(unpack, members=members)
    os.rename(os.path.join(unpack, "gunicorn-%s" % GUNICORN), root)
    os.rmdir(unpack)
    return root


def load_corpus():
    out = subprocess.run([sys.executable, os.path.join(HERE, "gunicorn_corpus_oracle.py"), sdist()],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert out.returncode == 0, out.stderr
    corpus = json.loads(out.stdout)
    assert corpus["version"] == GUNICORN
    return corpus


CORPUS = None if IS_GUNICORN else load_corpus()
VALID = sorted(CORPUS["valid"]) if CORPUS else []
INVALID = sorted(CORPUS["invalid"]) if CORPUS else []


def args_for(settings):
    """unitcorn's command line for a case's gunicorn settings."""
    args = []
    for name, value in sorted(settings.items()):
        if name == "proxy_protocol":
            args += ["--proxy-protocol", "auto" if value in (True, "auto") else str(value)]
        elif name == "limit_request_line":
            args += ["--limit-request-line", str(min(value, 8190))]   # limits over 8190
        elif name == "limit_request_fields":
            args += ["--limit-request-fields", str(value)]
        elif name == "limit_request_field_size":
            args += ["--limit-request-field_size", str(value)]
        elif name in ("permit_obsolete_folding", "permit_unconventional_http_method",
                      "casefold_http_method"):
            if value:
                args.append("--" + name.replace("_", "-"))
        elif name == "forwarded_allow_ips":
            args += ["--forwarded-allow-ips", "*" if "*" in str(value) else str(value)]
        else:
            return None  # a gunicorn setting unitcorn does not have: see DIFFERENCES
    return args


@pytest.fixture(scope="module")
def corpus_servers(tmp_path_factory):
    """One server per (worker class, settings), started when first needed."""
    running = {}

    def get(cls, settings):
        key = (cls, json.dumps(settings, sort_keys=True))
        if key not in running:
            extra = args_for(settings)
            assert extra is not None, "no unitcorn setting for %r" % settings
            cls_args, app = CLASSES[cls]
            port = free_port()
            logdir = tmp_path_factory.mktemp("corpus-%s" % cls)
            cmd = server_cmd() + cls_args + extra + ["-b", "127.0.0.1:%d" % port,
                                                     "--log-level", "info", app]
            s = Server(cmd, base_env(), APPS, logdir, addr=("127.0.0.1", port),
                       name="corpus-%s-%d" % (cls, len(running)))
            running[key] = s
            s.wait_ready(path="/")
        return running[key]

    yield get
    for s in running.values():
        s.kill_all()


def send(conn, data, how, half_close):
    """Send at once, or line by line as separate segments. The client does not look for
    an answer while it sends: the server must not lose its refusal to a reset when bytes
    keep coming after it (the lingering close in worker/strict.rs)."""
    try:
        if how == "all":
            conn.send(data)
        else:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rest = data
            while rest:
                i = rest.find(b"\r\n")
                line, rest = (rest, b"") if i < 0 else (rest[:i + 2], rest[i + 2:])
                conn.send(line)
                time.sleep(0.001)
        if half_close:
            conn.sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before the last byte: the answer is still to be read


def adjusted(req, first):
    """A request gunicorn parsed, as unitcorn must give it to the app (DIFFERENCES)."""
    req = json.loads(json.dumps(req))
    environ = req["environ"]
    environ["RAW_URI"] = environ["RAW_URI"].partition("#")[0]    # fragment
    target = urllib.parse.urlsplit(req["uri"])
    if target.scheme in ("http", "https") and target.netloc:
        environ["HTTP_HOST"] = target.netloc                      # absolute-form Host
        req["headers"] = [[k, target.netloc if k == "HOST" else v] for k, v in req["headers"]]
    if first is not None and "PROXY_ADDR" in first["environ"] and "PROXY_ADDR" not in environ:
        for k in ("PROXY_PROTOCOL", "PROXY_ADDR", "PROXY_PORT", "REMOTE_ADDR"):
            environ[k] = first["environ"][k]                      # PROXY on every request
    return req


def refused_target(uri):
    """Whether unitcorn refuses this target where gunicorn takes it (DIFFERENCES)."""
    path, _, query = uri.partition("?")
    if any(c in path for c in "<>`") or any(c in query for c in '"<>'):
        return True                                               # characters outside RFC 3986
    target = urllib.parse.urlsplit(uri)
    return bool(target.scheme and "@" in target.netloc)         # userinfo in the target


def plan(outcome, folds_split=False):
    """What unitcorn must answer, request by request, to bytes gunicorn makes `outcome`
    of: ("app", request) reaches the app; ("refused",) is a 4xx/5xx of the server's own,
    after which the connection closes; ("status", n) that exact status; ("gone",) the
    client ended mid-request: an answer of the server's own or none, never the app.
    folds_split: the bytes hold folds and go line by line: each ("app", request) may be a
    400 instead (DIFFERENCES: folds across reads). Returns (expected, half_close)."""
    expected, half_close = _plan(outcome)
    if folds_split:
        expected = [("app_or_400", w[1]) if w[0] == "app" else w for w in expected]
    return expected, half_close


def _plan(outcome):
    expected, first = [], None
    for req in outcome.get("requests", []):
        has_host = any(k == "HOST" for k, _ in req["headers"])
        if req["method"] == "CONNECT":
            return expected + [("status", 501)], False            # CONNECT
        if refused_target(req["uri"]):
            return expected + [("status", 400)], False
        if req["version"] == [1, 1] and not has_host:
            return expected + [("status", 400)], False            # missing Host
        length = req["environ"].get("CONTENT_LENGTH")
        if length is not None and int(length) > len(base64.b64decode(req["body"])):
            return expected + [("gone",)], True                   # body shorter than declared
        expected.append(("app", adjusted(req, first)))
        first = first or req
    if "error" in outcome:
        if outcome["error"] in ENDED_EARLY:
            return expected + [("gone",)], True
        return expected + [("refused",)], False
    return expected, False


def has_folds(data):
    head = data.split(b"\r\n\r\n", 1)[0]
    return b"\r\n " in head or b"\r\n\t" in head


def exchanges(case, how):
    """(bytes, expected, half_close) to run for a case, the Host-added variant included."""
    outcome = case.get("as_unitcorn") or case["gunicorn"]          # header_map, strip_header_spaces
    folding = case["settings"].get("permit_obsolete_folding", False)
    out = []
    for data, outcome in [(case["data"], outcome)] + (
            [(case["hosted"]["data"], case["hosted"]["gunicorn"])] if "hosted" in case else []):
        data = base64.b64decode(data)
        split = how == "lines" and folding and "requests" in outcome and has_folds(data)
        out.append((data,) + plan(outcome, folds_split=split))
    return out


def expected_scope(req):
    """What an ASGI app sees of a request gunicorn parsed as `req`."""
    return {
        "method": req["method"],
        "path": urllib.parse.unquote(req["path"]),
        "raw_path": req["path"],
        "query_string": req["query"],
        "http_version": "%d.%d" % tuple(req["version"]),
        "scheme": req["environ"]["wsgi.url_scheme"],
        "headers": [[k.lower(), v] for k, v in req["headers"]],
    }


def run_exchange(server, cls, name, data, expected, half_close, how):
    with Conn(server.addr, timeout=5) as c:
        send(c, data, how, half_close)
        for i, want in enumerate(expected):
            what = "%s, request %d of %d (expected: %s)" % (name, i + 1, len(expected), want[0])
            try:
                r = c.read_response(want[1]["method"] if want[0].startswith("app") else "GET")
            except ConnClosed as e:
                assert want[0] == "gone", "%s: closed unanswered: %s" % (what, e)
                return
            if want[0] == "app_or_400" and r.status == 400 and r.header("X-Corpus-App") is None:
                assert c.closed_by_peer(5), "%s: not closed after the refusal" % what
                return
            if want[0] not in ("app", "app_or_400"):
                assert r.header("X-Corpus-App") is None, "%s: reached the app: %r" % (what, r)
                if want[0] == "status":
                    assert r.status == want[1], "%s: %r" % (what, r)
                else:
                    assert 400 <= r.status <= 599, "%s: %r" % (what, r)
                assert c.closed_by_peer(5), "%s: not closed after the refusal" % what
                return
            req = want[1]
            assert r.status == 200 and r.header("X-Corpus-App") == "1", \
                "%s: refused by the server: %r" % (what, r)
            got = r.json()
            assert base64.b64decode(got["body"]) == base64.b64decode(req["body"]), what
            if cls == "asgi":
                assert got["scope"] == expected_scope(req), what
            else:
                want_environ = dict(req["environ"])
                if "REMOTE_ADDR" not in want_environ:
                    got["environ"].pop("REMOTE_ADDR", None)
                assert got["environ"] == want_environ, what


def run_case(corpus_servers, kind, name, cls, how):
    case = CORPUS[kind][name]
    assert "oracle_error" not in case, case
    if kind == "invalid":
        # the corpus's own claim, checked against gunicorn's parser
        assert case["gunicorn"].get("error") == case["expected_error"], case["gunicorn"]
    settings = {k: v for k, v in case["settings"].items()
                if k not in ("header_map", "strip_header_spaces")}
    server = corpus_servers(cls, settings)
    for data, expected, half_close in exchanges(case, how):
        run_exchange(server, cls, name, data, expected, half_close, how)


@pytest.mark.parametrize("how", ["all", "lines"])
@pytest.mark.parametrize("cls", list(CLASSES))
@pytest.mark.parametrize("name", VALID)
def test_valid_case_reaches_the_app_as_gunicorn_sees_it(corpus_servers, name, cls, how):
    run_case(corpus_servers, "valid", name, cls, how)


@pytest.mark.parametrize("how", ["all", "lines"])
@pytest.mark.parametrize("cls", list(CLASSES))
@pytest.mark.parametrize("name", INVALID)
def test_invalid_case_is_refused(corpus_servers, name, cls, how):
    run_case(corpus_servers, "invalid", name, cls, how)


def test_the_corpus_is_gunicorns_whole_corpus():
    """The sdist's cases, all of them: a download that lost files must not pass as a run."""
    assert len(VALID) >= 60 and len(INVALID) >= 80, (len(VALID), len(INVALID))
