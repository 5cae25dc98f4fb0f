"""Waits 100 ms in time.sleep — gevent's once the server monkey-patched the standard library
(unitcorn -k gevent, gunicorn -k gevent) — then answers 13 bytes: many slow requests at once."""

import time

BODY = b"Hello, World!"


def app(environ, start_response):
    time.sleep(0.1)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
