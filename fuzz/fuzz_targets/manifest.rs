//! Fuzzes the manifest reader (`flotta apply -f`, YAML or JSON): no input may panic,
//! and every accepted manifest must print back to YAML that reads as the same
//! resources.
#![no_main]

use flotta_core::manifest::{parse_manifests, to_yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(resources) = parse_manifests(text) else {
        return;
    };
    let yaml = to_yaml(&resources).expect("accepted resources must print");
    let again = parse_manifests(&yaml).expect("printed manifest must parse again");
    assert_eq!(resources.len(), again.len());
});
