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

/// `<workspace>/examples/manifests`.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests")
}

/// Every example manifest as (file name, text), sorted by name.
pub fn example_manifests() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())
        .expect("examples/manifests exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("readable example");
            (name, text)
        })
        .collect();
    files.sort();
    files
}
