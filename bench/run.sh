#!/usr/bin/env bash
# Fleet benchmarks: the simulator's scenarios against a release flotta-server over
# mTLS, each beside its same-run baseline, then rewrites the figures between the
# `flotta-sim` markers of docs/performance.md (other sections are left alone).
#
#   bench/run.sh            # about 20 minutes on 2 cores (plus the release build
#                           # and the fleet-size curve: four more propagate runs)
#
# Knobs (environment): BENCH_OUT (reports, default $TARGET_DIR/bench),
# BENCH_STEADY_DEVICES (200), BENCH_STEADY_SECONDS (20), BENCH_ENROL_DEVICES (2000),
# BENCH_PROPAGATE_DEVICES (10000), BENCH_RECONNECT_DEVICES (2000),
# BENCH_POLL_DEVICES (1000), BENCH_ROLLOUT_DEVICES (10000), BENCH_POLL_SECONDS (300: our
# idle model's window, two 150 s long-polls; Flotta's model is measured over at most
# 120 s, its pattern repeating every minute), BENCH_AGENT_DEVICES (10000 real agents
# in one process, one HTTP/2 connection each against a hard limit of 20,000
# descriptors per process; 0 skips it),
# BENCH_POSTGRES (1; 0 skips it and the replicas scenario), BENCH_REPLICA_DEVICES
# (2000: the fleet spread over two replicas on one PostgreSQL),
# BENCH_CURVE_SIZES ("1000 5000 10000 15000": the fleet-size curve, one `propagate`
# run per size, plotted into docs/performance-fleet.svg; empty skips it),
# BENCH_NO_BUILD (1: use the release binaries as they are).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"

STEADY_DEVICES="${BENCH_STEADY_DEVICES:-200}"
STEADY_SECONDS="${BENCH_STEADY_SECONDS:-20}"
ENROL_DEVICES="${BENCH_ENROL_DEVICES:-2000}"
PROPAGATE_DEVICES="${BENCH_PROPAGATE_DEVICES:-10000}"
RECONNECT_DEVICES="${BENCH_RECONNECT_DEVICES:-2000}"
POLL_DEVICES="${BENCH_POLL_DEVICES:-1000}"
POLL_SECONDS="${BENCH_POLL_SECONDS:-300}"
ROLLOUT_DEVICES="${BENCH_ROLLOUT_DEVICES:-10000}"
AGENT_DEVICES="${BENCH_AGENT_DEVICES:-10000}"
REPLICA_DEVICES="${BENCH_REPLICA_DEVICES:-2000}"
OUT="${BENCH_OUT:-$TARGET_DIR/bench}"
mkdir -p "$OUT"

# BENCH_NO_BUILD=1 uses the release binaries already built.
[ "${BENCH_NO_BUILD:-0}" = "1" ] || cargo build --release -p flotta-sim -p flotta-server
SIM="$TARGET_DIR/release/flotta-sim"
export FLOTTA_SERVER_BIN="$TARGET_DIR/release/flotta-server"
started=$(date +%s)

# Each run prints its table and writes $OUT/<name>.json; the command is kept for
# the document.
: >"$OUT/commands.txt"
run() {
    local name="$1"
    shift
    printf '\n==> %s: flotta-sim %s\n' "$name" "$*"
    printf '%s\tflotta-sim %s\n' "$name" "$*" >>"$OUT/commands.txt"
    "$SIM" "$@" --json "$OUT/$name.json"
}

