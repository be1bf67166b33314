//! Integration tests of the `flotta` command line against a real server.

mod harness;
mod offline;
mod online;
