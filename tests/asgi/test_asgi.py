"""ASGI 3 apps (issue 6, points 3 and 5): detection, the scope, streaming request and
response bodies, http.disconnect, the lifespan protocol (auto/on/off), root_path, real
Starlette and FastAPI apps; deadlines (a hung task answered 504 with its stack in the log, a
blocked loop replaced through the heartbeat), max_requests recycling, graceful stop."""

import json
import os
import signal
import threading
import time

import pytest

from harness import alive, build_request, chunked, wait_for

pytestmark = pytest.mark.unitcorn_only("ASGI is unitcorn's (gunicorn needs uvicorn's worker)")


# ---------------------------------------------------------------------------- detection

def test_plain_async_function_is_detected_and_served(start_server):
    """No worker_class given: `async def app(scope, receive, send)` is served as ASGI."""
    s = start_server("asgiapp:app")
    r = s.get("/hello")
    assert r.status == 200 and r.body == b"Hello, World!", r
    assert r.header("content-length") == "13"
    assert s.wait_log(r"ASGI app on an (uvloop|asyncio)")


@pytest.mark.parametrize("klass", ["asgi", "uvicorn.workers.UvicornWorker"])
def test_worker_class_asgi_and_uvicorns_class_path(start_server, klass):
    s = start_server("asgiapp:app", "-k", klass)
    assert s.get("/hello").body == b"Hello, World!"


def test_uvloop_is_used_when_the_venv_has_it(start_server):
    s = start_server("asgiapp:app")
    s.wait_log(r"ASGI app on an uvloop")


# ---------------------------------------------------------------------------- the scope

def test_scope_fields(start_server):
    s = start_server("asgiapp:app", "-w", "1")
    host, port = s.addr
    with s.conn() as c:
        client_port = c.sock.getsockname()[1]
        c.send(build_request("GET", "/scope/caf%C3%A9?x=1&y=%20z",
                             [("X-Custom-Header", "Value One"), ("Accept", "a/b")],
                             host="%s:%d" % (host, port), close=True))
        r = c.read_response()
    assert r.status == 200, r
    sc = r.json()
    assert sc["type"] == "http"
    assert sc["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert sc["http_version"] == "1.1"
    assert sc["method"] == "GET"
    assert sc["scheme"] == "http"
    assert sc["path"] == "/scope/café"
    assert sc["raw_path"] == "/scope/caf%C3%A9"
    assert sc["query_string"] == "x=1&y=%20z"
    assert sc["root_path"] == ""
    assert sc["client"] == ["127.0.0.1", client_port]
    assert sc["server"] == ["127.0.0.1", port]
    headers = dict(sc["headers"])
    assert headers["x-custom-header"] == "Value One"
    assert headers["accept"] == "a/b"
    assert all(k == k.lower() for k in headers)
    assert sc["header_types"] == ["bytes"]
    assert sc["types"]["raw_path"] == "bytes" and sc["types"]["query_string"] == "bytes"
    assert sc["types"]["path"] == "str" and sc["types"]["client"] == "tuple"
    # lifespan state (set at startup by the worker that serves) is in every scope
    assert sc["state"]["started_by"] == int(s.get("/pid").body)


def test_root_path_setting_and_script_name(start_server):
    s = start_server("asgiapp:app", "--root-path", "/api")
    sc = s.get("/scope").json()
    assert sc["root_path"] == "/api" and sc["path"] == "/api/scope"
    # a proxy that keeps the prefix: the path is not prefixed twice
    sc = s.get("/api/scope").json()
    assert sc["root_path"] == "/api" and sc["path"] == "/api/scope"
    s2 = start_server("asgiapp:app", env_extra={"SCRIPT_NAME": "/mounted"})
    sc = s2.get("/scope").json()
    assert sc["root_path"] == "/mounted" and sc["path"] == "/mounted/scope"


# ------------------------------------------------------------------ bodies and disconnect

def test_small_body_is_one_message(start_server):
    s = start_server("asgiapp:app")
    r = s.request("POST", "/echo", body=b"hello")
    assert r.json() == {"messages": [[5, False]], "body": "hello"}
    r = s.request("POST", "/echo")
    assert r.json() == {"messages": [[0, False]], "body": ""}


def test_streaming_request_body_arrives_as_it_is_sent(start_server):
    """A chunked body reaches the app message by message (more_body), not buffered whole."""
    s = start_server("asgiapp:app")
    with s.conn() as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], close=True))
        parts = [b"a" * 10, b"b" * 20, b"c" * 30]
        for p in parts:
            c.send(b"%x\r\n%s\r\n" % (len(p), p))
            time.sleep(0.2)
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    got = r.json()
    assert got["body"] == "a" * 10 + "b" * 20 + "c" * 30
    assert [m for m in got["messages"] if m[0]] == [[10, True], [20, True], [30, True]] or \
        [m[0] for m in got["messages"] if m[0]] == [10, 20, 30], got
    assert got["messages"][-1][1] is False


