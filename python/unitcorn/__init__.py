"""unitcorn: a prefork HTTP server for Python web apps, in Rust, at home under systemd.

This package is the front door for the app's own virtualenv: the console script
``unitcorn`` and ``python -m unitcorn`` run the Rust core inside this interpreter, so the
app sees its own ``sys.executable``, ``sys.prefix``, ``site`` and ``sysconfig``.
"""
import sys

from unitcorn._core import __version__
from unitcorn._core import main as _core_main

__all__ = ["__version__", "main"]


def main(argv=None):
    """Run unitcorn with ``argv`` (``sys.argv`` by default) and exit with its status."""
    sys.exit(_core_main(list(sys.argv if argv is None else argv)))
