#![doc = include_str!("../README.md")]

pub mod api;
pub mod app;
pub mod config;
pub mod edge;
pub mod events;
mod fs;
pub mod gitops;
pub mod leader;
pub mod limits;
mod listener;
pub mod member_metadata;
pub mod metrics;
pub mod oidc;
pub mod playbooks;
pub mod references;
mod server_pki;
mod shutdown;
mod start_error;
pub mod store;
pub mod tokens;
pub mod ui;
pub mod workload_status;
