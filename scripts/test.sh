#!/usr/bin/env bash
# Runs every check and test suite of the project. The README's test command.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_rust

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test (workspace)"
cargo test --workspace --all-features

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
