"""wsgiapp's routes plus a few for the master's tests (tests/master/: test_timeouts.py,
test_recycling.py):

    /hang              never returns: it loops in hang_here_forever() (the traceback a
                       deadline makes the worker write must name that function)
    /alloc?mib=N       allocates N MiB and keeps them (the worker's resident memory grows);
                       answers the worker's VmRSS in KiB
    /rss               the worker's VmRSS in KiB
"""

import os
import time
import urllib.parse

import wsgiapp

_kept = []


def hang_here_forever():
    while True:
        time.sleep(0.05)


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/hang":
        hang_here_forever()
    if path in ("/alloc", "/rss"):
        if path == "/alloc":
            # b"\x01" * n writes every byte: the pages are resident, not just reserved
            _kept.append(b"\x01" * (int(qs.get("mib", "60")) << 20))
        body = str(_rss_kib()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return wsgiapp.app(environ, start_response)


application = app
