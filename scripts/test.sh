#!/usr/bin/env bash
# Runs every check and test suite of the project. The README's test command.
#
# Installs what it needs: Rust components (rustfmt, clippy), PostgreSQL from Debian's
# packages (scripts/postgres.sh, throwaway cluster on a free loopback port) and
# schemathesis from PyPI (scripts/schemathesis.sh, in a venv under ~/.cache).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_rust

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

# --all-targets type-checks the criterion benches too, without a release build.
step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "PostgreSQL for the storage and API suites"
eval "$(scripts/postgres.sh start)"
export FLOTTA_TEST_POSTGRES_URL
trap 'scripts/postgres.sh stop >/dev/null 2>&1 || true' EXIT
echo "using $FLOTTA_TEST_POSTGRES_URL"

FLOTTA_TEST_COUNTS="$(mktemp)"
export FLOTTA_TEST_COUNTS

step "cargo test (workspace, all features)"
TEST_LOG="$(mktemp)"
cargo test --workspace --all-features 2>&1 | tee "$TEST_LOG"
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { print p+0, f+0, s+0 }' "$TEST_LOG" >>"$FLOTTA_TEST_COUNTS"
rm -f "$TEST_LOG"

# The criterion benches compile and link (dev profile, so the build above is reused;
# bench/run.sh and `cargo bench` build them optimised to measure).
step "cargo bench --no-run (benches compile, dev profile)"
cargo bench --workspace --all-features --benches --no-run --profile dev

# Further suites each come as a script that reuses the cargo build above and adds its
# counts with record_counts (scripts/env.sh).
step "simulator: 100 devices, every scenario"; scripts/test-sim.sh
step "quick start (docs/quickstart.md)"; scripts/test-quickstart.sh
step "examples/custom-agent against a real server"; scripts/test-custom-agent.sh
step "Python bindings (maturin, stubtest, pytest) and examples/python"; scripts/test-python.sh
step "Kotlin bindings (Maven, JUnit 5) and examples/kotlin"; scripts/test-kotlin.sh
step "web console in headless Chromium (Playwright)"; scripts/test-console.sh

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

step "schemathesis against the management API's /openapi.json"
ST_MAX_EXAMPLES="${ST_MAX_EXAMPLES:-5}" scripts/schemathesis.sh

# One closing line over every suite above.
awk '{ p += $1; f += $2; s += $3 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$FLOTTA_TEST_COUNTS"
rm -f "$FLOTTA_TEST_COUNTS"
