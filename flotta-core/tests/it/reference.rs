//! Locating Flotta's reference data next to the workspace.

use std::path::PathBuf;

/// `<workspace>/../shared/reference/flotta`, or `None` (after printing a skip line)
/// when the reference data is absent.
pub fn flotta_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/flotta");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: ../shared/reference not found");
        None
    }
}

/// Reads a reference file as text.
pub fn read(dir: &std::path::Path, relative: &str) -> String {
    std::fs::read_to_string(dir.join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}
