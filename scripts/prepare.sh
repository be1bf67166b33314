#!/usr/bin/env bash
# Installs what the test suites need besides Rust, so that scripts/test.sh can do it in
# the background while cargo compiles (downloads wait on the network, not the CPU).
# Every step is idempotent and each suite script still checks its own installs, so a
# suite run on its own needs nothing from here.
#
#   scripts/prepare.sh          # Debian packages, Python venvs, npm and Maven caches
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

step() { printf '\n==> prepare: %s\n' "$*"; }

# Debian packages first, in one apt-get call (dpkg takes one lock at a time).
step "Debian packages"
debs=(chromium binutils)
# The metrics tests push to a real Prometheus (remote-write receiver).
command -v prometheus >/dev/null || debs+=(prometheus)
# The log forwarding tests send to a real syslog server (rsyslogd, in /usr/sbin).
[ -x /usr/sbin/rsyslogd ] || command -v rsyslogd >/dev/null || debs+=(rsyslog)
dpkg -s rsyslog-openssl >/dev/null 2>&1 || debs+=(rsyslog-openssl)
# The podman runtime tests run real podman as root in namespaces of their own
# (flotta-testing/src/podman.rs): runc (crun cannot do the hybrid cgroup v1 of
# these machines), catatonit (the pods' pause process) and a static busybox to
# build the test image from (no image can be pulled).
for p in podman runc catatonit busybox-static; do
    dpkg -s "$p" >/dev/null 2>&1 || debs+=("$p")
done
scripts/postgres.sh tools 2>/dev/null || debs+=(postgresql)
command -v java >/dev/null || debs+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || debs+=(maven)
python3 -c 'import ensurepip' 2>/dev/null || debs+=(python3-venv)
apt_install "${debs[@]}"

# The Python packages of the bindings' suite and of schemathesis, pinned there.
step "Python venvs"
FLOTTA_PREPARE_ONLY=1 scripts/test-python.sh
FLOTTA_PREPARE_ONLY=1 scripts/schemathesis.sh
# A venv under ~/.cache/flotta-rs holding one pinned package, made again when the
# pin changes: venv DIR PACKAGE PROGRAM.
venv() {
    local dir="$HOME/.cache/flotta-rs/$1" package="$2" program="$3"
    if [ ! -x "$dir/bin/$program" ] || [ "$(cat "$dir/.flotta-packages" 2>/dev/null)" != "$package" ]; then
        python3 -m venv "$dir"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$package"
        printf '%s' "$package" >"$dir/.flotta-packages"
    fi
}
# The data upload tests send to a real S3-compatible server: moto's server mode
# (flotta-testing/src/s3.rs says why moto).
venv venv-s3 "moto[server]==5.1.22" moto_server
# The playbook tests run real ansible-core (flotta-testing/src/ansible.rs).
venv venv-ansible "ansible-core==2.17.7" ansible-playbook

# The OIDC tests sign in at a real Keycloak (scripts/keycloak.sh says why Keycloak).
step "Keycloak"
scripts/keycloak.sh install

step "npm packages of the console tests"
(cd flotta-server/ui/e2e && npm ci --no-audit --no-fund --loglevel=error)

# Maven's plugins and dependencies; the Kotlin suite runs offline-capable after this.
# A failure here is not fatal: the suite itself downloads what is still missing.
step "Maven dependencies"
(cd bindings/kotlin && mvn -q -B dependency:go-offline >/dev/null) ||
    echo "prepare: mvn dependency:go-offline failed; the Kotlin suite will fetch what it needs" >&2
echo "prepare: done"
