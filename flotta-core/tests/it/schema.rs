//! The generated CRDs: they load, their schemas accept our examples and Flotta's
//! samples, and every property of Flotta's CRDs exists in ours with the same type.

use std::collections::BTreeMap;

use flotta_core::crd;
use serde_json::Value;

use crate::reference::{example_manifests, flotta_dir, read};

fn our_schema(kind: &str) -> Value {
    crd::schemas()
        .remove(kind)
        .unwrap_or_else(|| panic!("no schema for {kind}"))
}

fn assert_schema_accepts(kind: &str, what: &str, document: &Value) {
    let schema = our_schema(kind);
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} rejected by the {kind} schema: {errors:#?}"
    );
}

#[test]
fn crds_load_back_with_names_and_versions() {
    let yaml = crd::to_yaml().expect("CRDs serialize");
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let names: Vec<&str> = documents
        .iter()
        .filter_map(|d| d.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    assert_eq!(
        names,
        [
            "edgedevices.management.project-flotta.io",
            "edgedevicesets.management.project-flotta.io",
            "edgeworkloads.management.project-flotta.io",
            "edgedevicesignedrequest.management.project-flotta.io",
            "edgeconfigs.management.project-flotta.io",
            "playbookexecutions.management.project-flotta.io",
            "repositories.management.project-flotta.io",
            "resourcesyncs.management.project-flotta.io",
        ]
    );
    let edsr = &documents[3];
    assert_eq!(
        edsr.pointer("/spec/names/shortNames/0")
            .and_then(Value::as_str),
        Some("edsr")
    );
    for document in &documents {
        assert_eq!(document["kind"], "CustomResourceDefinition");
        assert_eq!(
            document.pointer("/spec/versions/0/name"),
            Some(&Value::from("v1alpha1"))
        );
        assert!(
            document
                .pointer("/spec/versions/0/subresources/status")
                .is_some()
        );
        // Structural: no references or untyped alternatives left in the schema.
        let text = serde_json::to_string(document).expect("json");
        for keyword in ["$ref", "anyOf", "oneOf", "allOf"] {
            assert!(!text.contains(keyword), "schema still has {keyword}");
        }
    }
}

#[test]
fn schemas_accept_our_examples() {
    for (name, text) in example_manifests() {
        let document: Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
        let kind = document["kind"].as_str().expect("kind").to_owned();
        assert_schema_accepts(&kind, &name, &document);
    }
}

#[test]
fn schemas_accept_flotta_samples() {
    let Some(dir) = flotta_dir() else {
        return;
    };
    for (file, kind) in [
        ("samples/management_v1alpha1_edgedevice.yaml", "EdgeDevice"),
        (
            "samples/management_v1alpha1_edgedeviceset.yaml",
            "EdgeDeviceSet",
        ),
        (
            "samples/management_v1alpha1_edgeworkload.yaml",
            "EdgeWorkload",
        ),
    ] {
        let document: Value = serde_yaml_ng::from_str(&read(&dir, file)).expect("valid YAML");
        assert_schema_accepts(kind, file, &document);
    }
}

#[test]
fn schemas_reject_a_wrong_type() {
    let document = serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "d"},
        "spec": {"heartbeat": {"periodSeconds": "often"}}
    });
    let schema = our_schema("EdgeDevice");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    assert!(!validator.is_valid(&document));
}

/// Every property path of a schema with its `type` (or `int-or-string`), walking
/// `properties`, `items` (as `[]`) and `additionalProperties` (as `{}`).
fn property_types(schema: &Value, path: String, out: &mut BTreeMap<String, String>) {
    let kind = if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        "int-or-string".to_owned()
    } else {
        schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("any")
            .to_owned()
    };
    out.insert(path.clone(), kind);
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (name, child) in properties {
            property_types(child, format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        property_types(items, format!("{path}[]"), out);
    }
    if let Some(extra @ Value::Object(_)) = schema.get("additionalProperties") {
        property_types(extra, format!("{path}{{}}"), out);
    }
}

fn flotta_crd_schema(dir: &std::path::Path, file: &str) -> Value {
    let text = read(dir, file);
    let crd: Value = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .find(|d: &Value| !d.is_null())
        .expect("a CRD document");
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .expect("openAPIV3Schema")
}

#[test]
fn every_flotta_crd_property_exists_with_the_same_type() {
    let Some(dir) = flotta_dir() else {
        return;
    };
    for (file, kind) in [
        (
            "crd/management.project-flotta.io_edgedevices.yaml",
            "EdgeDevice",
        ),
        (
            "crd/management.project-flotta.io_edgedevicesets.yaml",
            "EdgeDeviceSet",
        ),
        (
            "crd/management.project-flotta.io_edgeworkloads.yaml",
            "EdgeWorkload",
        ),
        (
            "crd/management.project-flotta.io_edgedevicesignedrequest.yaml",
            "EdgeDeviceSignedRequest",
        ),
    ] {
        let mut theirs = BTreeMap::new();
        property_types(&flotta_crd_schema(&dir, file), String::new(), &mut theirs);
        let mut ours = BTreeMap::new();
        property_types(&our_schema(kind), String::new(), &mut ours);
        assert!(
            theirs.len() > 10,
            "{file}: walked only {} paths",
            theirs.len()
        );
        let mismatches: Vec<String> = theirs
            .iter()
            .filter_map(|(path, their_type)| match ours.get(path) {
                None => Some(format!("{path}: missing (theirs: {their_type})")),
                Some(our_type) if our_type != their_type => {
                    Some(format!("{path}: ours {our_type}, theirs {their_type}"))
                }
                Some(_) => None,
            })
            .collect();
        assert!(mismatches.is_empty(), "{kind}: {mismatches:#?}");
    }
}
