"""A module whose import ends the process with os._exit(1): the worker dies while booting
(not an app load error, which is a Python exception). Each import appends a line to
$IMPORT_LOG when set."""

import os

if os.environ.get("IMPORT_LOG"):
    with open(os.environ["IMPORT_LOG"], "a") as f:
        f.write("dies_at_boot imported in %d\n" % os.getpid())

os._exit(1)
