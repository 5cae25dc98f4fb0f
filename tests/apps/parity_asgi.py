"""The ASGI side of tests/workers/test_parity.py: the routes of parity_wsgi.py, each
making the ASGI form of the same mistake (see there).

    /twice           http.response.start sent twice
    /not_iterable    an http.response.body whose body is 42, not bytes
    /hang            awaits asyncio.sleep(30)
    /big?n=N         N bytes of "x", in one send
    /ws              a WebSocket: accepted (101), as only ASGI can
"""
import asyncio

HOP = {b"connection": b"x-parity", b"transfer-encoding": b"chunked",
       b"keep-alive": b"timeout=77", b"upgrade": b"x-parity/1"}


async def _text(send, body, status=200, extra=()):
    body = body.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())] + list(extra)})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    path = scope["path"]
    if path in ("/", "/hello"):
        return await _text(send, "Hello, parity\n")
    if path == "/echo":
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        return await _text(send, "got %d" % size)
    if path == "/hop":
        name = scope["query_string"].partition(b"=")[2].lower()
        return await _text(send, "hop\n", extra=[(name, HOP[name]), (b"x-kept", b"yes")])
    if path in ("/cl_long", "/cl_short", "/bad_cl"):
        length = {"/cl_long": b"5", "/cl_short": b"100", "/bad_cl": b"12abc"}[path]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", length)]})
        await send({"type": "http.response.body", "body": b"0123456789"})
        return
    if path == "/bad_status":
        await send({"type": "http.response.start", "status": 99, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})
        return
    if path == "/bad_header":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"bad name", b"x")]})
        await send({"type": "http.response.body", "body": b"x"})
        return
    if path == "/twice":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})
        return
    if path == "/not_iterable":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": 42})
        return
    if path == "/big":
        n = int(scope["query_string"].decode().partition("=")[2])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(n).encode())]})
        await send({"type": "http.response.body", "body": b"x" * n})
        return
    if path == "/hang":
        await asyncio.sleep(30)
        return await _text(send, "woke\n")
    return await _text(send, "not found\n", 404)
