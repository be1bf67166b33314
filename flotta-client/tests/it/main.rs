//! Integration tests of flotta-client against a real server.
