//! Integration tests of flotta-core.

mod examples;
mod manifest_errors;
mod reference;
mod roundtrip;
mod schema;
mod selector_conformance;
mod selector_corpus;
mod selector_fields;
mod selector_properties;
mod wire_messages;
