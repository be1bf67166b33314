//! Fuzzes the reference agent's `agent.toml` parser. The agent is a binary crate, so
//! its configuration module is compiled in here from its source file: what is
//! fuzzed is exactly `AgentFile::parse`. No input may panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../flotta-agent/src/config.rs"]
mod config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = config::AgentFile::parse(text, Path::new("agent.toml")) {
        // The error names the file; rendering it must not panic either.
        assert!(error.to_string().contains("agent.toml"));
    }
});
