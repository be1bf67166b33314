#!/usr/bin/env bash
# End-to-end tests of the web console (/ui): a real flotta-server and flotta-agent
# devices from the cargo build, Debian's Chromium driven by playwright-core from npm,
# run with node's test runner. Screenshots land in $TARGET_DIR/ui-screenshots.
#
# Installs what it needs: the chromium Debian package and the npm packages of
# flotta-server/ui/e2e (npm ci, from the committed package-lock.json).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

apt_install chromium
command -v node >/dev/null || { echo "node not found: install Node.js 20 or newer" >&2; exit 1; }

# The selection of the cargo test step (all features, tests included, so the same
# feature set) plus the binaries: only flotta-agent's binary may still need linking.
cargo build --workspace --all-features --bins --tests --quiet

E2E="$ROOT/flotta-server/ui/e2e"
(cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)

export FLOTTA_BIN_DIR="$TARGET_DIR/debug"
export UI_SCREENSHOTS="${UI_SCREENSHOTS:-$TARGET_DIR/ui-screenshots}"
LOG="$(mktemp)"
status=0
(cd "$E2E" && node --test --test-concurrency=1 --test-reporter=spec console.test.mjs console-oidc.test.mjs) 2>&1 | tee "$LOG" || status=$?

# node's spec reporter ends with "ℹ pass N", "ℹ fail N", "ℹ skipped N", "ℹ todo N".
count() { awk -v key="$1" '$1 == "ℹ" && $2 == key { n = $3 } END { print n + 0 }' "$LOG"; }
passed="$(count pass)"
failed="$(count fail)"
skipped=$(( $(count skipped) + $(count todo) ))
rm -f "$LOG"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1 # the run itself broke (set-up failed, or the runner crashed)
fi
record_counts "$passed" "$failed" "$skipped"
echo "console e2e: $passed passed, $failed failed, $skipped skipped; screenshots in $UI_SCREENSHOTS"
exit "$status"