def test_big_request_body_streams(start_server):
    s = start_server("asgiapp:app")
    body = os.urandom(1 << 20)
    r = s.request("POST", "/echo", body=body, timeout=20)
    got = r.json()
    assert len(got["body"]) == len(body)
    assert got["body"].encode("latin-1") == body
    assert len(got["messages"]) > 1, "a 1 MiB body came in one message: it was buffered"


def test_streaming_response_is_chunked_and_flushed(start_server):
    s = start_server("asgiapp:app")
    with s.conn() as c:
        c.send(build_request("GET", "/stream?n=3&delay=0.5", close=True))
        head = c.read_head()
        assert head.status == 200 and head.header("transfer-encoding") == "chunked"
        t0 = time.monotonic()
        first = c.read_until(b"chunk 0\n", timeout=5)
        assert time.monotonic() - t0 < 0.4, "the first chunk waited for the rest"
        rest = c.read_to_eof(timeout=5)
    assert b"chunk 2\n" in first + rest


def test_back_pressure_big_response(start_server):
    """A 4 MiB response through `send` with more_body: delivered whole (the app waits on the
    high-water mark instead of queueing it all)."""
    s = start_server("asgiapp:app")
    r = s.get("/big?n=%d" % (4 << 20), timeout=20)
    assert r.status == 200 and len(r.body) == 4 << 20 and r.complete


def test_http_disconnect_after_response_and_when_the_client_leaves(start_server):
    s = start_server("asgiapp:app", "-w", "1")
    assert s.get("/wait_disconnect").status == 200
    # the client leaves while the app is still waiting on its request
    c = s.conn()
    c.send(build_request("GET", "/hold_disconnect"))
    time.sleep(0.3)
    c.close()

    def events():
        return s.get("/events").json()
    got = wait_for(lambda: len(events()) >= 2 and events(), 5)
    assert sorted(got or events()) == ["disconnect after response", "disconnect before response"]


def test_app_exceptions(start_server):
    s = start_server("asgiapp:app", "-w", "1")
    r = s.get("/raise")
    assert r.status == 500
    s.wait_log(r"Exception in ASGI application\n(.|\n)*ValueError: boom before the response")
    with s.conn() as c:
        c.send(build_request("GET", "/raise_after"))
        r = c.read_response()
        assert r.status == 200 and not r.complete and r.body == b"first"
    s.wait_log(r"ValueError: boom after the first chunk")
    r = s.get("/noresponse")
    assert r.status == 500
    s.wait_log(r"returned without sending a response")
    assert s.get("/hello").status == 200


def test_head_request_has_no_body(start_server):
    s = start_server("asgiapp:app")
    with s.conn() as c:
        c.send(build_request("HEAD", "/hello"))
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("content-length") == "13"
        c.send(build_request("GET", "/hello", close=True))
        assert c.read_response().body == b"Hello, World!"


# ------------------------------------------------------------------------------ lifespan

def test_lifespan_startup_before_ready_and_shutdown_on_quit(start_server, tmp_path):
    log = tmp_path / "lifespan.log"
    t0 = time.monotonic()
    s = start_server("asgiapp:app", "-w", "2",
                     env_extra={"LIFESPAN_LOG": log, "LIFESPAN_DELAY": "1"})
    # the workers accept only once their startup completed: no request saw an empty state
    assert time.monotonic() - t0 >= 1.0
    for _ in range(4):
        sc = s.get("/scope").json()
        assert "started_by" in sc["state"], sc["state"]
    workers = s.wait_workers(2)
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0, s.stderr()[-2000:]
    lines = sorted(log.read_text().split())
    assert lines.count("shutdown") == 2
    assert sorted(int(x) for x in lines if x.isdigit()) == sorted(workers)


def test_lifespan_auto_tolerates_an_app_without_it(start_server):
    s = start_server("asgiapp:app", env_extra={"LIFESPAN": "raise"})
    assert s.get("/hello").status == 200
    s.wait_log(r"'lifespan' protocol appears unsupported")
    assert "state" not in s.get("/scope").json()["types"]


def test_lifespan_on_makes_a_failure_fatal(start_server):
    s = start_server("asgiapp:app", "--lifespan", "on", env_extra={"LIFESPAN": "raise"},
                     wait=False)
    assert s.wait_exit(15) not in (None, 0)
    assert "RuntimeError: no lifespan here" in s.stderr()


def test_lifespan_startup_failed_stops_the_server(start_server):
    s = start_server("asgiapp:app", env_extra={"LIFESPAN": "fail"}, wait=False)
    assert s.wait_exit(15) not in (None, 0)
    assert "lifespan startup failed: the database is down" in s.stderr()


