//! The `flotta-sim` binary end to end (the scenarios against a server run in
//! scripts/test-sim.sh; this also makes `cargo test` build the binary it uses).

mod cli;
