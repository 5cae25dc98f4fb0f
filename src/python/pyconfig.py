"""Running a gunicorn Python config file (`-c gunicorn.conf.py`, `-c python:pkg.module`).

The file runs as gunicorn runs it (a module named __config__, or an import), and its
module-level names come back to Rust as plain tagged tuples, so that the checking and
the messages stay in one place (config/python_file.rs). Nothing here knows the settings.
"""
import ast
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import traceback


def _tag(value):
    """A module-level value as ('kind', ...) for the Rust side."""
    if value is None:
        return ("none",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", str(value))
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        return ("str", text if isinstance(text, str) else os.fsdecode(text))
    if isinstance(value, (list, tuple)):
        return ("list", [_tag(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(_tag(k), _tag(v)) for k, v in value.items()])
    if inspect.ismodule(value) or inspect.isclass(value):
        return ("other", type(value).__name__, repr(value))
    if callable(value):
        return ("callable", value, _describe(value), _positional_range(value))
    return ("other", type(value).__name__, repr(value)[:80])


def _describe(fn):
    """`name (file:line)`: how a hook is shown by --print-config and in errors."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    code = getattr(fn, "__code__", None)
    if code is not None:
        return "%s (%s:%d)" % (name, code.co_filename, code.co_firstlineno)
    return name


def _positional_range(fn):
    """(fewest, most) positional arguments the callable takes; most is -1 for *args."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (0, -1)
    fewest = most = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            most = -1
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            if p.default is p.empty:
                fewest += 1
            if most != -1:
                most += 1
    return (fewest, most)


def _assignment_lines(path):
    """name -> line of the last top-level statement that binds it (for error messages)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return {}
    lines = {}

    def bind(target, lineno):
        if isinstance(target, ast.Name):
            lines[target.id] = lineno
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                bind(t, lineno)

    def visit(body):
        for node in body:
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    bind(t, node.lineno)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                bind(node.target, node.lineno)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines[node.name] = node.lineno
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(node, part, []) or [])
                for handler in getattr(node, "handlers", []) or []:
                    visit(handler.body)

    visit(tree.body)
    return lines


def _failure(path, exc):
    """('error', path, line or None, text) for an exception raised by the config file."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == path:
        line = exc.lineno
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == path:
                line = frame.lineno
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ("error", path, line, text)


def run(location, cwd):
    """Run the config file `location` (a path, or `python:module`); `cwd` (the app's
    directory) and the working directory go first on sys.path, as the current directory
    does for `python file.py`."""
    for directory in (os.getcwd(), cwd):
        if directory and directory not in sys.path:
            sys.path.insert(0, directory)
    if location.startswith("python:"):
        name = location[len("python:"):]
        try:
            module = importlib.import_module(name)
        except BaseException as exc:  # noqa: B902 -- a config's SystemExit is an error too
            path = getattr(exc, "filename", None) or location
            return _failure(path, exc)
        path = getattr(module, "__file__", None) or location
    else:
        path = os.path.abspath(location[len("file:"):] if location.startswith("file:") else location)
        if not os.path.exists(path):
            return ("missing", path)
        # gunicorn's way: any extension, run as a module named __config__.
        loader = importlib.machinery.SourceFileLoader("__config__", path)
        spec = importlib.util.spec_from_file_location("__config__", path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules["__config__"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: B902
            return _failure(path, exc)
    lines = _assignment_lines(path) if os.path.isfile(path) else {}
    entries = []
    for name, value in vars(module).items():
        if name.startswith("__") or inspect.ismodule(value):
            continue
        entries.append((name, _tag(value), lines.get(name)))
    return ("ok", path, entries)
