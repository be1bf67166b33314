#!/usr/bin/env bash
# Builds examples/custom-agent and runs it against a real flotta-server from the same
# build: the server on free loopback ports with its own data directory, the agent
# enrolling with the server's registration certificate, a workload applied with the
# `flotta` CLI, and a wait until the server reports that workload Running on the
# device. Everything started here is stopped on exit.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

# The same features as the cargo test step of test.sh, so nothing recompiles there.
cargo build --quiet --workspace --all-features --bins
BIN="$TARGET_DIR/debug"
WORK="$(mktemp -d)"
SERVER_PID=""
AGENT_PID=""
PASSED=0

cleanup() {
    set +e
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    if [ "$PASSED" -ne 1 ]; then
        echo "--- server log"; tail -n 40 "$WORK/server.log" 2>/dev/null || true
        echo "--- agent log"; tail -n 60 "$WORK/agent.log" 2>/dev/null || true
        record_counts 0 1 0
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits up to $1 seconds for the command that follows to succeed.
wait_for() {
    local timeout="$1"; shift
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "timed out after ${timeout}s waiting for: $*" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Port 0: the server picks free ports and writes them into admin.yaml.
"$BIN/flotta-server" --data-dir "$WORK/server" --edge-listen 127.0.0.1:0 \
    --api-listen 127.0.0.1:0 --hostname 127.0.0.1 --auto-approve true \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ADMIN="$WORK/server/admin.yaml"
wait_for 30 grep -q '^edgeServer: https://127.0.0.1:[1-9]' "$ADMIN"
EDGE="$(sed -n 's/^edgeServer: //p' "$ADMIN")"
flotta() { "$BIN/flotta" --config "$ADMIN" "$@"; }
wait_for 30 flotta get devices

PKI="$WORK/server/pki"
"$BIN/custom-agent" --server "$EDGE" --ca "$PKI/ca.crt" \
    --registration-cert "$PKI/register.crt" --registration-key "$PKI/register.key" \
    --device-id custom-1 --state-dir "$WORK/agent/state" --units-dir "$WORK/agent/units" \
    --heartbeat-seconds 1 >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
wait_for 30 flotta get device custom-1

cat >"$WORK/workload.yaml" <<'YAML'
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata: {name: ticker, namespace: default}
spec:
  type: pod
  device: custom-1
  pod:
    spec:
      containers:
      - name: main
        image: unused
        command: [sh, -c, 'while true; do echo tick; sleep 1; done']
YAML
flotta apply -f "$WORK/workload.yaml"

running_on_server() {
    flotta get device custom-1 -o json | tr -d ' \n' |
        grep -q '"name":"ticker","phase":"Running"\|"phase":"Running","name":"ticker"'
}
wait_for 60 running_on_server
# The runtime's own evidence: the unit file and the process's output.
test -f "$WORK/agent/units/ticker-main.service"
wait_for 10 grep -q tick "$WORK/agent/units/ticker-main.service.log"
grep -q "event: configuration .* applied" "$WORK/agent.log"

echo "custom-agent: workload ticker is Running on custom-1"
PASSED=1
record_counts 1 0 0
