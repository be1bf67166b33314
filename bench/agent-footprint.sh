#!/usr/bin/env bash
# Footprint of the device build of flotta-agent (a benchmark, not a test):
#   - binary size: the `release-agent` profile (root Cargo.toml: size-optimised,
#     fat LTO, panic = abort, stripped); a copy is stripped again to be sure;
#   - idle RSS (VmRSS, VmHWM, RssFile, RssAnon from /proc/PID/status) after enrolment with the process
#     runtime and no workload;
#   - wake-ups while idle: voluntary + involuntary context switches of the agent's
#     main thread (its only runtime thread) over IDLE_SECONDS, next to the number of
#     heartbeats the server saw in that time (distinct lastSeen values);
#   - bytes on the wire of an unchanged heartbeat: TCP payload bytes in both
#     directions on the agent's Edge API connection (ss -tin bytes_sent /
#     bytes_received), divided by the heartbeats in the window. That is TLS records
#     included (what the network carries above TCP), long-poll traffic included
#     (an unchanged config poll returns nothing unless it times out).
#
#   bench/agent-footprint.sh                      # builds the release-agent
#                                                 # flotta-agent, dev flotta-server/flotta
#   IDLE_SECONDS=120 bench/agent-footprint.sh
#   HEARTBEAT_SECONDS=10 ...   # agent.toml's period, used only until the first
#                              # configuration arrives (the server's period wins)
#   AGENT_PROFILE=release bench/agent-footprint.sh   # the plain release build
#   SKIP_BUILD=1 AGENT_BIN=path/to/flotta-agent bench/agent-footprint.sh
#                                                 # an agent built some other way
#   METRICS=1 bench/agent-footprint.sh            # with system metrics every 60 s,
#       pushed to a local Prometheus when `prometheus` is installed (buffered
#       otherwise); see docs/observability.md
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
IDLE_SECONDS="${IDLE_SECONDS:-60}"
HEARTBEAT_SECONDS="${HEARTBEAT_SECONDS:-10}"
AGENT_PROFILE="${AGENT_PROFILE:-release-agent}"

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --quiet --profile "$AGENT_PROFILE" -p flotta-agent
    cargo build --quiet -p flotta-server -p flotta-cli
fi
AGENT="${AGENT_BIN:-$TARGET_DIR/$AGENT_PROFILE/flotta-agent}"
SERVER="$TARGET_DIR/debug/flotta-server"
command -v ss >/dev/null || { echo "ss (iproute2) is needed for the wire bytes" >&2; exit 1; }

