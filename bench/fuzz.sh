#!/usr/bin/env bash
# Runs every cargo-fuzz target for a set time and records executions and findings.
#
#   bench/fuzz.sh [SECONDS_PER_TARGET]   # default 60
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Each target starts from its committed seed corpus in
# fuzz/corpus/<target>/, copied to a scratch directory so that the committed corpus
# stays small; a crash, leak, timeout or out-of-memory input lands in
# fuzz/artifacts/<target>/ and counts as a finding. The table of figures replaces
# the block between the fuzz markers in docs/security.md, and the script exits
# non-zero when any target found something.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
cd "$ROOT/fuzz"

if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "cargo-fuzz on a nightly toolchain is required: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi

mapfile -t TARGETS < <(cargo +nightly fuzz list)
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
cargo +nightly fuzz build >&2

ROWS=""
FOUND_TOTAL=0
for target in "${TARGETS[@]}"; do
    mkdir -p "$SCRATCH/$target" "artifacts/$target"
    cp -r "corpus/$target/." "$SCRATCH/$target/" 2>/dev/null || true
    seeds="$(find "corpus/$target" -type f | wc -l)"
    before="$(find "artifacts/$target" -type f | wc -l)"
    log="$SCRATCH/$target.log"
    status=0
    cargo +nightly fuzz run "$target" "$SCRATCH/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -rss_limit_mb=2048 \
        >"$log" 2>&1 || status=$?
    execs="$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -1)"
    execs="${execs:-0}"
    per_second=$(( execs / SECONDS_PER_TARGET ))
    corpus_after="$(find "$SCRATCH/$target" -type f | wc -l)"
    after="$(find "artifacts/$target" -type f | wc -l)"
    found=$(( after - before ))
    if [ "$status" -ne 0 ] && [ "$found" -eq 0 ]; then found=1; fi
    FOUND_TOTAL=$(( FOUND_TOTAL + found ))
    printf '%-16s %10s execs %7s/s  corpus %5s -> %5s  findings %s\n' \
        "$target" "$execs" "$per_second" "$seeds" "$corpus_after" "$found" >&2
    [ "$found" -eq 0 ] || tail -30 "$log" >&2
    ROWS+="| \`$target\` | $SECONDS_PER_TARGET | $execs | $per_second | $seeds | $corpus_after | $found |"$'\n'
done

TABLE="$(cat <<TABLE
Last run: $(date -u +%Y-%m-%dT%H:%MZ), \`bench/fuzz.sh $SECONDS_PER_TARGET\`, $(nproc) cores, $(rustc +nightly --version).

| target | seconds | executions | per second | seed inputs | corpus after | findings |
|---|---|---|---|---|---|---|
${ROWS%$'\n'}
TABLE
)"
printf '%s\n' "$TABLE"

DOC="$ROOT/docs/security.md"
if [ -f "$DOC" ] && grep -q '<!-- fuzz-figures:begin -->' "$DOC"; then
    TABLE="$TABLE" python3 - "$DOC" <<'PY'
import os, re, sys
path = sys.argv[1]
text = open(path).read()
block = "<!-- fuzz-figures:begin -->\n" + os.environ["TABLE"] + "\n<!-- fuzz-figures:end -->"
text = re.sub(r"<!-- fuzz-figures:begin -->.*?<!-- fuzz-figures:end -->", lambda _: block, text, flags=re.S)
open(path, "w").write(text)
PY
    echo "figures written to docs/security.md" >&2
fi
[ "$FOUND_TOTAL" -eq 0 ]
