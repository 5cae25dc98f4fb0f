"""Flask JSON endpoint: jsonify of a small dict."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/")
def index():
    return jsonify(message="Hello, World!", id=42, ok=True, tags=["a", "b", "c"])
