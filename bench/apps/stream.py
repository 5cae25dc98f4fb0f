"""A streamed body: a generator yielding 100 chunks of 1 KiB, no Content-Length
(so HTTP/1.1 servers send it chunked)."""

CHUNK = b"y" * 1024
CHUNKS = 100


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (CHUNK for _ in range(CHUNKS))
