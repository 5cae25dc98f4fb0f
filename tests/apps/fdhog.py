"""Holds open files on request, to run a worker out of descriptors
(tests/master/test_open_files.py): /hog opens /dev/null until EMFILE and keeps them,
/release closes them, / answers ok."""
import os

HELD = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hog":
        try:
            while len(HELD) < 1 << 20:
                HELD.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        body = b"holding %d\n" % len(HELD)
    elif path == "/release":
        while HELD:
            os.close(HELD.pop())
        body = b"released\n"
    else:
        body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
