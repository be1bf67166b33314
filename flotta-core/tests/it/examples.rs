//! Our example manifests parse, validate cleanly and round-trip.

use flotta_core::manifest::{AnyResource, parse_manifests};
use flotta_core::validation::Validate;
use serde_json::Value;

use crate::reference::example_manifests;

#[test]
fn every_example_parses_validates_and_round_trips() {
    let examples = example_manifests();
    let mut kinds: Vec<&str> = Vec::new();
    for (name, text) in &examples {
        let resources = parse_manifests(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resources.len(), 1, "{name} holds one resource");
        for resource in &resources {
            let problems = resource.validate();
            assert!(problems.is_empty(), "{name}: {problems:?}");
            let input: Value = serde_yaml_ng::from_str(text).expect("valid YAML");
            let output = serde_json::to_value(resource).expect("serializes");
            assert_eq!(output, input, "{name} changed on a round trip");
            kinds.push(resource.kind());
        }
    }
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "EdgeDevice",
            "EdgeDeviceSet",
            "EdgeDeviceSignedRequest",
            "EdgeWorkload"
        ]
    );
}

#[test]
fn examples_use_the_extensions() {
    let examples = example_manifests();
    let all: String = examples.iter().map(|(_, t)| format!("---\n{t}")).collect();
    let resources = parse_manifests(&all).expect("examples parse together");
    for resource in resources {
        match resource {
            AnyResource::EdgeDeviceSet(set) => {
                assert!(set.spec.selector.is_some());
                let template = set.spec.template.expect("set has a template");
                let labels = template.metadata.and_then(|m| m.labels).expect("labels");
                assert!(labels.values().any(|v| v.contains("getOrDefault")));
            }
            AnyResource::EdgeWorkload(workload) => {
                let rollout = workload.spec.rollout_policy.expect("has a rollout policy");
                assert_eq!(rollout.batches.map(|b| b.len()), Some(2));
            }
            AnyResource::EdgeDevice(device) => {
                assert_eq!(device.spec.files.map(|f| f.len()), Some(2));
                let os = device.spec.os_information.expect("os target");
                assert_eq!(os.automatic_rollback, Some(true));
            }
            AnyResource::EdgeDeviceSignedRequest(request) => {
                assert_eq!(request.spec.target_namespace, "plant-north");
            }
            _ => {}
        }
    }
}
