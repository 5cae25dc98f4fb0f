#!/usr/bin/env python3
"""Fail on an import that runs up the layers (ARCHITECTURE.md, "Layers").

Reads every src/**/*.rs, finds each path it names through `crate::`, `super::` or `self::`
(in `use` declarations and in code, not in comments or strings), resolves it to the module
it names, and checks that edge against the tables below. Exit status 1, and one line a
broken rule (file:line, the edge, the rule), when an edge is not allowed; 0 otherwise.

    python3 tools/check_layers.py [SRC_DIR]     (default: the src/ next to tools/)

The tables are the picture at the top of ARCHITECTURE.md, in data: the two must agree, so
change them together (tests/architecture/test_layers.py checks that every module here is
in the picture). Python 3 standard library only: tests/run.sh runs it before any test.
"""

import re
import sys
from pathlib import Path

# The root modules (src/<name>.rs or src/<name>/), by layer, bottom first. `crate` is the
# crate root itself, src/lib.rs: `run`, the dispatch on the mode, the exit status. A module
# may name the modules of lower layers only: not another module of its own layer, not one
# above it.
LAYERS = [
    ("base", ["config", "program", "proctitle", "scoreboard", "reload_report"]),
    ("services", ["logging", "listeners"]),
    ("metrics", ["statsd"]),
    ("shared by the processes", ["boot", "python"]),
    ("processes", ["master", "worker"]),
    ("modes", ["check_config", "control", "man", "properties", "fuzz_api"]),
    ("root", ["crate"]),
    ("front door", ["extension"]),
]

# Modules allowed less than their layer: only these modules below them.
ONLY = {
    # The bottom: nothing of processes, requests or the interpreter.
    "config": set(),
    # The error and access logs take plain values; what counts their events is handed in.
    "logging": {"config"},
}

# Files that name nothing else of the crate, not even their siblings: they take plain values
# and know none of their callers' types.
LEAVES = ["logging::journald"]

# Modules of one root module that never name each other: they share a lower module instead.
APART = [
    # The TOML and the Python config file readers share config::source.
    ("config::file", "config::python_file"),
]

RANK = {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}
LAYER_NAME = {module: name for name, modules in LAYERS for module in modules}

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|::|[{},;*]|\$|\S")


def blank_comments_and_strings(text):
    """`text` with comments, string and char literals replaced by spaces (newlines kept),
    so that line numbers still hold and nothing inside them looks like a path."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        out.append("".join(c if c == "\n" else " " for c in s))

    while i < n:
        c = text[i]
        prev = text[i - 1] if i else " "
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(text[i:end])
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(text[i:j])
            i = j
        elif (c == "r" or text.startswith("br", i)) and not (prev.isalnum() or prev == "_"):
            start = i + (2 if c == "b" else 1)
            m = re.match(r'(#*)"', text[start:])
            if not m:
                out.append(c)
                i += 1
                continue
            close = '"' + m.group(1)
            end = text.find(close, start + len(m.group(0)))
            end = n if end < 0 else end + len(close)
            blank(text[i:end])
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(text[i : j + 1])
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}', '"'), else a lifetime or label.
            m = re.match(r"'(\\(u\{[0-9A-Fa-f]+\}|x[0-9A-Fa-f]{2}|.)|[^\\'\n])'", text[i:])
            if m:
                blank(m.group(0))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tokens(code):
    """(token, line) pairs."""
    line = 1
    pos = 0
    for m in TOKEN.finditer(code):
        line += code.count("\n", pos, m.start())
        pos = m.start()
        yield m.group(0), line


def module_of(path, src):
    """The module path of the file `path` under `src`: src/a/mod.rs and src/a.rs are
    ["a"], src/a/b.rs is ["a", "b"], src/lib.rs is []."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod" or parts == ["lib"]:
        parts = parts[:-1]
    return parts


def paths(toks, i):
    """The paths the path starting at toks[i] names, each a list of segments, with the
    index after it. `a::{b, c::{self, D}}` names a::b, a::c and a::c::D."""
    segments = []
    while i < len(toks):
        word = toks[i][0]
        if word == "{":
            found, i = group(toks, i + 1)
            return [segments + p for p in found] or [segments], i
        if word == "*":
            return [segments], i + 1
        if not re.match(r"[A-Za-z_]", word):
            break
        segments.append(word)
        if i + 1 < len(toks) and toks[i + 1][0] == "::":
            i += 2
            continue
        i += 1
        break
    return [segments], i


def group(toks, i):
    """The paths of a `{...}` group whose first item is at toks[i]; the index after `}`."""
    found = []
    while i < len(toks) and toks[i][0] != "}":
        if toks[i][0] == ",":
            i += 1
            continue
        item, i = paths(toks, i)
        found += [[] if p == ["self"] else p for p in item]
        # `as alias`: skip to the item's end.
        while i < len(toks) and toks[i][0] not in (",", "}"):
            i += 1
    return found, i + 1


