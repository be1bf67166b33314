#!/usr/bin/env bash
# The README's run command: validates the bundled example manifests with the flotta CLI.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_rust
cargo run --quiet --release -p flotta-cli -- validate -f examples/manifests "$@"
