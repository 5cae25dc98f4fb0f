"""A plain ASGI 3 app (no framework) with one route per behaviour the ASGI tests check.

HTTP routes:
    /, /hello          fixed text body with Content-Length
    /pid               the worker's pid
    /scope...          JSON view of the scope (bytes as latin-1 text, tuples as lists)
    /echo              reads the request body message by message: JSON {"messages": [
                       [len, more_body], ...], "body": text}
    /stream?n=&delay=  n chunks of "chunk i\\n" with more_body, sleeping delay between them
    /wait_disconnect   answers 200 at once, then awaits receive() until http.disconnect
                       and records it (see /events)
    /hold_disconnect   awaits receive() before answering; records http.disconnect
    /events            JSON list of what the app recorded
    /sleep?s=          awaits asyncio.sleep(s), answers its pid
    /hang              awaits asyncio.sleep(100) in hang_here()
    /block?s=          time.sleep(s) in an async handler: the loop is blocked
    /raise             raises before the response
    /raise_after       raises after a first chunk (more_body)
    /noresponse        returns without sending anything
    /big?n=            n bytes of b"x" in 64 KiB chunks, more_body (back-pressure)

WebSocket routes:
    /ws/echo           accepts (with the first offered subprotocol), echoes text and bytes
    /ws/close          accepts, then closes with code 4001 and reason "bye"
    /ws/reject         closes before accepting: the client gets 403
    /ws/record         accepts; records the websocket.disconnect it gets (code, reason)
    /ws/hold           accepts, then waits for the disconnect; records it

Lifespan: startup sets state["started_by"] = pid (after $LIFESPAN_DELAY seconds); shutdown
appends "shutdown <pid>" to $LIFESPAN_LOG. With $LIFESPAN=raise it raises on lifespan,
with $LIFESPAN=fail it sends lifespan.startup.failed.
"""
import asyncio
import json
import os
import time
from urllib.parse import parse_qs

EVENTS = []


def _query(scope):
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


async def _answer(send, body, status=200, content_type=b"text/plain"):
    if isinstance(body, str):
        body = body.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send, value):
    await _answer(send, json.dumps(value), content_type=b"application/json")


async def lifespan(scope, receive, send):
    mode = os.environ.get("LIFESPAN", "")
    if mode == "raise":
        raise RuntimeError("no lifespan here")
    message = await receive()
    assert message["type"] == "lifespan.startup"
    if mode == "fail":
        await send({"type": "lifespan.startup.failed", "message": "the database is down"})
        return
    await asyncio.sleep(float(os.environ.get("LIFESPAN_DELAY", "0")))
    scope["state"]["started_by"] = os.getpid()
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    log = os.environ.get("LIFESPAN_LOG")
    if log:
        with open(log, "a") as f:
            f.write("shutdown %d\n" % os.getpid())
    await send({"type": "lifespan.shutdown.complete"})


async def hang_here():
    await asyncio.sleep(100)


async def http(scope, receive, send):
    path = scope["path"]
    q = _query(scope)
    if path in ("/", "/hello"):
        return await _answer(send, "Hello, World!")
    if path == "/pid":
        return await _answer(send, str(os.getpid()))
    if path.endswith("/scope") or path.startswith("/scope") or "/scope/" in path:
        view = {k: _jsonable(v) for k, v in scope.items() if k != "state"}
        view["state"] = dict(scope.get("state", {}))
        view["types"] = {k: type(v).__name__ for k, v in scope.items()}
        view["header_types"] = sorted({type(x).__name__ for h in scope["headers"] for x in h})
        return await _json(send, view)
    if path == "/echo":
        messages, body = [], b""
        while True:
            m = await receive()
            assert m["type"] == "http.request", m
            messages.append([len(m.get("body", b"")), m.get("more_body", False)])
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        return await _json(send, {"messages": messages, "body": body.decode("latin-1")})
    if path == "/stream":
        n, delay = int(q.get("n", "3")), float(q.get("delay", "0"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(n):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i,
                        "more_body": True})
            if delay:
                await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/big":
        n = int(q.get("n", "1048576"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(n).encode())]})
        block = b"x" * 65536
        while n > 0:
            part = block[:n]
            n -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": n > 0})
        return
    if path == "/wait_disconnect":
        await _answer(send, "sent")
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                EVENTS.append("disconnect after response")
                return
    if path == "/hold_disconnect":
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                EVENTS.append("disconnect before response")
                return
    if path == "/events":
        return await _json(send, EVENTS)
    if path == "/sleep":
        await asyncio.sleep(float(q.get("s", "1")))
        return await _answer(send, str(os.getpid()))
    if path == "/hang":
        await hang_here()
        return await _answer(send, "never")
    if path == "/block":
        time.sleep(float(q.get("s", "100")))
        return await _answer(send, "blocked")
    if path == "/raise":
        raise ValueError("boom before the response")
    if path == "/raise_after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        raise ValueError("boom after the first chunk")
    if path == "/noresponse":
        return
    return await _answer(send, "not found", status=404)


async def websocket(scope, receive, send):
    path = scope["path"]
    m = await receive()
    assert m["type"] == "websocket.connect", m
    if path == "/ws/reject":
        await send({"type": "websocket.close", "code": 1008})
        return
    if path == "/ws/echo":
        protocols = scope.get("subprotocols") or []
        await send({"type": "websocket.accept",
                    "subprotocol": protocols[0] if protocols else None})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            if m.get("text") is not None:
                await send({"type": "websocket.send", "text": m["text"]})
            else:
                await send({"type": "websocket.send", "bytes": m["bytes"]})
    if path == "/ws/close":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        return
    if path in ("/ws/record", "/ws/hold"):
        await send({"type": "websocket.accept"})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                EVENTS.append({"path": path, "code": m["code"], "reason": m.get("reason", "")})
                return
    await send({"type": "websocket.close", "code": 1000})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    return await http(scope, receive, send)
