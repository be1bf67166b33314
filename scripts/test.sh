#!/usr/bin/env bash
# Runs every check and test suite of the project. The README's test command.
#
# Installs what it needs: Rust components (rustfmt, clippy), Debian packages
# (PostgreSQL, Chromium), Python venvs and npm/Maven caches under ~/.cache and ~/.m2
# (scripts/prepare.sh, in the background while cargo compiles).
#
# One cargo build (dev profile, all features, tests included) serves every suite.
# After it, two lanes run side by side, one per core: the cargo test binaries, and the
# suites that drive the binaries from outside (simulator, quick start, custom agent,
# Python, Kotlin, console, kubectl, docs, schemathesis). Each suite's output goes to its own log,
# printed when the suite ends; the closing lines give each step's time and the counts.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_rust

STARTED=$(date +%s)
# "cold" when this run starts without a cargo build to reuse.
CACHE=cold
[ -d "$TARGET_DIR/debug/deps" ] && CACHE=warm

LOGS="$(mktemp -d)"
FLOTTA_TEST_COUNTS="$LOGS/counts"
TIMINGS="$LOGS/timings"
: >"$FLOTTA_TEST_COUNTS"
: >"$TIMINGS"
export FLOTTA_TEST_COUNTS
trap 'scripts/postgres.sh stop >/dev/null 2>&1 || true; scripts/keycloak.sh stop >/dev/null 2>&1 || true; rm -rf "$LOGS"' EXIT

step() { printf '\n==> %s\n' "$*"; }

# Runs a step in the foreground, recording its time and exit code.
timed() {
    local name="$1" start status=0
    shift
    start=$(date +%s)
    "$@" || status=$?
    printf '%s %s %s\n' "$name" "$(($(date +%s) - start))" "$status" >>"$TIMINGS"
    return "$status"
}

# Runs a suite with its output in a log of its own, printed whole when it ends, so
# that suites running side by side do not interleave their lines.
suite() {
    local name="$1" status=0 start
    shift
    start=$(date +%s)
    "$@" >"$LOGS/$name.log" 2>&1 || status=$?
    printf '%s %s %s\n' "$name" "$(($(date +%s) - start))" "$status" >>"$TIMINGS"
    {
        printf '\n==> %s (%s s, exit %s)\n' "$name" "$(($(date +%s) - start))" "$status"
        cat "$LOGS/$name.log"
    }
    return 0
}

step "installs in the background (scripts/prepare.sh)"
scripts/prepare.sh >"$LOGS/prepare.log" 2>&1 &
PREPARE_PID=$!

step "cargo fmt --check"
timed fmt cargo fmt --all -- --check

# --all-targets type-checks the criterion benches too, without a release build.
step "cargo clippy (all targets, all features, -D warnings)"
timed clippy cargo clippy --workspace --all-targets --all-features -- -D warnings

# The one build: libraries, binaries and test binaries with every feature. Every
# later cargo call asks for a subset of this selection, so nothing compiles again.
step "cargo build (workspace, all features, bins and tests)"
timed build cargo build --workspace --all-features --lib --bins --tests --examples

# The criterion benches compile and link (dev profile, so the build above is reused;
# bench/run.sh and `cargo bench` build them optimised to measure).
step "cargo bench --no-run (benches compile, dev profile)"
timed bench-build cargo bench --workspace --all-features --benches --no-run --profile dev

step "waiting for the installs"
prepare_status=0
timed prepare-wait wait "$PREPARE_PID" || prepare_status=$?
cat "$LOGS/prepare.log"
if [ "$prepare_status" -ne 0 ]; then
    echo "scripts/prepare.sh failed (exit $prepare_status)" >&2
    exit 1
fi

step "PostgreSQL for the storage and API suites, Keycloak for the OIDC tests"
# Keycloak (a JVM) takes tens of seconds to start: it starts while PostgreSQL does.
scripts/keycloak.sh start >"$LOGS/keycloak.env" 2>"$LOGS/keycloak.err" &
KEYCLOAK_PID=$!
eval "$(scripts/postgres.sh start)"
export FLOTTA_TEST_POSTGRES_URL
echo "using $FLOTTA_TEST_POSTGRES_URL"
if ! timed keycloak-start wait "$KEYCLOAK_PID"; then
    cat "$LOGS/keycloak.err" >&2
    echo "scripts/keycloak.sh start failed" >&2
    exit 1
fi
eval "$(cat "$LOGS/keycloak.env")"
export FLOTTA_TEST_KEYCLOAK_URL FLOTTA_TEST_KEYCLOAK_CA FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD
echo "using Keycloak at $FLOTTA_TEST_KEYCLOAK_URL"

cargo_tests() {
    # The tests that need PostgreSQL, Keycloak, Prometheus, rsyslog, moto or podman
    # are #[ignore]d, so that without them a plain `cargo test` reports them
    # ignored, never passed (flotta-testing/src/postgres.rs, keycloak.rs,
    # prometheus.rs, syslog.rs, s3.rs, podman.rs); they are the workspace's only
    # ignored tests, PostgreSQL and Keycloak are up and prepare.sh installed
    # Prometheus, rsyslog, moto and podman: run them too.
    cargo test --workspace --all-features -- --include-ignored 2>&1 | tee "$LOGS/cargo-test.out"
    local status=${PIPESTATUS[0]}
    awk '/^test result:/ { p += $4; f += $6; s += $8 } END { print p+0, f+0, s+0 }' \
        "$LOGS/cargo-test.out" >>"$FLOTTA_TEST_COUNTS"
    return "$status"
}

# Suites that reuse the build above and add their counts with record_counts
# (scripts/env.sh).
outside_suites() {
    suite python scripts/test-python.sh
    suite kotlin scripts/test-kotlin.sh
    suite simulator scripts/test-sim.sh
    suite quickstart scripts/test-quickstart.sh
    suite custom-agent scripts/test-custom-agent.sh
    suite console scripts/test-console.sh
    suite kubectl scripts/test-kubectl.sh
    suite cargo-doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
    suite schemathesis env ST_MAX_EXAMPLES="${ST_MAX_EXAMPLES:-5}" scripts/schemathesis.sh
}

step "two lanes: cargo test | Python, Kotlin, simulator, quick start, custom agent, console, kubectl, docs, schemathesis"
LANES_STARTED=$(date +%s)
outside_suites &
OUTSIDE_PID=$!
suite cargo-test cargo_tests
wait "$OUTSIDE_PID"
printf 'lanes %s 0\n' "$(($(date +%s) - LANES_STARTED))" >>"$TIMINGS"

# The closing lines: each step's time, then one count over every suite.
TOTAL=$(($(date +%s) - STARTED))
printf '\ntimings (%s cache, %s cores):\n' "$CACHE" "$(nproc)"
awk '{ printf "  %-14s %5d s%s\n", $1, $2, ($3 == 0 ? "" : "  (exit " $3 ")") }' "$TIMINGS"
printf '  %-14s %5d s (%d min)\n' total "$TOTAL" $((TOTAL / 60))
failed_steps="$(awk '$3 != 0 { printf "%s ", $1 }' "$TIMINGS")"
awk '{ p += $1; f += $2; s += $3 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$FLOTTA_TEST_COUNTS"
if [ -n "$failed_steps" ]; then
    echo "failed: $failed_steps" >&2
    exit 1
fi
