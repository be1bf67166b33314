//! Reconciliation benchmarks.
fn main() {}
