//! Integration tests of the `flotta-agent` binary against a real in-process server.

mod inputs;
mod killed_mid_apply;
mod os_update;
mod prefetch;
