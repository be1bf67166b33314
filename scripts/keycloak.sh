#!/usr/bin/env bash
# A throwaway Keycloak (the OIDC provider of the access-control tests) on loopback,
# over HTTPS with a CA made here, its data in memory.
#
#   scripts/keycloak.sh install  # downloads Keycloak's distribution from Maven Central
#                                # into ~/.cache/flotta-rs/keycloak (once)
#   scripts/keycloak.sh start    # installs, starts it on a free port, waits until it
#                                # serves, and prints the variables the tests read:
#                                #   FLOTTA_TEST_KEYCLOAK_URL=https://127.0.0.1:PORT
#                                #   FLOTTA_TEST_KEYCLOAK_CA=FILE (PEM of its CA)
#                                #   FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD=... (user admin)
#   scripts/keycloak.sh stop     # stops it and removes its state
#
# Why Keycloak: Flight Control's own identity provider, a complete OIDC provider
# (discovery, JWKS, key rotation through its admin API, password, authorization-code
# with PKCE and device grants, group claims), and it installs from Maven Central,
# which this project's machines reach. It needs Java 17 or newer.
#
# FLOTTA_KEYCLOAK_DIR chooses the state directory (default /tmp/flotta-test-keycloak).
#
# Typical use:  eval "$(scripts/keycloak.sh start)"
#               export FLOTTA_TEST_KEYCLOAK_URL FLOTTA_TEST_KEYCLOAK_CA FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD
set -euo pipefail

VERSION=26.7.3
CACHE="$HOME/.cache/flotta-rs/keycloak"
HOME_DIR="$CACHE/keycloak-$VERSION"
URL="https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/$VERSION/keycloak-quarkus-dist-$VERSION.tar.gz"
STATE_DIR="${FLOTTA_KEYCLOAK_DIR:-${TMPDIR:-/tmp}/flotta-test-keycloak}"

install() {
    [ -x "$HOME_DIR/bin/kc.sh" ] && return
    command -v java >/dev/null || { echo "keycloak: java not found (Java 17 or newer is needed)" >&2; exit 1; }
    mkdir -p "$CACHE"
    echo "keycloak: downloading $URL" >&2
    curl -sSfL --retry 3 -o "$CACHE/keycloak-$VERSION.tar.gz.part" "$URL"
    tar -xzf "$CACHE/keycloak-$VERSION.tar.gz.part" -C "$CACHE"
    rm -f "$CACHE/keycloak-$VERSION.tar.gz.part"
    [ -x "$HOME_DIR/bin/kc.sh" ] || { echo "keycloak: $HOME_DIR/bin/kc.sh missing after unpacking" >&2; exit 1; }
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

print_env() {
    echo "FLOTTA_TEST_KEYCLOAK_URL=https://127.0.0.1:$(cat "$STATE_DIR/port")"
    echo "FLOTTA_TEST_KEYCLOAK_CA=$STATE_DIR/ca.pem"
    echo "FLOTTA_TEST_KEYCLOAK_ADMIN_PASSWORD=$(cat "$STATE_DIR/admin-password")"
}

# A CA and a server certificate for 127.0.0.1 and localhost.
make_certificates() {
    local dir="$STATE_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
        -subj "/CN=flotta-rs test Keycloak CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf"
    openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 7 -extfile "$dir/ext.cnf" -out "$dir/tls.pem" 2>/dev/null
}

running() {
    [ -f "$STATE_DIR/pid" ] && kill -0 "$(cat "$STATE_DIR/pid")" 2>/dev/null
}

start() {
    install
    if running; then
        print_env
        return
    fi
    rm -rf "$STATE_DIR"
    mkdir -p "$STATE_DIR"
    make_certificates
    free_port >"$STATE_DIR/port"
    head -c 18 /dev/urandom | base64 | tr -d '+/=' >"$STATE_DIR/admin-password"
    local port management
    port="$(cat "$STATE_DIR/port")"
    management="$(free_port)"
    # start-dev: no production hostname checks, the realm data in memory (dev-mem).
    KC_BOOTSTRAP_ADMIN_USERNAME=admin \
        KC_BOOTSTRAP_ADMIN_PASSWORD="$(cat "$STATE_DIR/admin-password")" \
        setsid "$HOME_DIR/bin/kc.sh" start-dev \
        --db dev-mem \
        --http-enabled false \
        --https-port "$port" \
        --http-host 127.0.0.1 \
        --http-management-port "$management" \
        --https-certificate-file "$STATE_DIR/tls.pem" \
        --https-certificate-key-file "$STATE_DIR/tls.key" \
        >"$STATE_DIR/keycloak.log" 2>&1 &
    echo $! >"$STATE_DIR/pid"
    local deadline=$((SECONDS + 240))
    until curl -sf --cacert "$STATE_DIR/ca.pem" \
        "https://127.0.0.1:$port/realms/master/.well-known/openid-configuration" >/dev/null; do
        if ! running; then
            echo "keycloak: exited while starting; its log:" >&2
            tail -n 40 "$STATE_DIR/keycloak.log" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "keycloak: not serving after 240 s; its log:" >&2
            tail -n 40 "$STATE_DIR/keycloak.log" >&2
            stop
            exit 1
        fi
        sleep 1
    done
    print_env
}

stop() {
    if [ -f "$STATE_DIR/pid" ]; then
        # setsid made it a process group of its own: the script and its java.
        kill -TERM -- "-$(cat "$STATE_DIR/pid")" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while running && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        kill -KILL -- "-$(cat "$STATE_DIR/pid")" 2>/dev/null || true
    fi
    rm -rf "$STATE_DIR"
}

case "${1:-start}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    *) echo "usage: $0 [install|start|stop|env]" >&2; exit 2 ;;
esac
