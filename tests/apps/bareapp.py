"""A module exposing `application`: served by the bare APP `bareapp`."""


def application(environ, start_response):
    body = b"bare-module-application\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):  # must NOT be the one picked for a bare `bareapp`
    body = b"wrong-callable-app\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
