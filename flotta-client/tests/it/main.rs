//! Integration tests of flotta-client against a real in-process server over TLS.

mod apply;
mod crud;
mod edge;
mod harness;
mod retry;
mod watch;
