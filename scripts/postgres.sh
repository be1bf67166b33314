#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the storage tests.
#
#   scripts/postgres.sh start   # installs Debian's postgresql if missing, starts a
#                               # cluster on 127.0.0.1 (free port, trust auth) and prints
#                               # FLOTTA_TEST_POSTGRES_URL=postgres://...
#   scripts/postgres.sh stop    # stops it and removes its data
#   scripts/postgres.sh stop-db [fast|immediate]
#                               # stops the server, keeping data and port (fault tests)
#   scripts/postgres.sh start-db
#                               # starts it again on the same data and port
#   scripts/postgres.sh restart # stop-db then start-db
#   scripts/postgres.sh tools   # exits 0 when the PostgreSQL binaries are installed
#
# FLOTTA_PG_DIR chooses the state directory (default /tmp/flotta-test-postgres), so a
# test can run a cluster of its own next to the shared one.
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
    free_port >"$PORT_FILE"
    launch "$bin"
    print_url
}

# Starts the server of an initialised cluster on the port in PORT_FILE.
launch() {
    as_db_user "$1/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $(cat "$PORT_FILE") -k $STATE_DIR -c max_connections=300" start >&2 \
        || { cat "$LOG_FILE" >&2; exit 1; }
}

# Stops the server only: data directory and port stay for start-db. `fast` ends the
# sessions and checkpoints; `immediate` is a crash (recovery replays the WAL).
stop_db() {
    local bin mode="${1:-fast}"
    bin="$(find_bindir)"
    case "$mode" in fast | immediate) ;; *) echo "stop-db: mode is fast or immediate" >&2; exit 2 ;; esac
    [ -d "$DATA_DIR" ] || { echo "no cluster in $STATE_DIR" >&2; exit 1; }
    as_db_user "$bin/pg_ctl" -D "$DATA_DIR" -m "$mode" -w stop >&2
}

start_db() {
    local bin
    bin="$(find_bindir)"
    [ -f "$PORT_FILE" ] || { echo "no cluster in $STATE_DIR" >&2; exit 1; }
    launch "$bin"
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
    stop-db) stop_db "${2:-fast}" ;;
    start-db) start_db ;;
    restart) stop_db fast; start_db ;;
    tools) [ -n "$(find_bindir)" ] ;;
    url) print_url ;;
    *) echo "usage: $0 [start|stop|stop-db [fast|immediate]|start-db|restart|tools|url]" >&2; exit 2 ;;
esac
