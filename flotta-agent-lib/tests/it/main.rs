//! Integration tests of the agent against a real in-process flotta server over
//! mutual TLS.

mod harness;
mod lifecycle;
mod podman_runtime;
mod process_runtime;
mod run;
mod wire;