run baseline-ecdsa baseline-ecdsa --duration 2
# The scenarios report their errors in the figures rather than stopping the set.
run baseline-mtls baseline-mtls --allow-errors --no-progress --devices "$STEADY_DEVICES" --duration "$STEADY_SECONDS"
run steady-sqlite steady --allow-errors --no-progress --devices "$STEADY_DEVICES" --duration "$STEADY_SECONDS"
# The same over HTTP/1.1, for the cost of HTTP/2 in the same sitting.
run steady-sqlite-http1 steady --allow-errors --no-progress --devices "$STEADY_DEVICES" --duration "$STEADY_SECONDS" --http1
if [ "${BENCH_POSTGRES:-1}" = "1" ]; then
    eval "$(scripts/postgres.sh start)"
    trap 'scripts/postgres.sh stop >/dev/null 2>&1 || true' EXIT
    # PostgreSQL's own CPU: the postmaster's, its reaped backends' (cutime,
    # cstime) and its live backends', in seconds; the difference over the run
    # (which includes enrolling the devices, so it is an upper bound).
    pg_cpu() {
        python3 - "${FLOTTA_PG_DIR:-${TMPDIR:-/tmp}/flotta-test-postgres}/data/postmaster.pid" <<'PY'
import os, sys
pid = open(sys.argv[1]).readline().strip()
tick = os.sysconf("SC_CLK_TCK")
def fields(p):
    text = open(f"/proc/{p}/stat").read()
    return text[text.rindex(")") + 2:].split()
f = fields(pid)
total = sum(int(x) for x in f[11:15])
for entry in os.listdir("/proc"):
    if entry.isdigit() and entry != pid:
        try:
            g = fields(entry)
        except OSError:
            continue
        if g[1] == pid:
            total += int(g[11]) + int(g[12])
print(f"{total / tick:.2f}")
PY
    }
    pg_before=$(pg_cpu)
    run steady-postgres steady --allow-errors --no-progress --devices "$STEADY_DEVICES" --duration "$STEADY_SECONDS" \
        --spawn-server postgres --database "$FLOTTA_TEST_POSTGRES_URL"
    pg_after=$(pg_cpu)
    printf '{"cpu_seconds": %s}\n' "$(python3 -c "print(round($pg_after - $pg_before, 2))")" >"$OUT/postgres-cpu.json"
    # Two replicas on the same database beside one, then one killed under load.
    run replicas replicas --allow-errors --no-progress --devices "$REPLICA_DEVICES" --duration "$STEADY_SECONDS" \
        --spawn-server postgres --database "$FLOTTA_TEST_POSTGRES_URL"
fi
run enrol enrol --allow-errors --no-progress --devices "$ENROL_DEVICES"
run enrol-http1 enrol --allow-errors --no-progress --devices "$ENROL_DEVICES" --http1
run propagate propagate --allow-errors --no-progress --devices "$PROPAGATE_DEVICES" --model light --wait 60
run propagate-http1 propagate --allow-errors --no-progress --devices "$PROPAGATE_DEVICES" --model light --wait 60 --http1
run reconnect reconnect --allow-errors --no-progress --devices "$RECONNECT_DEVICES" --period 10
run rollout rollout --allow-errors --no-progress --devices "$ROLLOUT_DEVICES"
run flotta-poll flotta-poll --allow-errors --no-progress --devices "$POLL_DEVICES" --duration "$POLL_SECONDS"
# Real agents (heartbeat, long-poll and control loops each) in one process; fewer
# enrolments in flight keep the descriptors of enrolment connections few.
if [ "$AGENT_DEVICES" -gt 0 ]; then
    run steady-agents steady --model agent --allow-errors --no-progress --devices "$AGENT_DEVICES" \
        --concurrency 200 --duration 30
fi
# Fleet-size curve: server RSS with the fleet long-polling, and propagation
# latency, against the number of devices connected. 15,000 is the most one server
# process can hold here: the hard open-files limit is 20,000 per process, and each
# connected device holds a descriptor in the server (and one in the simulator).
# Curve points of earlier runs are removed so the plot shows this run only.
CURVE_SIZES="${BENCH_CURVE_SIZES-1000 5000 10000 15000}"
rm -f "$OUT"/curve-*.json
for n in $CURVE_SIZES; do
    run "curve-$n" propagate --allow-errors --no-progress --devices "$n" --model light --wait 60
done

elapsed=$(( $(date +%s) - started ))
echo "benchmarks took ${elapsed} s"
python3 bench/figures.py "$OUT" docs/performance.md "$elapsed" docs/performance-fleet.svg
