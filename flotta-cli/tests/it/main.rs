//! Integration tests of the `flotta` command line against a real server.

mod apply;
mod events;
mod harness;
mod login;
mod offline;
mod online;
mod rollout;
