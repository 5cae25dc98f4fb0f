"""What a request looked like to the app, as JSON: the WSGI environ keys gunicorn's request
corpus decides (or the ASGI scope's), and the body read whole. Every response of the app
carries `X-Corpus-App: 1`, so a test can tell the app's answer from the server's own.

WSGI: `corpus_echo:app`. ASGI: `corpus_echo:asgi`.
"""

import base64
import json

DECIDED = ("REQUEST_METHOD", "QUERY_STRING", "RAW_URI", "SERVER_PROTOCOL", "PATH_INFO",
           "SCRIPT_NAME", "CONTENT_TYPE", "CONTENT_LENGTH", "wsgi.url_scheme",
           "PROXY_PROTOCOL", "PROXY_ADDR", "PROXY_PORT", "REMOTE_ADDR")


def app(environ, start_response):
    seen = {k: environ[k] for k in DECIDED if k in environ}
    seen.update({k: v for k, v in environ.items() if k.startswith("HTTP_")})
    body = environ["wsgi.input"].read()
    out = json.dumps({"environ": seen, "body": base64.b64encode(body).decode()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out))), ("X-Corpus-App", "1")])
    return [out]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
    }
    out = json.dumps({"scope": seen, "body": base64.b64encode(body).decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(out)).encode()),
                            (b"x-corpus-app", b"1")]})
    await send({"type": "http.response.body", "body": out})
