//! Integration tests of flotta-core.

mod reconcile;
mod reconcile_props;
mod reference;
mod roundtrip;
