"""A WSGI app whose responses are large and checkable, for the slow-reader tests.

    /hello                 a short text body
    /gen?n=&chunk=&log=    n bytes of pattern(n), yielded chunk bytes at a time (64 KiB by
                           default); with log=PATH, the bytes yielded so far are written
                           to PATH before each chunk
    /whole?n=              n bytes of pattern(n) in one piece, with Content-Length
"""

import os
import urllib.parse

BLOCK = bytes(range(256)) * 256       # 64 KiB


def pattern(n):
    """The body of n bytes every route sends: 0, 1, ..., 255, 0, 1, ..."""
    return (BLOCK * (n // len(BLOCK) + 1))[:n]


def _record(path, n):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(n))
    os.replace(tmp, path)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    qs = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
        return [b"hello\n"]
    if path == "/gen":
        n = int(qs.get("n", str(10 << 20)))
        chunk = int(qs.get("chunk", str(64 << 10)))
        log = qs.get("log")

        def gen():
            # The pattern repeats every 256 bytes: each piece is a slice of one buffer,
            # so that the app holds no more than a chunk or two of memory.
            buf = BLOCK * (chunk // len(BLOCK) + 2)
            sent = 0
            while sent < n:
                start = sent % 256
                piece = buf[start:start + min(chunk, n - sent)]
                sent += len(piece)
                if log:
                    _record(log, sent)
                yield piece
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return gen()
    if path == "/whole":
        n = int(qs.get("n", str(10 << 20)))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))])
        return [pattern(n)]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
