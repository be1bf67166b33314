//! Integration tests of flotta-core.

mod reference;
mod roundtrip;
