"""The WSGI side of tests/workers/test_parity.py: one route per case that every worker
class (sync, gthread, gevent, and parity_asgi.py for ASGI) must answer alike.

    /, /hello        "Hello, parity\\n"
    /echo            reads the whole body: "got N"
    /hop?h=NAME      answers with the hop-by-hop header NAME set by the app, and X-Kept
    /cl_long         Content-Length 5, a body of 10 bytes
    /cl_short        Content-Length 100, a body of 10 bytes
    /bad_cl          Content-Length "12abc"
    /bad_status      status "99 Too Low"
    /bad_header      a header named "Bad Name"
    /twice           start_response called twice
    /not_iterable    returns 42
    /hang            sleeps 30 s (time.sleep: a greenlet's under gevent)
    /big?n=N         N bytes of "x", in one chunk
    /ws              a WebSocket handshake is a plain request here: 200 "no websocket"
"""
import time

HOP = {"Connection": "x-parity", "Transfer-Encoding": "chunked", "Keep-Alive": "timeout=77",
       "Upgrade": "x-parity/1"}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")

    def text(body, status="200 OK", extra=()):
        body = body.encode()
        start_response(status, [("Content-Type", "text/plain"),
                                ("Content-Length", str(len(body)))] + list(extra))
        return [body]

    if path in ("/", "/hello"):
        return text("Hello, parity\n")
    if path == "/echo":
        return text("got %d" % len(environ["wsgi.input"].read()))
    if path == "/hop":
        name = query.partition("=")[2]
        return text("hop\n", extra=[(name, HOP[name]), ("X-Kept", "yes")])
    if path == "/cl_long":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"0123456789"]
    if path == "/cl_short":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"0123456789"]
    if path == "/bad_cl":
        start_response("200 OK", [("Content-Length", "12abc")])
        return [b"0123456789ab"]
    if path == "/bad_status":
        start_response("99 Too Low", [])
        return [b"x"]
    if path == "/bad_header":
        start_response("200 OK", [("Bad Name", "x")])
        return [b"x"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"x"]
    if path == "/not_iterable":
        start_response("200 OK", [])
        return 42
    if path == "/big":
        n = int(query.partition("=")[2])
        start_response("200 OK", [("Content-Length", str(n))])
        return [b"x" * n]
    if path == "/hang":
        time.sleep(30)
        return text("woke\n")
    if path == "/ws":
        return text("no websocket")
    return text("not found\n", "404 Not Found")
