"""The gevent worker's test app (tests/gevent/test_gevent.py): a Flask app whose waits go through
the monkey-patched standard library, a raw WSGI streaming part, and hung routes."""

import hashlib
import os
import socket
import time

import gevent
from flask import Flask, Response, request

# What the app saw at import: the worker patches before importing it.
PATCHED_AT_IMPORT = {
    "socket": socket.socket.__module__.startswith("gevent"),
    "time.sleep": time.sleep.__module__.startswith("gevent"),
}
PRODUCED = {}          # stream id -> chunks produced so far

app = Flask(__name__)


@app.route("/")
def index():
    return "ok\n"


@app.route("/pid")
def pid():
    return str(os.getpid())


@app.route("/patched")
def patched():
    return PATCHED_AT_IMPORT


@app.route("/sleep")
def sleep():
    time.sleep(float(request.args.get("s", "1")))
    return "slept\n"


@app.route("/upload", methods=["POST", "PUT"])
def upload():
    digest, size = hashlib.sha256(), 0
    stream = request.environ["wsgi.input"]
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


@app.route("/stream")
def stream():
    """n chunks of size bytes, gevent.sleep(pause) between them; progress in PRODUCED."""
    n = int(request.args.get("n", "5"))
    size = int(request.args.get("size", "16"))
    pause = float(request.args.get("pause", "0.2"))
    key = request.args.get("id", "")

    def chunks():
        for i in range(n):
            PRODUCED[key] = i + 1
            yield (b"%08d" % i) + b"x" * (size - 8)
            if pause:
                gevent.sleep(pause)
    return Response(chunks(), mimetype="application/octet-stream")


@app.route("/produced")
def produced():
    return str(PRODUCED.get(request.args.get("id", ""), 0))


@app.route("/hang")
def hang():
    return sleep_here_forever()


def sleep_here_forever():
    time.sleep(100)
    return "woke up\n"


@app.route("/spin")
def spin():
    return spin_here_forever()


@app.route("/spin-later")
def spin_later():
    """A background greenlet that blocks the hub once this response is out."""
    gevent.spawn_later(0.3, spin_here_forever)
    return "ok\n"


def spin_here_forever():
    n = 0
    while True:
        n += 1
