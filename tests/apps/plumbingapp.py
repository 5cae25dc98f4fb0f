"""wsgiapp's routes plus one for the process-plumbing tests (tests/master/test_preload.py):

    /gc_freeze_count   "PID COUNT": the worker's pid and gc.get_freeze_count() there (the
                       objects in the collector's permanent generation: > 0 after
                       gc.freeze())
"""

import gc
import os

import wsgiapp


def app(environ, start_response):
    if environ.get("PATH_INFO", "") == "/gc_freeze_count":
        body = b"%d %d" % (os.getpid(), gc.get_freeze_count())
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return wsgiapp.app(environ, start_response)


application = app