WORK="$(mktemp -d)"
SERVER_PID=""
AGENT_PID=""
cleanup() {
    for pid in "$AGENT_PID" "$SERVER_PID" "${PROM_PID:-}"; do
        [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

cp "$AGENT" agent-stripped
strip agent-stripped
echo "binary ($AGENT_PROFILE profile): $(stat -c %s "$AGENT") bytes as built, $(stat -c %s agent-stripped) bytes stripped"

"$SERVER" --data-dir data --edge-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 >server.log 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q "enrol a device" server.log 2>/dev/null && break; sleep 0.2; done
EDGE="$(sed -n 's/^edgeServer: *//p' data/admin.yaml)"
EDGE_PORT="${EDGE##*:}"
cat >agent.toml <<EOF
server = "$EDGE"
ca = "data/pki/ca.crt"
registration_certificate = "data/pki/register.crt"
registration_key = "data/pki/register.key"
state_dir = "state"
device_id = "footprint"
heartbeat_period_seconds = $HEARTBEAT_SECONDS
runtime = "process"
EOF
RUST_LOG=info "$AGENT" --config agent.toml >agent.log 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 100); do grep -q "registered" agent.log 2>/dev/null && break; sleep 0.2; done
grep -q "registered" agent.log || { echo "the agent did not register" >&2; cat agent.log >&2; exit 1; }
if [ -n "${METRICS:-}" ]; then
    # System metrics every 60 s through a device set the device joins.
    receiver=""
    if command -v prometheus >/dev/null; then
        PROM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        printf 'global:\n  scrape_interval: 1m\n' >prometheus.yml
        prometheus --config.file=prometheus.yml --storage.tsdb.path=prom \
            --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-remote-write-receiver \
            >prometheus.log 2>&1 &
        PROM_PID=$!
        receiver="    receiverConfiguration: {url: \"http://127.0.0.1:$PROM_PORT/api/v1/write\"}"
    fi
    {
        echo "apiVersion: management.project-flotta.io/v1alpha1"
        echo "kind: EdgeDeviceSet"
        echo "metadata: {name: footprint-metrics, namespace: default}"
        echo "spec:"
        echo "  metrics:"
        echo "    system: {interval: 60}"
        if [ -n "$receiver" ]; then echo "$receiver"; fi
    } >metrics-set.yaml
    FLOTTA_CONFIG="$WORK/data/admin.yaml" "$TARGET_DIR/debug/flotta" apply -f metrics-set.yaml >/dev/null
    FLOTTA_CONFIG="$WORK/data/admin.yaml" "$TARGET_DIR/debug/flotta" label device/footprint \
        flotta/member-of=footprint-metrics >/dev/null
    for _ in $(seq 1 100); do [ -d state/metrics ] && break; sleep 0.2; done
    [ -d state/metrics ] || { echo "metrics did not start" >&2; exit 1; }
    if [ -n "$receiver" ]; then
        echo "metrics: system every 60 s, pushed to a local Prometheus"
    else
        echo "metrics: system every 60 s, no receiver (buffered on disk)"
    fi
fi
sleep 5 # settle: first config applied, first heartbeats sent

# The agent's tokio runtime is single-threaded and runs on the main thread; tokio's
# blocking-pool threads come and go (file writes), so the main thread's counts are
# the wake-ups of the agent.
switches() {
    awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { n += $2 } END { print n }' /proc/"$AGENT_PID"/status
}
# Heartbeats as the server saw them: distinct lastSeen values, polled every second
# through the management API (its own connection, not the agent's).
export FLOTTA_CONFIG="$WORK/data/admin.yaml"
CLI="$TARGET_DIR/debug/flotta"
seen_poller() {
    while :; do
        "$CLI" get device footprint -o json 2>/dev/null | sed -n 's/.*"lastSeen": *"\([^"]*\)".*/\1/p'
        sleep 1
    done >"$WORK/seen.txt"
}
wire_bytes() {
    # Agent side of its connections to the Edge API: bytes_sent + bytes_received.
    ss -tinHp "dst 127.0.0.1:$EDGE_PORT" 2>/dev/null |
        grep -A1 "pid=$AGENT_PID," |
        grep -o 'bytes_\(sent\|received\):[0-9]*' |
        awk -F: '{ n += $2 } END { print n + 0 }'
}

# CPU time of the whole process (every thread), user + system, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' /proc/"$AGENT_PID"/stat
}

threads=$(ls /proc/"$AGENT_PID"/task | wc -l)
seen_poller &
POLLER_PID=$!
s0=$(switches); w0=$(wire_bytes); c0=$(cpu_ticks); t0=$SECONDS
sleep "$IDLE_SECONDS"
s1=$(switches); w1=$(wire_bytes); c1=$(cpu_ticks); elapsed=$((SECONDS - t0))
kill "$POLLER_PID" 2>/dev/null || true
wait "$POLLER_PID" 2>/dev/null || true
# Distinct lastSeen values minus the one current at the start of the window.
beats=$(($(sort -u "$WORK/seen.txt" | grep -c . || true) - 1))
rss=$(awk '/^VmRSS/ { print $2 }' /proc/"$AGENT_PID"/status)
hwm=$(awk '/^VmHWM/ { print $2 }' /proc/"$AGENT_PID"/status)
echo "idle RSS: ${rss} KiB (peak ${hwm} KiB), ${threads} threads"
# What the resident pages are: the binary's own (file-backed, shared with any other
# process running it) and anonymous memory (heap, thread stacks).
file_kib=$(awk '/^RssFile/ { print $2 }' /proc/"$AGENT_PID"/status)
anon_kib=$(awk '/^RssAnon/ { print $2 }' /proc/"$AGENT_PID"/status)
echo "  of which file-backed (binary and libraries): ${file_kib} KiB, anonymous (heap, stacks): ${anon_kib} KiB"
ticks=$(getconf CLK_TCK)
echo "CPU over ${elapsed} s idle: $(( (c1 - c0) * 1000 / ticks )) ms (user + system, all threads)"
echo "main-thread context switches over ${elapsed} s idle: $((s1 - s0)) (${beats} heartbeats seen by the server; the period is the server configuration's, 60 s by default)"
if [ "$beats" -gt 0 ]; then
    echo "wire bytes over ${elapsed} s: $((w1 - w0)); per heartbeat: $(((w1 - w0) / beats))"
fi
