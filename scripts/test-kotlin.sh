#!/usr/bin/env bash
# The Kotlin bindings' suite: `mvn verify` in bindings/kotlin (cargo builds the FFI
# library, uniffi-bindgen generates the Kotlin from it, JUnit 5 tests run against a
# real flotta-server), then the jar goes to the local Maven repository (~/.m2) and
# examples/kotlin is built against it. Counts come from the Surefire reports.
#
# Reuses the workspace's `cargo test --workspace --all-features` build in
# $CARGO_TARGET_DIR (dev profile, same features): see the cargo command below.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_rust

command -v java >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven
command -v strip >/dev/null || apt_install binutils

export CARGO_TARGET_DIR="$TARGET_DIR"
# The same features as `cargo test --workspace --all-features` (dev-dependencies on
# through --tests), so its artifacts are fresh; --lib and --bins put the cdylib,
# uniffi-bindgen and flotta-server at the top of the target directory.
MVN=(mvn -q -B -Dcargo.args="build --workspace --all-features --lib --bins --tests")

status=0
rm -rf bindings/kotlin/target/surefire-reports
(cd bindings/kotlin && "${MVN[@]}" install) || status=$?

# Surefire writes one TEST-*.xml per test class; its <testsuite> element carries
# the counts.
passed=0 failed=0 skipped=0
shopt -s nullglob
for report in bindings/kotlin/target/surefire-reports/TEST-*.xml; do
    read -r t f e s < <(awk 'match($0, /<testsuite [^>]*>/) {
        tag = substr($0, RSTART, RLENGTH)
        n = split("tests failures errors skipped", keys, " ")
        for (i = 1; i <= n; i++) {
            v = 0
            if (match(tag, " " keys[i] "=\"[0-9]+\"")) {
                v = substr(tag, RSTART + length(keys[i]) + 3, RLENGTH - length(keys[i]) - 4)
            }
            printf "%s ", v
        }
        print ""
        exit
    }' "$report")
    passed=$((passed + ${t:-0} - ${f:-0} - ${e:-0} - ${s:-0}))
    failed=$((failed + ${f:-0} + ${e:-0}))
    skipped=$((skipped + ${s:-0}))
done
if [ $((passed + failed + skipped)) -eq 0 ] && [ "$status" -eq 0 ]; then
    echo "kotlin: no Surefire report found" >&2
    status=1
fi

if [ "$status" -eq 0 ]; then
    (cd examples/kotlin && mvn -q -B package) || status=$?
fi

record_counts "$passed" "$failed" "$skipped"
echo "kotlin: $passed passed, $failed failed, $skipped skipped"
exit "$status"
