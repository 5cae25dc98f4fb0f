"""A Flask app: importable only when the test venv (<repo>/.venv-test) is active."""

import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/json")
def json_endpoint():
    return jsonify(hello="flask", pid=os.getpid(), args=request.args.to_dict())


@app.post("/form")
def form():
    return jsonify(form=request.form.to_dict(), content_type=request.content_type)


@app.get("/flaskfile")
def flaskfile():
    import flask
    return flask.__file__
