#!/usr/bin/env bash
# Property-based checks of the management API with schemathesis: starts the
# flotta-server binary on free loopback ports with a throwaway data directory and
# runs schemathesis against its /openapi.json with the admin token from admin.yaml.
# Fails when any request gets a 5xx answer.
#
#   scripts/schemathesis.sh                 # default: 40 examples per operation
#   ST_MAX_EXAMPLES=200 scripts/schemathesis.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${HOME}/.cache/flotta-rs/venv-st"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-40}"

if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "schemathesis==4.32.5"
fi
[ -n "${FLOTTA_PREPARE_ONLY:-}" ] && exit 0

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# The selection of the workspace build in test.sh, so nothing compiles again.
cargo build --quiet --manifest-path "$ROOT/Cargo.toml" --workspace --all-features --bins
BIN="$CARGO_TARGET_DIR/debug/flotta-server"

DATA="$(mktemp -d)"
free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
API_PORT="$(free_port)"
EDGE_PORT="$(free_port)"

FLOTTA_LOG=warn "$BIN" --data-dir "$DATA" \
    --api-listen "127.0.0.1:$API_PORT" --edge-listen "127.0.0.1:$EDGE_PORT" \
    >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    [ -f "$DATA/admin.yaml" ] && break
    sleep 0.1
done
if [ ! -f "$DATA/admin.yaml" ]; then
    echo "server did not start:" >&2
    cat "$DATA/server.log" >&2
    exit 1
fi

# admin.yaml holds the CA PEM and the admin token.
"$VENV/bin/python" - "$DATA" <<'PY'
import sys, yaml, pathlib
data = pathlib.Path(sys.argv[1])
config = yaml.safe_load((data / "admin.yaml").read_text())
(data / "ca.pem").write_text(config["certificateAuthority"])
(data / "token").write_text(config["token"])
PY
TOKEN="$(cat "$DATA/token")"

# A watch stream stays open until timeoutSeconds: cap it so every generated
# request gets a complete answer.
cat >"$DATA/flotta_st_hooks.py" <<'PY'
import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    query = case.query or {}
    if str(query.get("watch", "")).lower() in ("true", "1"):
        query["timeoutSeconds"] = 0
        case.query = query
PY

set +e
# schemathesis keeps its state in the working directory: use the throwaway one.
cd "$DATA"
PYTHONPATH="$DATA" SCHEMATHESIS_HOOKS=flotta_st_hooks "$VENV/bin/schemathesis" run "https://127.0.0.1:$API_PORT/openapi.json" \
    --tls-verify "$DATA/ca.pem" \
    --header "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 10 \
    --workers 1 \
    --exclude-path-regex "/tokens/" \
    --suppress-health-check all \
    --no-color
status=$?
set -e
if grep -q "panicked" "$DATA/server.log"; then
    echo "the server panicked:" >&2
    grep -A5 "panicked" "$DATA/server.log" >&2
    exit 1
fi
exit "$status"
