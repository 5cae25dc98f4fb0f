"""Reports which interpreter serves it, and uses it the ways apps do: a subprocess of
sys.executable, a multiprocessing "spawn" pool, a ProcessPoolExecutor. Plain WSGI, so it
runs in any venv (the per-version matrix installs no framework for it)."""
import concurrent.futures
import json
import multiprocessing
import os
import site
import subprocess
import sys
import sysconfig


def square(n):
    return n * n


def interpreter():
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "version": "%d.%d" % sys.version_info[:2],
        "purelib": sysconfig.get_paths()["purelib"],
        "site_packages": site.getsitepackages(),
        "stdlib": os.path.dirname(os.__file__),
    }


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/interpreter":
        body = interpreter()
    elif path == "/subprocess":
        out = subprocess.run([sys.executable, "-c", "import sys; print(sys.prefix)"],
                             capture_output=True, text=True, timeout=30, check=True)
        body = {"child_prefix": out.stdout.strip()}
    elif path == "/spawn":
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            body = {"squares": pool.map(square, range(5))}
    elif path == "/pool":
        with concurrent.futures.ProcessPoolExecutor(2) as pool:
            body = {"squares": list(pool.map(square, range(5)))}
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
