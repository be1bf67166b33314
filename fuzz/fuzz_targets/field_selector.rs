//! Fuzzes the field selector parser over a whitelist with every field type: no
//! input may panic, accepted selectors must read back from their canonical text,
//! and matching an object must not panic either.
#![no_main]

use flotta_core::selector::{FieldKind, FieldSelector, FieldSpec, FieldValue, Fields};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// Keep in step with `flotta-core/tests/it/selector_corpus.rs`.
const FUZZ_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("metadata.name", FieldKind::String),
    FieldSpec::new("metadata.namespace", FieldKind::String),
    FieldSpec::new("status.phase", FieldKind::String),
    FieldSpec::new("status.lastSeen", FieldKind::Timestamp),
    FieldSpec::new("status.restarts", FieldKind::Number),
    FieldSpec::new("spec.approved", FieldKind::Boolean),
];

struct Probe;

impl Fields for Probe {
    const FIELDS: &'static [FieldSpec] = FUZZ_FIELDS;

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        match path {
            "metadata.name" => Some(FieldValue::String("camera-01".into())),
            "status.restarts" => Some(FieldValue::Number(4)),
            "status.lastSeen" => Some(FieldValue::Timestamp(OffsetDateTime::UNIX_EPOCH)),
            "spec.approved" => Some(FieldValue::Boolean(true)),
            _ => None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = FieldSelector::parse_for::<Probe>(text) {
        let _ = selector.matches(&Probe);
        let canonical = selector.to_string();
        let reparsed = FieldSelector::parse_for::<Probe>(&canonical).unwrap_or_else(|e| {
            panic!("canonical form {canonical:?} of {text:?} does not parse: {e}")
        });
        assert_eq!(reparsed, selector, "{text:?} -> {canonical:?}");
        assert_eq!(reparsed.to_string(), canonical);
    }
});
