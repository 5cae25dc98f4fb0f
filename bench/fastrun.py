"""Run a WSGI app under fastwsgi or fastpysgi with N processes.

Usage: python fastrun.py fastwsgi|fastpysgi MODULE:ATTR HOST PORT WORKERS

Both servers ship the same `run(app, host, port, workers=N)`: the parent imports the app,
then forks N children, each binding its own listener on HOST:PORT with SO_REUSEPORT (the
kernel spreads new connections across them), running its libuv loop and calling the app on
that loop's thread. The parent only waits for the children.
"""

import importlib
import sys


def main():
    server_name, target, host, port, workers = sys.argv[1:6]
    module_name, _, attr = target.partition(":")
    sys.path.insert(0, ".")
    app = getattr(importlib.import_module(module_name), attr)
    server = importlib.import_module(server_name)
    server.run(app, host=host, port=int(port), loglevel=1, workers=int(workers))


if __name__ == "__main__":
    main()
