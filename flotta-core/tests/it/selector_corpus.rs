//! Replays the committed fuzz corpus through both parsers on stable Rust: nothing
//! may panic, and every accepted selector must read back from its canonical text.

use std::fs;
use std::path::{Path, PathBuf};

use flotta_core::selector::{FieldKind, FieldSelector, FieldSpec, Selector};

/// The whitelist the field-selector fuzz target parses against; keep in step with
/// `fuzz/fuzz_targets/field_selector.rs`.
const FUZZ_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("metadata.name", FieldKind::String),
    FieldSpec::new("metadata.namespace", FieldKind::String),
    FieldSpec::new("status.phase", FieldKind::String),
    FieldSpec::new("status.lastSeen", FieldKind::Timestamp),
    FieldSpec::new("status.restarts", FieldKind::Number),
    FieldSpec::new("spec.approved", FieldKind::Boolean),
];

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()).unwrap_or_else(|e| panic!("{e}")))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seed", dir.display());
    files
}

#[test]
fn label_selector_corpus_replays() {
    let mut accepted = 0;
    for path in corpus("label_selector") {
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Ok(selector) = text.parse::<Selector>() {
            accepted += 1;
            let canonical = selector.to_string();
            assert_eq!(
                canonical.parse::<Selector>().ok(),
                Some(selector),
                "{}",
                path.display()
            );
        }
    }
    assert!(accepted > 0, "the corpus must hold valid selectors too");
}

#[test]
fn field_selector_corpus_replays() {
    let mut accepted = 0;
    for path in corpus("field_selector") {
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Ok(selector) = FieldSelector::parse(text, FUZZ_FIELDS) {
            accepted += 1;
            let canonical = selector.to_string();
            assert_eq!(
                FieldSelector::parse(&canonical, FUZZ_FIELDS).ok(),
                Some(selector),
                "{}",
                path.display()
            );
        }
    }
    assert!(accepted > 0, "the corpus must hold valid selectors too");
}
