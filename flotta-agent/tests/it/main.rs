//! Integration tests of the `flotta-agent` binary against a real in-process server.

mod killed_mid_apply;
