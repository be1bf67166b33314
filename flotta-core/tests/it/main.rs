//! Integration tests of flotta-core.

mod examples;
mod manifest_errors;
mod reference;
mod roundtrip;
mod schema;
mod unknown_fields;
mod wire_messages;
