//! Integration tests of flotta-core.

mod reconcile;
mod reference;
mod roundtrip;