def test_lifespan_off_skips_it(start_server, tmp_path):
    log = tmp_path / "lifespan.log"
    s = start_server("asgiapp:app", "--lifespan", "off", env_extra={"LIFESPAN_LOG": log})
    assert "state" not in s.get("/scope").json()["types"]
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(15) == 0
    assert not log.exists()


# --------------------------------------------------------------- Starlette and FastAPI

def test_starlette_app(start_server):
    s = start_server("starletteapp:app", "-w", "2", "--root-path", "/sub")
    r = s.get("/")
    assert r.status == 200 and r.body == b"Hello from Starlette"
    got = s.get("/items/42?q=x").json()
    assert got["id"] == 42 and got["q"] == "x" and got["root_path"] == "/sub"
    assert got["url"].endswith("/sub/items/42?q=x")
    r = s.request("POST", "/json", headers=[("Content-Type", "application/json")],
                  body=json.dumps({"a": [1, 2]}).encode())
    assert r.json() == {"got": {"a": [1, 2]}, "greeting": "hello from lifespan"}
    with s.conn() as c:
        c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")],
                             close=True) + chunked([b"x" * 70000, b"y" * 5000]))
        assert c.read_response().json() == {"received": 75000}
    r = s.get("/stream")
    assert r.body == b"".join(b"line %d\n" % i for i in range(5))
    assert s.get("/missing").status == 404


def test_fastapi_app(start_server):
    s = start_server("fastapiapp:app", "-w", "2")
    assert s.get("/").json() == {"hello": "fastapi", "started": ["up"]}
    assert s.get("/items/7?limit=3").json() == {"item_id": 7, "limit": 3}
    assert s.get("/items/nope").status == 422
    r = s.request("POST", "/items", headers=[("Content-Type", "application/json")],
                  body=b'{"name": "pen", "price": 10}')
    assert r.json() == {"name": "pen", "price_with_tax": 12.0}
    r = s.request("POST", "/items", headers=[("Content-Type", "application/json")],
                  body=b'{"name": "pen"}')
    assert r.status == 422 and "price" in r.text
    assert s.get("/openapi.json").json()["info"]["title"] == "FastAPI"


# --------------------------------------------------- deadlines, recycling, graceful stop

def test_hung_task_gets_504_and_its_stack_in_the_log(start_server):
    s = start_server("asgiapp:app", "-w", "1", "-t", "2")
    pid = int(s.get("/pid").body)
    t0 = time.monotonic()
    r = s.get("/hang", timeout=10)
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert 1.8 <= took < 3.5, took
    s.wait_log(r"request timed out after 2s(.|\n)*in hang_here", timeout=5)
    s.wait_log(r"asgiapp\.py", timeout=1)
    # one hung task does not cost the worker: it serves on, nothing was killed
    assert int(s.get("/pid").body) == pid
    time.sleep(1.5)
    assert "WORKER TIMEOUT" not in s.stderr()
    assert int(s.get("/pid").body) == pid


def test_blocked_loop_is_replaced_through_the_heartbeat(start_server):
    """time.sleep in an async handler blocks the loop: the I/O thread still answers the 504,
    and the heartbeat, which follows the loop, makes the master replace the worker."""
    s = start_server("asgiapp:app", "-w", "1", "-t", "2")
    (w,) = s.wait_workers(1)
    t0 = time.monotonic()
    r = s.get("/block?s=60", timeout=10)
    assert r.status == 504 and time.monotonic() - t0 < 3.5
    s.wait_log(r"WORKER TIMEOUT \(pid:%d\)[^\n]*heartbeat" % w, timeout=6)
    assert wait_for(lambda: not alive(w), 5), "blocked worker %d never killed" % w
    # the traceback dump (SIGABRT) shows the loop thread inside the blocking handler
    s.wait_log(r'File "[^"]*asgiapp\.py", line \d+ in http', timeout=5)
    r = s.wait_ready(timeout=10, path="/pid")
    assert int(r.body) != w


def test_max_requests_recycles_the_worker(start_server):
    """Each worker leaves after its max_requests; its replacement (which boots first, with
    its lifespan startup) takes over."""
    s = start_server("asgiapp:app", "-w", "1", "--max-requests", "10")
    pids = []
    deadline = time.monotonic() + 30
    for _ in range(300):
        r = s.get("/pid")
        assert r.status == 200
        pids.append(int(r.body))
        if len(set(pids)) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(set(pids)) >= 3, pids
    first = pids[0]
    assert pids.count(first) >= 10, "worker %d left before max_requests" % first


def test_quit_lets_in_flight_requests_finish(start_server):
    s = start_server("asgiapp:app", "-w", "1", "--graceful-timeout", "10")
    out = {}

    def slow():
        out["r"] = s.get("/sleep?s=2", timeout=15)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    s.signal(signal.SIGQUIT)
    t.join(15)
    assert out["r"].status == 200, out
    assert s.wait_exit(10) == 0
