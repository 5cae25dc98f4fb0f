"""WebSockets for ASGI apps (issue 6, point 4), against a real client (the `websockets`
package): echo of text and binary, subprotocols, ping/pong answered by the server, a
server-initiated close with code and reason, the client's close code seen by the app,
rejection before accept (403), the message size limit (1009), 1001 on a graceful stop, and
Starlette's and FastAPI's WebSocket routes."""

import contextlib
import signal

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from harness import wait_for

pytestmark = pytest.mark.unitcorn_only("ASGI is unitcorn's (gunicorn needs uvicorn's worker)")


def url(s, path):
    host, port = s.addr
    return "ws://%s:%d%s" % (host, port, path)


def events(s):
    return s.get("/events").json()


def test_echo_text_and_binary(start_server):
    s = start_server("asgiapp:app", "-w", "1")
    with connect(url(s, "/ws/echo"), open_timeout=5, close_timeout=5) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\x01\xffbinary")
        assert ws.recv(timeout=5) == b"\x00\x01\xffbinary"
        big = "x" * 200_000                # several frames' worth, one message
        ws.send(big)
        assert ws.recv(timeout=5) == big
        for i in range(50):
            ws.send("m%d" % i)
        assert [ws.recv(timeout=5) for _ in range(50)] == ["m%d" % i for i in range(50)]


def test_subprotocol_is_negotiated(start_server):
    s = start_server("asgiapp:app")
    with connect(url(s, "/ws/echo"), subprotocols=["chat.v2", "chat.v1"],
                 open_timeout=5) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers.get("Sec-WebSocket-Protocol") == "chat.v2"


def test_ping_is_answered_by_the_server(start_server):
    s = start_server("asgiapp:app")
    with connect(url(s, "/ws/echo"), open_timeout=5) as ws:
        for _ in range(3):
            pong = ws.ping(b"are you there")
            assert pong.wait(5), "no pong within 5 s"
        ws.send("still open")
        assert ws.recv(timeout=5) == "still open"


def test_server_initiated_close_with_code_and_reason(start_server):
    s = start_server("asgiapp:app")
    with connect(url(s, "/ws/close"), open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 4001 and ws.close_reason == "bye"


def test_client_close_code_reaches_the_app(start_server):
    s = start_server("asgiapp:app", "-w", "1")
    with connect(url(s, "/ws/record"), open_timeout=5) as ws:
        ws.close(code=4002, reason="client done")
    got = wait_for(lambda: events(s), 5)
    assert got == [{"path": "/ws/record", "code": 4002, "reason": "client done"}]


def test_rejection_before_accept_is_403(start_server):
    s = start_server("asgiapp:app")
    with pytest.raises(InvalidStatus) as e:
        connect(url(s, "/ws/reject"), open_timeout=5)
    assert e.value.response.status_code == 403


def test_oversize_message_closes_with_1009(start_server):
    s = start_server("asgiapp:app", "-w", "1", "--ws-max-size", "1024")
    with connect(url(s, "/ws/echo"), open_timeout=5) as ws:
        ws.send("y" * 1024)                 # at the limit: fine
        assert ws.recv(timeout=5) == "y" * 1024
        ws.send("z" * 1025)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 1009
    assert s.get("/hello").status == 200


def test_graceful_stop_closes_open_websockets_with_1001(start_server):
    s = start_server("asgiapp:app", "-w", "1", "--graceful-timeout", "10")
    with connect(url(s, "/ws/hold"), open_timeout=5) as ws, \
            connect(url(s, "/ws/echo"), open_timeout=5) as ws2:
        ws2.send("before")
        assert ws2.recv(timeout=5) == "before"
        s.signal(signal.SIGQUIT)
        for sock in (ws, ws2):
            with pytest.raises(ConnectionClosed):
                sock.recv(timeout=5)
            assert sock.close_code == 1001, sock.close_code
    assert s.wait_exit(10) == 0, s.stderr()[-2000:]


def test_a_websocket_does_not_hold_the_http_side(start_server):
    """HTTP requests are served while WebSockets stay open on the same worker."""
    s = start_server("asgiapp:app", "-w", "1")
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(url(s, "/ws/echo"), open_timeout=5))
                   for _ in range(5)]
        for i, ws in enumerate(sockets):
            ws.send("n%d" % i)
        assert s.get("/hello").status == 200
        assert [ws.recv(timeout=5) for ws in sockets] == ["n%d" % i for i in range(5)]


def test_starlette_websocket_route(start_server):
    s = start_server("starletteapp:app")
    with connect(url(s, "/ws"), open_timeout=5) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "echo: hi"


def test_fastapi_websocket_route(start_server):
    s = start_server("fastapiapp:app")
    with connect(url(s, "/ws"), open_timeout=5) as ws:
        ws.send(b"abc")
        assert ws.recv(timeout=5) == b"cba"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 4000 and ws.close_reason == "done"
