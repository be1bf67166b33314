//! Integration tests of flotta-server.

mod api_harness;
mod api_postgres;
mod api_sqlite;
mod api_startup;
mod api_suite;
mod crash;
mod edge_auth;
mod edge_config;
mod edge_flow;
mod edge_payloads;
mod edge_support;
mod store_conformance;
mod store_harness;
#[cfg(feature = "postgres")]
mod store_postgres;
mod store_sqlite;
