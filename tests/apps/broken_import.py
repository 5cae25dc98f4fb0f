"""A module that raises at import; each import appends a line to $IMPORT_LOG."""

import os

if os.environ.get("IMPORT_LOG"):
    with open(os.environ["IMPORT_LOG"], "a") as f:
        f.write("broken_import imported in %d\n" % os.getpid())


def _helper_that_fails():
    raise RuntimeError("boom-at-import 42")


_helper_that_fails()
