//! Commands that need no server: validate, crds, completion, and argument errors.

use predicates::prelude::*;
use predicates::str::contains;

use crate::harness::{FLEET, flotta, write};

#[test]
fn validate_accepts_good_manifests_without_a_server() {
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "fleet.yaml", FLEET);
    flotta()
        .args(["validate", "-f", &file])
        .env("FLOTTA_CONFIG", "/nonexistent/admin.yaml")
        .assert()
        .success()
        .stdout(contains("3 document(s) in 1 file(s) are valid"));
    // A directory, and standard input.
    write(dir.path(), "more.yml", FLEET);
    write(dir.path(), "notes.txt", "not a manifest");
    flotta()
        .args(["validate", "-f"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(contains("6 document(s) in 2 file(s) are valid"));
    flotta()
        .args(["validate", "-f", "-"])
        .write_stdin(FLEET)
        .assert()
        .success();
    // -R reads the directories below too.
    let nested = dir.path().join("a").join("b");
    std::fs::create_dir_all(&nested).expect("nested dir");
    write(&nested, "deep.yaml", FLEET);
    flotta()
        .args(["validate", "-R", "-f"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(contains("9 document(s) in 3 file(s) are valid"));
}

#[test]
fn validate_lists_every_problem_with_file_document_and_field() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = format!(
        "{FLEET}---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDevice\nmetadata:\n  name: Bad_Name\n---\nkind: Gadget\nmetadata: {{name: g}}\n---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata: {{name: s}}\nspec:\n  heartbeat:\n    periodSeconds: often\n"
    );
    let file = write(dir.path(), "bad.yaml", &bad);
    let output = flotta()
        .args(["validate", "-f", &file])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}: document 3 (EdgeDevice/Bad_Name): metadata.name:"
        ))),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}: document 4 (Gadget/g): kind: unknown kind"
        ))),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}: document 5 (EdgeDeviceSet/s): spec.heartbeat.periodSeconds:"
        ))),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 3 problem(s) in 6 document(s)"),
        "{stderr}"
    );
    // The good documents are not reported.
    assert!(!stderr.contains("document 0"), "{stderr}");
}

#[test]
fn validate_names_a_missing_file() {
    flotta()
        .args(["validate", "-f", "/nonexistent/fleet.yaml"])
        .assert()
        .failure()
        .stderr(contains("error: cannot read /nonexistent/fleet.yaml"));
}

#[test]
fn crds_prints_one_definition_per_resource() {
    let output = flotta().arg("crds").output().expect("runs");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let mut kinds = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(document).expect("YAML document");
        if value.is_null() {
            continue;
        }
        assert_eq!(value["kind"], "CustomResourceDefinition");
        kinds.push(
            value["spec"]["names"]["kind"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "EdgeConfig",
            "EdgeDevice",
            "EdgeDeviceSet",
            "EdgeDeviceSignedRequest",
            "EdgeWorkload",
            "PlaybookExecution",
            "Repository",
            "ResourceSync"
        ]
    );
}

#[test]
fn completion_scripts_are_generated_for_known_shells() {
    for shell in ["bash", "zsh", "fish"] {
        flotta()
            .args(["completion", shell])
            .assert()
            .success()
            .stdout(contains("flotta").and(contains("validate")));
    }
    flotta()
        .args(["completion", "cmd"])
        .assert()
        .code(2)
        .stderr(contains("invalid value 'cmd'"));
}

#[test]
fn bad_flags_and_unknown_kinds_are_one_clear_error() {
    flotta()
        .args(["get", "devices", "-o", "xml"])
        .assert()
        .code(2)
        .stderr(contains("invalid value 'xml'"));
    flotta()
        .args(["get", "devices", "--bogus"])
        .assert()
        .code(2)
        .stderr(contains("--bogus"));
    let unknown = flotta().args(["get", "pods"]).output().expect("runs");
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8(unknown.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: unknown resource kind \"pods\""),
        "{stderr}"
    );
    flotta()
        .args(["get", "devices", "a", "-A"])
        .assert()
        .code(2);
    flotta()
        .args(["label", "device/x", "no-equals-sign"])
        .assert()
        .failure()
        .stderr(contains("invalid label change"));
}

#[test]
fn a_missing_configuration_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("dir");
    flotta()
        .args(["get", "devices"])
        .current_dir(dir.path())
        .assert()
        .failure()
        .stderr(contains("flotta-data/admin.yaml").and(contains("--config")));
}
