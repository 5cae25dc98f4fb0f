"""A 1 MiB response body returned as one bytes object, with a Content-Length."""

BODY = b"x" * (1 << 20)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY)))])
    return [BODY]