def references(text, file_module):
    """(line, from-module, to-module path) for each path the file names through `crate`,
    `super` or `self`, resolved to absolute segments."""
    toks = list(tokens(blank_comments_and_strings(text)))
    inline = []  # (name, brace depth it opened at) of `mod name { ... }` blocks
    depth = 0
    i = 0
    while i < len(toks):
        word, line = toks[i]
        if word == "{":
            depth += 1
        elif word == "}":
            depth -= 1
            if inline and inline[-1][1] == depth:
                inline.pop()
        elif (
            word == "mod"
            and i + 2 < len(toks)
            and re.match(r"[A-Za-z_]", toks[i + 1][0])
            and toks[i + 2][0] == "{"
        ):
            inline.append((toks[i + 1][0], depth))
            depth += 1
            i += 3
            continue
        starts_path = i == 0 or toks[i - 1][0] not in ("::",)
        if (
            word in ("crate", "super", "self")
            and starts_path
            and i + 1 < len(toks)
            and toks[i + 1][0] == "::"
        ):
            here = file_module + [name for name, _ in inline]
            found, after = paths(toks, i)
            for segments in found:
                absolute = resolve(segments, here)
                if absolute is not None:
                    yield line, here, absolute
            i = max(after, i + 1)
            continue
        i += 1


def resolve(segments, here):
    """`segments` (starting with crate, super or self) as a path from the crate root."""
    if segments[0] == "crate":
        return segments[1:]
    base = list(here)
    rest = list(segments)
    if rest[0] == "self":
        rest = rest[1:]
    while rest and rest[0] == "super":
        if not base:
            return None
        base.pop()
        rest = rest[1:]
    return base + rest


def root(module_path, roots):
    return module_path[0] if module_path and module_path[0] in roots else "crate"


def under(path, prefix):
    return path[: len(prefix)] == prefix


def check(src):
    """The broken rules under `src`, one string each, and the number of edges checked."""
    src = Path(src)
    files = sorted(p for p in src.rglob("*.rs") if p != src / "main.rs")
    roots = set()
    lib = src / "lib.rs"
    if lib.exists():
        code = blank_comments_and_strings(lib.read_text())
        roots = set(re.findall(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", code))
    problems = [
        f"{lib.relative_to(src.parent)}: module {module!r} has no layer; add it to LAYERS in "
        "tools/check_layers.py and to the picture in ARCHITECTURE.md"
        for module in sorted(roots - set(RANK))
    ]
    edges = 0
    for file in files:
        name = file.relative_to(src.parent) if src.parent != src else file
        file_module = module_of(file, src)
        for line, here, target in references(file.read_text(), file_module):
            edges += 1
            at = f"{name}:{line}"
            shown = "::".join(["crate"] + target)
            a, b = root(here, roots), root(target, roots)
            if a != b:
                for module in (a, b):
                    if module not in RANK:
                        problems.append(
                            f"{at}: {a} -> {b} ({shown}): module {module!r} has no layer; "
                            "add it to LAYERS in tools/check_layers.py and to the picture in "
                            "ARCHITECTURE.md"
                        )
                if a not in RANK or b not in RANK:
                    continue
                if a in ONLY and b not in ONLY[a]:
                    rule = (
                        f"{a} names only {', '.join(sorted(ONLY[a]))} of the crate"
                        if ONLY[a]
                        else f"{a} is the bottom layer and names nothing else of the crate"
                    )
                    problems.append(f"{at}: {a} -> {b} ({shown}): {rule}")
                elif RANK[b] >= RANK[a]:
                    where = "its own layer" if RANK[b] == RANK[a] else "a higher layer"
                    problems.append(
                        f"{at}: {a} -> {b} ({shown}): {b} is in {where} "
                        f"({LAYER_NAME[b]!r}; {a} is in {LAYER_NAME[a]!r}); a module names "
                        "only modules of lower layers"
                    )
            for leaf in LEAVES:
                leaf_path = leaf.split("::")
                if under(here, leaf_path) and not under(target, leaf_path):
                    problems.append(
                        f"{at}: {'::'.join(here)} -> {shown}: {leaf} is a leaf, it takes "
                        "plain values and names nothing else of the crate"
                    )
            for x, y in APART:
                xp, yp = x.split("::"), y.split("::")
                if (under(here, xp) and under(target, yp)) or (
                    under(here, yp) and under(target, xp)
                ):
                    problems.append(
                        f"{at}: {'::'.join(here)} -> {shown}: {x} and {y} never name each "
                        "other; what they share lives in a module below both"
                    )
    return problems, edges


def main(argv):
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    if not (src / "lib.rs").exists():
        print(f"check_layers: {src}/lib.rs not found", file=sys.stderr)
        return 2
    problems, edges = check(src)
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"check_layers: {len(problems)} import(s) against the layers "
            "(ARCHITECTURE.md, tools/check_layers.py)",
            file=sys.stderr,
        )
        return 1
    print(f"check_layers: {edges} crate-internal paths, all along the layers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
