//! Integration tests of flotta-core.

mod examples;
mod manifest_errors;
mod reference;
mod roundtrip;
mod schema;
