"""A small Flask app: `unitcorn -c examples/app.toml` (Flask from a venv, see README)."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(message="Hello from unitcorn", path=request.path)


@app.post("/echo")
def echo():
    return request.get_data(), 200, {"Content-Type": request.content_type or "application/octet-stream"}
