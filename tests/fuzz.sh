#!/usr/bin/env bash
# The short fuzz run (tests/run.sh calls it after cargo's tests): every cargo fuzz target
# in fuzz/ for FUZZ_SECONDS each (8 by default: about a minute in all), from the corpora
# fuzz/seed.py writes (gunicorn's request cases and a few values per reader). A crash, a
# failed assertion or a hang fails the run, naming the input saved under fuzz/artifacts/.
# fuzz/README.md has the long run and what the targets check.
#
#   bash tests/fuzz.sh [target...]          PYTHON=python-with-pip (seeding), FUZZ_SECONDS=8
#
# The toolchain: cargo fuzz wants nightly for its -Z flags; the machine's one toolchain is
# stable, and RUSTC_BOOTSTRAP=1 lets stable take them (no other toolchain can be fetched
# here). If that ever stops working the build fails here, loudly: the run is never skipped.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
say() { printf '== %s\n' "$*"; }
if ! command -v cargo >/dev/null && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
export PYO3_PYTHON=/usr/bin/python3 RUSTC_BOOTSTRAP=1
PYTHON="${PYTHON:-$REPO/.venv-test/bin/python}"
SECONDS_EACH="${FUZZ_SECONDS:-8}"
CARGO_FUZZ_VERSION=0.13.2
# Inside the main target/ (ignored, and kept between runs): only what changed rebuilds.
FUZZ_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}/fuzz"

if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    say "cargo install cargo-fuzz@$CARGO_FUZZ_VERSION"
    cargo install --quiet --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

say "fuzz/seed.py"
"$PYTHON" fuzz/seed.py

targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

say "cargo fuzz build (${targets[*]})"
# -s none: the targets are safe Rust; AddressSanitizer would only slow them down.
(cd fuzz && cargo fuzz build --sanitizer none --target-dir "$FUZZ_TARGET_DIR")
BIN="$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release"

failed=()
for t in "${targets[@]}"; do
    say "fuzz $t for ${SECONDS_EACH}s"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    if ! "$BIN/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=4096 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
        "fuzz/corpus/$t" >"$FUZZ_TARGET_DIR/$t.log" 2>&1; then
        tail -40 "$FUZZ_TARGET_DIR/$t.log"
        failed+=("$t")
    else
        grep -E '^stat::(number_of_executed_units|new_units_added)' "$FUZZ_TARGET_DIR/$t.log" |
            tr '\n' ' '
        echo
    fi
done
if ((${#failed[@]})); then
    echo "fuzzing found a failing input in: ${failed[*]} (saved under fuzz/artifacts/; fuzz/README.md says how to replay it)" >&2
    exit 1
fi
say "fuzz: ${#targets[@]} targets, ${SECONDS_EACH}s each, no failure"
