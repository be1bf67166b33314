#!/usr/bin/env bash
# Runs the quick start (docs/quickstart.md) as a test: scripts/quickstart.sh with the
# workspace's dev build and features (the same as the cargo test step, so nothing
# recompiles), counted as one test.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
if QUICKSTART_BUILD_ARGS="--workspace --all-features --bins" scripts/quickstart.sh; then
    record_counts 1 0 0
else
    record_counts 0 1 0
    exit 1
fi
