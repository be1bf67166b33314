#!/usr/bin/env bash
# Simulator smoke run: 100 devices (200 for rollout) through every scenario against a real
# flotta-server (SQLite; two replicas on PostgreSQL for `replicas`) over mTLS, plus
# both baselines, so the harness cannot rot.
# Reuses the dev binaries `cargo test --workspace` built (flotta-sim's integration
# test makes cargo build them); builds them when missing. About a minute.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

SIM="$TARGET_DIR/debug/flotta-sim"
SERVER="$TARGET_DIR/debug/flotta-server"
if [ ! -x "$SIM" ] || [ ! -x "$SERVER" ]; then
    cargo build -p flotta-sim -p flotta-server --all-features
fi

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
passed=0
failed=0
skipped=0

# One pass per scenario; a pass needs exit code 0 (no failed operation) and a report.
pass() {
    local name="$1"
    shift
    if "$SIM" "$@" --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 && [ -s "$OUT/$name.json" ]; then
        passed=$((passed + 1))
        printf 'ok   %-14s %s\n' "$name" "$(grep -E '^throughput' "$OUT/$name.log" | head -1)"
    else
        failed=$((failed + 1))
        printf 'FAIL %s\n' "$name"
        cat "$OUT/$name.log"
    fi
}

common=(--devices 100 --no-progress --server-bin "$SERVER")
pass enrol enrol "${common[@]}"
pass steady steady "${common[@]}" --duration 3
pass steady-agent steady "${common[@]}" --model agent --duration 3
pass propagate-agent propagate "${common[@]}" --model agent
pass propagate-light propagate "${common[@]}" --model light
pass reconnect reconnect "${common[@]}" --period 2
pass flotta-poll flotta-poll "${common[@]}" --duration 3
# 200 devices: 20 / 80 / 100 per batch. The scenario itself exits 1 when a device
# received the change outside a released batch or a batch never completed; the
# report is checked for the three completed batches besides.
failed_before=$failed
pass rollout rollout --devices 200 --no-progress --server-bin "$SERVER"
if [ "$failed" -eq "$failed_before" ]; then
    if ! python3 - "$OUT/rollout.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
batches = report["extra"]["batches"]
assert not report.get("violations"), report.get("violations")
assert [b["devices"] for b in batches] == [20, 80, 100], batches
assert all(b["all_reported_s"] is not None for b in batches), batches
assert report["operations"] == 200 and report["errors"] == 0, report
PY
    then
        passed=$((passed - 1))
        failed=$((failed + 1))
        printf 'FAIL rollout report\n'
    fi
fi
# Two replicas on one PostgreSQL database, one killed under load: the run exits 1
# unless every device of the killed replica is served again by the other, with no
# error on the survivor's own devices.
if [ -n "${FLOTTA_TEST_POSTGRES_URL:-}" ]; then
    failed_before=$failed
    pass replicas replicas "${common[@]}" --duration 2 --period 2 \
        --spawn-server postgres --database "$FLOTTA_TEST_POSTGRES_URL"
    if [ "$failed" -eq "$failed_before" ]; then
        if ! python3 - "$OUT/replicas.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
extra = report["extra"]
assert extra["failover_devices_moved"] == 50, extra
assert extra["failover_all_served_s"] is not None, extra
assert extra["failover_recovery"]["count"] == 50, extra
assert extra["one_replica_heartbeats_per_s"] > 0 and extra["two_replicas_heartbeats_per_s"] > 0, extra
assert extra["two_replicas_propagation_to_b"]["count"] == 2 * 50, extra
assert report["errors"] == 0, report
PY
        then
            passed=$((passed - 1))
            failed=$((failed + 1))
            printf 'FAIL replicas report\n'
        fi
    fi
elif [ "${CI:-}" = "true" ]; then
    failed=$((failed + 1))
    printf 'FAIL replicas: FLOTTA_TEST_POSTGRES_URL is not set (scripts/test.sh starts PostgreSQL)\n'
else
    skipped=$((skipped + 1))
    printf 'skip replicas      (needs FLOTTA_TEST_POSTGRES_URL: scripts/postgres.sh start)\n'
fi
pass baseline-mtls baseline-mtls "${common[@]}" --duration 3
pass baseline-ecdsa baseline-ecdsa --duration 0.2

echo "simulator: $passed passed, $failed failed, $skipped skipped"
record_counts "$passed" "$failed" "$skipped"
[ "$failed" -eq 0 ]
