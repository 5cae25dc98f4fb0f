"""An app factory: `factory:create_app()` and `factory:create_app('arg')`."""


def create_app(name="default"):
    body = ("factory:%s\n" % name).encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def app(environ, start_response):
    body = b"factory-module-level-app\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
