#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs cargo's tests, then the
# integration suite (pytest on tests/, against the real release binary).
#
#   bash tests/run.sh [pytest args...]
#   bash tests/run.sh tests/master            (one feature: tests/README.md lists them)
#
# Idempotent; meant for a fresh Debian 12 machine as root (CI) as much as a developer's.
# It installs the Debian packages it needs when missing (listed below), makes <repo>/.venv-test
# with Debian's /usr/bin/python3 (the Python unitcorn embeds — never the pyenv one on PATH),
# pip-installs tests/requirements.txt into it, `cargo build --release`, `cargo test --release`,
# a short fuzz run (tests/fuzz.sh),
# builds the Python package's abi3 wheel (maturin), then runs the venv's pytest. Exits non-zero on any failure.
#
# Environment: TEST_SERVER=gunicorn runs the HTTP-level tests against gunicorn instead (to
# check the tests themselves); UNITCORN_BIN overrides the binary under test.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SYS_PY=/usr/bin/python3
VENV="$REPO/.venv-test"

say() { printf '== %s\n' "$*"; }

# --- system packages (only what is missing; quiet) --------------------------------------
need=()
# systemd-container: systemd-nspawn, for tests/systemd/test_real_systemd.py (it boots the
# host's own systemd in a container; installing it also upgrades the host's systemd
# libraries to the same version, harmless where systemd is not running). procps: /bin/kill,
# used by that test. tests/packaging/test_packages.py: dpkg-dev (dpkg-shlibdeps), rpm
# (rpmbuild), lintian, man-db and groff-base (man --warnings), adduser (the .deb depends on
# it).
for pkg in python3 python3-venv libpython3.11-dev strace nginx-core libnginx-mod-stream openssl \
    systemd-container procps dpkg-dev rpm lintian man-db groff-base adduser; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        need+=("$pkg")
    fi
done
if ((${#need[@]})); then
    say "apt-get install ${need[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the tests' venv, made with Debian's Python -----------------------------------------
want_ver="$("$SYS_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -x "$VENV/bin/python" ]; then
    have_ver="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    home="$(sed -n 's/^home = //p' "$VENV/pyvenv.cfg" 2>/dev/null || true)"
    if [ "$have_ver" != "$want_ver" ] || [ "$home" != "/usr/bin" ]; then
        say "recreating $VENV (python $have_ver from ${home:-?}, want $want_ver from /usr/bin)"
        rm -rf "$VENV"
    fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $SYS_PY"
    "$SYS_PY" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
req_sum="$(sha256sum tests/requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$req_sum" ]; then
    say "pip install -r tests/requirements.txt"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$req_sum" > "$stamp"
fi

# --- build and unit tests ---------------------------------------------------------------
if ! command -v cargo >/dev/null && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
export PYO3_PYTHON="$SYS_PY"
say "cargo build --release"
cargo build --release --quiet
say "layers"; "$SYS_PY" tools/check_layers.py
# The fuzzing properties (src/properties.rs) run this many cases each (about 4 s).
say "cargo test --release (PROPTEST_CASES=${PROPTEST_CASES:=20000})"
PROPTEST_CASES="$PROPTEST_CASES" cargo test --release --quiet

# Coverage-guided fuzzing (fuzz/, cargo fuzz on libFuzzer): every target for a few seconds
# from gunicorn's corpus (tests/fuzz.sh; fuzz/README.md has the long run). FUZZ_SECONDS=0
# leaves it out, saying so.
if [ "${FUZZ_SECONDS:=8}" = 0 ]; then
    say "fuzz: left out (FUZZ_SECONDS=0)"
else
    say "fuzz (tests/fuzz.sh, ${FUZZ_SECONDS}s a target)"
    PYTHON="$VENV/bin/python" FUZZ_SECONDS="$FUZZ_SECONDS" bash tests/fuzz.sh
fi

# The Python package: one abi3 wheel, installed by tests/packaging/test_python_versions.py
# into a venv of every CPython here.
WHEELS="${CARGO_TARGET_DIR:-$REPO/target}/wheels"
if [ -z "${UNITCORN_WHEEL:-}" ]; then
    say "maturin build --release (the abi3 wheel)"
    rm -rf "$WHEELS"
    "$VENV/bin/python" -m maturin build --release --quiet -o "$WHEELS" >/dev/null
    UNITCORN_WHEEL="$(ls "$WHEELS"/unitcorn-*-abi3-*.whl)"
    export UNITCORN_WHEEL
fi

# --- integration suite ------------------------------------------------------------------
export UNITCORN_BIN="${UNITCORN_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/unitcorn}"
say "pytest tests/ (server: ${TEST_SERVER:-unitcorn} $UNITCORN_BIN)"
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME
# run tests/ unless the arguments name test paths themselves
has_path=0
for a in "$@"; do
    if [[ "$a" != -* && -e "${a%%::*}" ]]; then has_path=1; fi
done
if ((has_path)); then
    exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
fi
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$REPO/tests" "$@"
