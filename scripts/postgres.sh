#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the storage tests.
#
#   scripts/postgres.sh start   # installs Debian's postgresql if missing, starts a
#                               # cluster on 127.0.0.1 (free port, trust auth) and prints
#                               # FLOTTA_TEST_POSTGRES_URL=postgres://...
#   scripts/postgres.sh stop    # stops it and removes its data
#
# Typical use:  eval "$(scripts/postgres.sh start)"; export FLOTTA_TEST_POSTGRES_URL
set -euo pipefail

STATE_DIR="${FLOTTA_PG_DIR:-${TMPDIR:-/tmp}/flotta-test-postgres}"
DATA_DIR="$STATE_DIR/data"
LOG_FILE="$STATE_DIR/postgres.log"
PORT_FILE="$STATE_DIR/port"

# Debian installs the server binaries under /usr/lib/postgresql/<major>/bin (not on PATH).
find_bindir() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && best="$d"
    done
    if [ -z "$best" ] && command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        best="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
    fi
    printf '%s' "$best"
}

ensure_installed() {
    if [ -n "$(find_bindir)" ]; then return; fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "postgresql is not installed and installing it needs root" >&2
        exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

# PostgreSQL refuses to run as root: run it as the postgres user (created by the
# Debian package; created here when only the binaries exist).
as_db_user() {
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $(( 20000 + RANDOM % 20000 ))
}

print_url() {
    echo "FLOTTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$(cat "$PORT_FILE")/postgres"
}

start() {
    ensure_installed
    local bin
    bin="$(find_bindir)"
    if [ -f "$PORT_FILE" ] && as_db_user "$bin/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1; then
        print_url
        return
    fi
    rm -rf "$STATE_DIR"
    mkdir -p "$STATE_DIR"
    [ "$(id -u)" -eq 0 ] && { id postgres >/dev/null 2>&1 || as_db_user true; chown postgres "$STATE_DIR"; }
    as_db_user "$bin/initdb" -D "$DATA_DIR" -U postgres -A trust -E UTF8 --no-sync >"$STATE_DIR/initdb.log" 2>&1 \
        || { cat "$STATE_DIR/initdb.log" >&2; exit 1; }
    local port
    port="$(free_port)"
    as_db_user "$bin/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $STATE_DIR -c max_connections=300" start >&2 \
        || { cat "$LOG_FILE" >&2; exit 1; }
    echo "$port" >"$PORT_FILE"
    print_url
}

stop() {
    local bin
    bin="$(find_bindir)"
    if [ -n "$bin" ] && [ -d "$DATA_DIR" ]; then
        as_db_user "$bin/pg_ctl" -D "$DATA_DIR" -m fast -w stop >&2 || true
    fi
    rm -rf "$STATE_DIR"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    url) print_url ;;
    *) echo "usage: $0 [start|stop|url]" >&2; exit 2 ;;
esac
