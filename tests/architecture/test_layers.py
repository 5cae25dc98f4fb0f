"""The layers run one way: tools/check_layers.py passes on the tree, and fails, naming the
file and line, on an import that runs up (ARCHITECTURE.md, "Layers")."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "check_layers.py"


def check(src):
    return subprocess.run([sys.executable, str(SCRIPT), str(src)], capture_output=True,
                          text=True, timeout=60)


def test_the_tree_keeps_its_layers():
    done = check(REPO / "src")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all along the layers" in done.stdout


def inject(tmp_path, file, text, after_line=None):
    """A copy of src/ with `text` put into `file` (after line `after_line`, else at the
    end); the line number `text` lands on."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src)
    path = src / file
    lines = path.read_text().splitlines(keepends=True)
    at = len(lines) if after_line is None else after_line
    lines.insert(at, text + "\n")
    path.write_text("".join(lines))
    return src, at + 1


@pytest.mark.parametrize("file, line, rule", [
    # The bottom layer reaching for the request path.
    ("config/value.rs", "use crate::worker::service;", "config -> worker"),
    # The processes never name each other.
    ("master/mod.rs", "use crate::worker::service::Service;", "master -> worker"),
    ("worker/accept.rs", "use crate::{config, master::workers};", "worker -> master"),
    # python/ serves both processes and names neither.
    ("python/hooks.rs", "use crate::master as arbiter;", "python -> master"),
    # The journal writer is a leaf: its callers map their records to its fields.
    ("logging/journald.rs", "use super::access_log::AccessRecord;", "is a leaf"),
    # The two config file readers share config::source, not each other.
    ("config/file.rs", "use super::python_file::PyValue;", "never name each other"),
])
def test_an_upward_import_fails_naming_its_file_and_line(tmp_path, file, line, rule):
    src, lineno = inject(tmp_path, file, line, after_line=0)
    done = check(src)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "src/%s:%d: " % (file, lineno) in done.stdout, done.stdout
    assert rule in done.stdout, done.stdout


def test_comments_and_strings_are_not_imports(tmp_path):
    text = ('// use crate::worker::service;\n/* crate::master */\n'
            'const _NOT_A_PATH: &str = "crate::worker::service"; // r"x"\n'
            "const _QUOTE: char = '\"';")
    src, _ = inject(tmp_path, "config/value.rs", text)
    done = check(src)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_new_root_module_must_be_given_a_layer(tmp_path):
    src, _ = inject(tmp_path, "lib.rs", "mod frobnicator;", after_line=0)
    (src / "frobnicator.rs").write_text("pub fn f() {}\n")
    done = check(src)
    assert done.returncode == 1
    assert "'frobnicator' has no layer" in done.stdout, done.stdout


def test_the_picture_in_architecture_md_shows_every_module_of_the_table():
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    text = (REPO / "ARCHITECTURE.md").read_text()
    picture = re.search(r"```text\n(.*?)```", text, re.S).group(1)
    for layer, modules in table.LAYERS:
        assert layer in picture, "layer %r missing from ARCHITECTURE.md's picture" % layer
        for module in modules:
            name = "lib.rs" if module == "crate" else module
            assert re.search(r"\b%s\b" % re.escape(name), picture), (
                "module %r missing from ARCHITECTURE.md's picture" % name)
