#!/usr/bin/env bash
# Runs docs/quickstart.md step by step on one machine: a server, an agent with the
# process runtime, a workload applied with `flotta apply`, and a wait until
# `flotta` shows it running on the device. Everything lives in a temporary
# directory and every process started here is stopped on exit.
#
#   scripts/quickstart.sh            # builds the three binaries (dev profile) first
#   FLOTTA_BIN_DIR=DIR scripts/quickstart.sh   # uses flotta-server, flotta-agent, flotta from DIR
#   QUICKSTART_TIMEOUT=120 scripts/quickstart.sh   # seconds to wait for "Running"
#   QUICKSTART_KEEP=1 scripts/quickstart.sh        # keep the temporary directory
#   QUICKSTART_BUILD_ARGS="--workspace --all-features --bins" scripts/quickstart.sh
#                                    # cargo build arguments (test-quickstart.sh reuses
#                                    # the test build's features this way)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

TIMEOUT="${QUICKSTART_TIMEOUT:-90}"
if [ -z "${FLOTTA_BIN_DIR:-}" ]; then
    ensure_rust
    echo "==> building flotta-server, flotta-agent and flotta (dev profile, $TARGET_DIR)"
    # shellcheck disable=SC2086 # word splitting of the argument list is wanted
    cargo build --quiet ${QUICKSTART_BUILD_ARGS:--p flotta-server -p flotta-agent -p flotta-cli}
    FLOTTA_BIN_DIR="$TARGET_DIR/debug"
fi
for binary in flotta-server flotta-agent flotta; do
    [ -x "$FLOTTA_BIN_DIR/$binary" ] || { echo "quickstart: $FLOTTA_BIN_DIR/$binary not found" >&2; exit 1; }
done
PATH="$FLOTTA_BIN_DIR:$PATH"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotta-quickstart.XXXXXX")"
SERVER_PID=""
AGENT_PID=""
cleanup() {
    local status=$?
    # The agent stops its workload processes when it gets SIGTERM.
    for pid in "$AGENT_PID" "$SERVER_PID"; do
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        for log in server.log agent.log workloads/hello/main.log; do
            [ -f "$WORK/$log" ] && { echo "--- $log (last lines)"; tail -n 25 "$WORK/$log"; }
        done
    fi
    if [ -n "${QUICKSTART_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"

# Waits until "$@" succeeds, at most $TIMEOUT seconds; $1 says what for.
wait_for() {
    local what="$1" deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "quickstart: timed out after ${TIMEOUT}s waiting for $what" >&2
            return 1
        fi
        sleep 0.5
    done
}

echo "==> 1. start the server (data in $WORK/flotta-data, free loopback ports)"
flotta-server --data-dir flotta-data --edge-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 \
    >server.log 2>&1 &
SERVER_PID=$!
wait_for "the server to listen" grep -q "enrol a device" server.log
export FLOTTA_CONFIG="$WORK/flotta-data/admin.yaml"
EDGE_URL="$(sed -n 's/^edgeServer: *//p' "$FLOTTA_CONFIG")"
echo "    Edge API $EDGE_URL, management API $(sed -n 's/^server: *//p' "$FLOTTA_CONFIG")"

echo "==> 2. start an agent with the process runtime"
cat >agent.toml <<EOF
server = "$EDGE_URL"
ca = "flotta-data/pki/ca.crt"
registration_certificate = "flotta-data/pki/register.crt"
registration_key = "flotta-data/pki/register.key"
state_dir = "agent-state"
device_id = "quickstart-device"
heartbeat_period_seconds = 2
runtime = "process"

[process]
log_dir = "workloads"
EOF
flotta-agent --config agent.toml >agent.log 2>&1 &
AGENT_PID=$!
wait_for "the device to enrol" flotta get device quickstart-device
flotta get devices

echo "==> 3. label the device and apply a workload for devices with that label"
flotta label device/quickstart-device quickstart=true
cat >hello.yaml <<'EOF'
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: hello
spec:
  type: pod
  deviceSelector:
    matchLabels:
      quickstart: "true"
  pod:
    spec:
      containers:
        - name: main
          image: registry.example.com/hello:1
          command: ["/bin/sh", "-c"]
          args: ["while true; do echo \"hello from $(DEVICE) at $(date +%T)\"; sleep 2; done"]
          env:
            - name: DEVICE
              value: quickstart-device
EOF
flotta apply -f hello.yaml

echo "==> 4. wait until the device reports it running"
running() { flotta describe device quickstart-device | grep -Eq '^ +hello +Running'; }
wait_for "workload hello to run on quickstart-device" running
flotta describe device quickstart-device
flotta get workloads
echo "    its output (workloads/hello/main.log):"
wait_for "the workload's first line" grep -q "hello from quickstart-device" workloads/hello/main.log
grep -m 2 "hello from" workloads/hello/main.log | sed 's/^/    /'
echo "quickstart: ok (workload hello runs on quickstart-device)"
