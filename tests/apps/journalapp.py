"""wsgiapp plus a route whose traceback is too large for one journal datagram, and
/whoami (the pid, like /pid, under a path the tests do not count)."""

import os
import urllib.parse

from wsgiapp import app as base


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/whoami":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if environ.get("PATH_INFO") == "/raise_big":
        qs = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
        # A message larger than a datagram (about 208 KiB here) makes the sender use a memfd.
        raise RuntimeError("big-" + "x" * int(qs.get("n", "300000")) + "-end")
    return base(environ, start_response)
