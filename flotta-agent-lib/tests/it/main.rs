//! Integration tests of the agent against a real in-process flotta server over
//! mutual TLS.

mod ansible;
mod ca_rotation;
mod config_inputs;
mod data_upload;
mod events;
mod harness;
mod lifecycle;
mod logs;
mod metrics;
mod podman_runtime;
mod prefetch;
mod process_runtime;
mod rollout;
mod run;
mod set_rollout;
mod update_window;
mod wire;
