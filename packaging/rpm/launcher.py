#!/usr/bin/python3 -s
"""unitcorn's launcher, the .rpm's /usr/bin/unitcorn.

It runs the Python package the .rpm installs (../lib/unitcorn/python/unitcorn, the abi3
extension module and its two .py files) in the interpreter running this file: the
distribution's python3 (3.9 or later) through the line above, or any CPython >= 3.9
started by hand (`python3.12 /usr/bin/unitcorn APP`). The package directory is found
from this file's real path, so a tree installed elsewhere (`rpm --root DIR`) runs its own
copy. -s: the user's site-packages (~/.local) take no part in a system service.
"""
import os
import sys

BIN = os.path.dirname(os.path.realpath(__file__))
PACKAGE_DIR = os.path.join(os.path.dirname(BIN), "lib", "unitcorn", "python")

# Python put this file's directory (/usr/bin) first on sys.path: no module comes from there.
if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == BIN:
    del sys.path[0]
sys.path.insert(0, PACKAGE_DIR)
# A binary upgrade (USR2, which the .rpm's upgrade scriptlet sends) starts the new master
# as `python3 -m unitcorn`: PYTHONPATH lets it find the same package directory.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [PACKAGE_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                     if p and p != PACKAGE_DIR])

VERSION = "%d.%d" % sys.version_info[:2]
if sys.version_info < (3, 9):
    # The extension module needs symbols of 3.9's C API: say so, not "undefined symbol".
    sys.exit("unitcorn: Python %s is not supported: unitcorn serves CPython 3.9 and later "
             "(%s)" % (VERSION, sys.executable))

# No __pycache__ under /usr/lib/unitcorn: files the package does not own, written by
# whichever Python version runs first. The app's own imports cache as usual.
dont_write_bytecode = sys.dont_write_bytecode
sys.dont_write_bytecode = True
try:
    import unitcorn
except ImportError as e:
    import sysconfig
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        # A free-threaded build has no stable ABI (before 3.15's abi3t): the abi3 module is
        # not for it. The refusal the core itself gives (src/python/mod.rs).
        sys.exit("unitcorn: free-threaded CPython (%st) is not supported yet: run the app on "
                 "a regular (GIL) build of CPython %s" % (VERSION, VERSION))
    sys.exit("unitcorn: cannot import the unitcorn package from %s with Python %s (%s): %s"
             % (PACKAGE_DIR, VERSION, sys.executable, e))
finally:
    sys.dont_write_bytecode = dont_write_bytecode

unitcorn.main()
