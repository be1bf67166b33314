# Shared settings for the project's scripts; sourced, not run.
# In CI the cargo target dir lives outside the clone so it survives between runs.
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/flotta-rs/target"
fi
# CI builds once per run: incremental caches (gigabytes) would only cost disk and
# time there.
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export TARGET_DIR

# Rust components the scripts rely on.
ensure_rust() {
    command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
}

# Installs Debian packages that are missing (root only); `apt-get update` runs once.
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages (${missing[*]}); installing them needs root" >&2
        return 1
    fi
    if [ ! -e /tmp/.flotta-apt-updated ]; then
        apt-get update -qq >&2 && touch /tmp/.flotta-apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Test suites run by scripts/test.sh add their counts here, one "passed failed skipped"
# line each; the closing line of test.sh sums them.
record_counts() {
    [ -n "${FLOTTA_TEST_COUNTS:-}" ] && printf '%s %s %s\n' "$1" "$2" "$3" >>"$FLOTTA_TEST_COUNTS"
    return 0
}
