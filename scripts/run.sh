#!/usr/bin/env bash
# The README's run command: builds and starts the reference server on its embedded
# defaults (data in ./flotta-data, SQLite, Edge API on :8043, management API on :8443,
# auto-approval on). Extra arguments go to flotta-server (see docs/server.md).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_rust
cargo build --quiet --release -p flotta-server -p flotta-cli
exec "$TARGET_DIR/release/flotta-server" "$@"
