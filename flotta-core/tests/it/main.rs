//! Integration tests of flotta-core.

mod reference;
mod roundtrip;
mod selector_conformance;
mod selector_corpus;
mod selector_fields;
mod selector_properties;
