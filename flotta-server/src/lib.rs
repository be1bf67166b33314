#![doc = include_str!("../README.md")]

pub mod api;
pub mod app;
pub mod config;
pub mod edge;
pub mod limits;
pub mod metrics;
pub mod store;
pub mod tokens;
pub mod ui;
pub mod workload_status;
