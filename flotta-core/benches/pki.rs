//! Benchmarks of the PKI: CSR verification and signing, peer identity.
fn main() {}
