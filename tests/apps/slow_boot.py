"""A module whose import takes $SLOW_BOOT_S seconds (default: an hour), in
import_that_takes_forever(); then a hello app."""

import os
import time


def import_that_takes_forever():
    deadline = time.monotonic() + float(os.environ.get("SLOW_BOOT_S", "3600"))
    while time.monotonic() < deadline:
        time.sleep(0.05)


import_that_takes_forever()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"slow\n"]
