//! Integration tests of the `flotta` command line against a real server.

mod events;
mod harness;
mod offline;
mod online;
mod rollout;
