//! Real ansible-core for the playbook tests: `ansible-playbook` from the
//! `ansible-core` package on PyPI, installed by `scripts/prepare.sh` into
//! `~/.cache/flotta-rs/venv-ansible`.
//!
//! Tests that need it are marked `#[ignore = "needs ansible-core ..."]`, so a plain
//! `cargo test` reports them ignored, never passed; `scripts/test.sh` installs it
//! and runs the ignored tests. On CI (`CI=true`), a missing `ansible-playbook` is a
//! failure: see [`require_in_ci`].

use std::path::PathBuf;

use crate::postgres::on_ci;

/// The environment variable naming another `ansible-playbook` than the one found.
pub const BINARY_VARIABLE: &str = "FLOTTA_TEST_ANSIBLE_PLAYBOOK";

const HOW_TO: &str = "run scripts/prepare.sh (it installs ansible-core into \
     ~/.cache/flotta-rs/venv-ansible) or name an ansible-playbook in FLOTTA_TEST_ANSIBLE_PLAYBOOK";

/// The `ansible-playbook` program, if there is one (the variable, the project's
/// venv, then `PATH`).
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_VARIABLE).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let venv = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/flotta-rs/venv-ansible/bin/ansible-playbook"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    venv.into_iter()
        .chain(std::env::split_paths(&path).map(|dir| dir.join("ansible-playbook")))
        .find(|candidate| candidate.is_file())
}

/// The `ansible-playbook` program; panics saying how to install it when there is
/// none.
pub fn require() -> PathBuf {
    binary()
        .unwrap_or_else(|| panic!("no ansible-playbook: this test needs ansible-core; {HOW_TO}"))
}

/// Fails on CI when there is no `ansible-playbook`, so that the ignored playbook
/// tests cannot go unrun there unnoticed.
pub fn require_in_ci() {
    if on_ci() && binary().is_none() {
        panic!("CI=true but no ansible-playbook: the playbook tests would be skipped; {HOW_TO}");
    }
}
