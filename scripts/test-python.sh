#!/usr/bin/env bash
# The Python bindings' suite: builds the `flotta` wheel with maturin (dev profile, in
# the shared cargo target dir, so only the binding crate and pyo3 compile on top of
# the workspace build), installs it into a venv under ~/.cache/flotta-rs, checks the
# type stubs with mypy.stubtest, and runs pytest (selectors, manifests, PKI, the
# blocking and asyncio clients, flotta.Agent, examples/python and the official
# `kubernetes` client's dynamic client against a real flotta-server process).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_rust

VENV="${FLOTTA_PY_VENV:-$HOME/.cache/flotta-rs/venv-py}"
# Pinned tool versions; bump together.
PY_PACKAGES=(maturin==1.16.0 pytest==9.2.0 pytest-asyncio==1.5.0 mypy==2.4.1 cryptography==50.0.2 kubernetes==37.0.2)

step() { printf '\n==> %s\n' "$*"; }

step "Python venv ($VENV)"
PYTHON="$(command -v python3 || true)"
[ -n "$PYTHON" ] || { echo "python3 not found" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && "$PYTHON" -m venv "$VENV"; }
fi
STAMP="$VENV/.flotta-packages"
if [ "$(cat "$STAMP" 2>/dev/null)" != "${PY_PACKAGES[*]}" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    echo "${PY_PACKAGES[*]}" >"$STAMP"
fi
[ -n "${FLOTTA_PREPARE_ONLY:-}" ] && exit 0

step "flotta-server (dev profile) for the tests"
# The selection of the workspace build in test.sh, so nothing compiles again.
cargo build --quiet --workspace --all-features --bins
export FLOTTA_SERVER_BIN="$TARGET_DIR/debug/flotta-server"

step "maturin build (dev profile) and install the wheel"
WHEELS="$(mktemp -d)"
trap 'rm -rf "$WHEELS"' EXIT
export CARGO_TARGET_DIR="$TARGET_DIR"
(cd bindings/python && "$VENV/bin/maturin" build --quiet --profile dev -i "$VENV/bin/python" -o "$WHEELS")
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WHEELS"/flotta-*.whl

step "mypy.stubtest flotta; mypy --strict on the package and examples/python"
(cd "$WHEELS" && "$VENV/bin/python" -m mypy.stubtest flotta && "$VENV/bin/python" -m mypy --strict -p flotta)
"$VENV/bin/python" -m mypy --strict --cache-dir "$WHEELS/.mypy_cache" examples/python

step "pytest bindings/python/tests"
LOG="$(mktemp)"
set +e
(cd bindings/python && "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests) 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$LOG" | tail -1)"
count() { grep -oE "[0-9]+ $1" <<<"$summary" | grep -oE '^[0-9]+' || echo 0; }
passed="$(count passed)"
failed=$(($(count failed) + $(count error)))
skipped="$(count skipped)"
rm -f "$LOG"
record_counts "$passed" "$failed" "$skipped"
if [ "$status" -ne 0 ] || [ "$passed" -eq 0 ]; then
    echo "python suite failed (pytest exit $status)" >&2
    exit 1
fi
echo "python: $passed passed, $failed failed, $skipped skipped"
