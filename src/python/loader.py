"""unitcorn's interpreter set-up and app loader (runs once per process, never per request).

Kept in Python because it is Python's own rules we follow here: how a virtualenv is
activated (what `site` does for a venv's interpreter) and how gunicorn resolves an APP
argument (`module:name`, `module:factory(args)`).
"""
import ast
import importlib
import os
import sys


class AppLoadError(Exception):
    """The app could not be found or is not a WSGI callable; the message says which."""


def activate_virtualenv(venv):
    """Make `venv`'s packages importable, as its own python would see them."""
    venv = os.path.abspath(venv)
    cfg = os.path.join(venv, "pyvenv.cfg")
    if not os.path.isfile(cfg):
        raise AppLoadError("virtualenv %s has no pyvenv.cfg: not a virtualenv "
                           "(make one with: /usr/bin/python3 -m venv %s)" % (venv, venv))
    version = None
    with open(cfg) as f:
        for line in f:
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                version = value.strip()
    ours = "%d.%d" % sys.version_info[:2]
    if version is not None and ".".join(version.split(".")[:2]) != ours:
        raise AppLoadError("virtualenv %s was made with Python %s, but unitcorn runs Python %s "
                           "(%s): recreate it with /usr/bin/python3 -m venv"
                           % (venv, version, ours, sys.version.split()[0]))
    site_packages = os.path.join(venv, "lib", "python" + ours, "site-packages")
    import site
    before = list(sys.path)
    site.addsitedir(site_packages)
    added = [p for p in sys.path if p not in before]
    # A venv's packages shadow the system's, as they do for the venv's own interpreter.
    sys.path[:] = added + before
    sys.prefix = sys.exec_prefix = venv
    sys.executable = os.path.join(venv, "bin", "python")
    os.environ["VIRTUAL_ENV"] = venv


def setup(chdir, pythonpath, virtualenv):
    """Prepare sys.path like gunicorn: the working directory first, then --pythonpath."""
    sys.argv = sys.argv if sys.argv and sys.argv[0] else ["unitcorn"]
    if not getattr(sys, "executable", None) or sys.executable.endswith("unitcorn"):
        sys.executable = "/usr/bin/python3"
    if virtualenv:
        activate_virtualenv(virtualenv)
    for path in reversed([p.strip() for p in (pythonpath or "").split(",") if p.strip()]):
        path = os.path.abspath(path)
        if path not in sys.path:
            sys.path.insert(0, path)
    chdir = os.path.abspath(chdir)
    if chdir in sys.path:
        sys.path.remove(chdir)
    sys.path.insert(0, chdir)


def import_app(spec):
    """Resolve `module`, `module:name`, `module:factory()` or `module:factory(args)`."""
    module_name, _, expr = spec.partition(":")
    expr = expr or "application"
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppLoadError("failed to parse %r as an attribute name or function call" % expr) from None
    if isinstance(tree, ast.Name):
        name, args, kwargs = tree.id, None, None
    elif isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name):
        name = tree.func.id
        try:
            args = [ast.literal_eval(a) for a in tree.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords}
        except ValueError:
            raise AppLoadError("factory arguments in %r must be literal values" % expr) from None
    else:
        raise AppLoadError("failed to parse %r as an attribute name or function call" % expr)

    # An import error propagates as it is: its traceback is what the operator needs.
    module = importlib.import_module(module_name)
    try:
        app = getattr(module, name)
    except AttributeError:
        raise AppLoadError("failed to find attribute %r in %r" % (name, module_name)) from None
    if args is not None:
        app = app(*args, **kwargs)
        if app is None:
            raise AppLoadError("the factory %r in module %r returned None" % (name, module_name))
    if not callable(app):
        raise AppLoadError("application object %r in %r must be callable" % (expr, module_name))
    return app


def forget_modules_under(roots):
    """Drop from sys.modules what was loaded from the app's own directories."""
    roots = [os.path.join(os.path.abspath(r), "") for r in roots]
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and "site-packages" not in path and any(
                os.path.abspath(path).startswith(r) for r in roots):
            del sys.modules[name]


def format_exception(exc, tb=None):
    """The traceback as the error log shows it."""
    import traceback
    if isinstance(exc, AppLoadError):
        return "Failed to load the app: %s\n" % exc
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def app_module_files():
    """The files of the loaded modules that are the app's own: not the standard library's,
    not an installed package's (site-packages, dist-packages). What `reload` watches, as
    gunicorn's reloader watches the loaded modules."""
    import sysconfig
    paths = sysconfig.get_paths()
    stdlib = tuple(os.path.join(os.path.abspath(paths[k]), "")
                   for k in ("stdlib", "platstdlib") if paths.get(k))
    out = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        path = os.path.abspath(path)
        if path.endswith(".pyc"):
            # A module run from its cache: its source is what an editor changes.
            source = getattr(getattr(module, "__spec__", None), "origin", None)
            if isinstance(source, str) and source.endswith(".py"):
                path = os.path.abspath(source)
        parts = path.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts or path.startswith(stdlib):
            continue
        if os.path.isfile(path):
            out.append(path)
    return out
