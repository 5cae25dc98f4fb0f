"""Counts its calls, so that a test can tell the app was not called for a refused request.

    /count     the number of calls so far in this worker, this one included
    anything   reads the whole body; answers "METHOD PATH_INFO body-length"

Every response carries X-Pid: the worker that answered.
"""

import os

CALLS = 0


def app(environ, start_response):
    global CALLS
    CALLS += 1
    path = environ["PATH_INFO"]
    if path == "/count":
        body = b"%d" % CALLS
    else:
        data = environ["wsgi.input"].read()
        body = b"%s %s %d" % (environ["REQUEST_METHOD"].encode("latin-1"),
                              path.encode("latin-1"), len(data))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("X-Pid", str(os.getpid()))])
    return [body]
