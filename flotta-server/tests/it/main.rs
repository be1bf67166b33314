//! Integration tests of flotta-server.

mod crash;
mod store_conformance;
mod store_harness;
#[cfg(feature = "postgres")]
mod store_postgres;
mod store_sqlite;
