//! Integration tests of flotta-server.

mod api_harness;
mod api_last_seen;
mod api_postgres;
mod api_sqlite;
mod api_startup;
mod api_suite;
mod app_edge_client;
mod audit_log;
mod auth_matrix;
mod bad_input;
mod crash;
mod edge_auth;
mod edge_config;
mod edge_flotta_agent;
mod edge_flow;
mod edge_http2;
mod edge_payloads;
mod edge_propagation;
mod edge_status_cache;
mod edge_support;
mod events;
mod fault_proxy;
mod fleet;
mod fleet_crash;
mod gitops;
mod hardware_labels;
mod kubectl_api;
mod lossy_link;
mod member_metadata;
mod oidc;
#[cfg(feature = "postgres")]
mod postgres_restart;
mod rbac;
mod replicas;
mod secrets;
mod secrets_in_logs;
mod server_crash;
mod status_truth;
mod store_conformance;
mod store_harness;
#[cfg(feature = "postgres")]
mod store_postgres;
mod store_sqlite;
