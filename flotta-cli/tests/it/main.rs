//! Integration tests of the flotta command line.
