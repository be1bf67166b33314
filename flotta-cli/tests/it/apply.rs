//! `apply -R`, `apply --prune -l` and `apply --dry-run` against a running server.

use std::path::Path;

use crate::harness::{CliServer, stdout_of, write};

/// A workload manifest named `name`, with `labels` (`key: value` lines) and `image`.
fn workload(name: &str, labels: &[(&str, &str)], image: &str) -> String {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("  labels:\n{labels}")
    };
    format!(
        "apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: {name}
{labels}spec:
  type: pod
  deviceSelector:
    matchLabels:
      site: lab
  pod:
    spec:
      containers:
      - name: main
        image: {image}
"
    )
}

/// A device set manifest named `name` with `labels`.
fn device_set(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    format!(
        "apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSet
metadata:
  name: {name}
  labels:
{labels}spec:
  selector:
    matchLabels:
      site: {name}
"
    )
}

/// Whether `kind/name` exists, and the image of a workload's first container.
fn image_of(server: &CliServer, name: &str) -> Option<String> {
    let output = server
        .flotta()
        .args(["get", &format!("workload/{name}"), "-o", "json"])
        .output()
        .expect("runs");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("404 NotFound"), "{stderr}");
        return None;
    }
    let object: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    Some(
        object["spec"]["pod"]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("an image")
            .to_owned(),
    )
}

fn exists(server: &CliServer, reference: &str) -> bool {
    let output = server
        .flotta()
        .args(["get", reference, "-o", "name"])
        .output()
        .expect("runs");
    if output.status.success() {
        return true;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("404 NotFound"), "{stderr}");
    false
}

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).expect("directory");
}

/// stderr and the exit code of a command that fails.
fn failure(command: &mut assert_cmd::Command) -> (Option<i32>, String, String) {
    let output = command.output().expect("runs");
    assert!(!output.status.success(), "succeeded unexpectedly");
    (
        output.status.code(),
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

#[test]
fn recursive_apply_reads_nested_directories_in_path_order() {
    let server = CliServer::start();
    let root = server.work_dir().join("fleet");
    mkdir(&root.join("apps/web"));
    mkdir(&root.join("sets"));
    write(&root, "top.yaml", &device_set("top", &[("tier", "top")]));
    write(
        &root.join("apps"),
        "api.yml",
        &workload("api", &[], "r/api:1"),
    );
    write(&root.join("apps/web"), "web.json", &{
        let yaml: serde_json::Value =
            serde_yaml_ng::from_str(&workload("web", &[], "r/web:1")).expect("YAML");
        yaml.to_string()
    });
    write(&root.join("sets"), "lab.yaml", &device_set("lab", &[]));
    write(&root.join("sets"), "README.md", "not a manifest");

    // Without -R only the directory's own files.
    let flat = stdout_of(server.flotta().args(["apply", "-f"]).arg(&root));
    assert_eq!(flat, "edgedeviceset/top created\n");

    let deep = stdout_of(server.flotta().args(["apply", "-R", "-f"]).arg(&root));
    assert_eq!(
        deep,
        "edgeworkload/api created\nedgeworkload/web created\nedgedeviceset/lab created\nedgedeviceset/top unchanged\n"
    );
    assert_eq!(image_of(&server, "web").as_deref(), Some("r/web:1"));

    // A bad document deep down is named by its file and index; the others apply.
    let bad = write(
        &root.join("apps/web"),
        "broken.yaml",
        &format!(
            "{}---\n{}",
            workload("ok", &[], "r/ok:1"),
            workload("spec-typo", &[], "r/x:1").replace("  type: pod", "  tpye: pod")
        ),
    );
    let (code, stdout, stderr) = failure(
        server
            .flotta()
            .args(["apply", "--recursive", "-f"])
            .arg(&root),
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "error: {bad}: document 1: edgeworkload/spec-typo: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 6 documents failed"), "{stderr}");
    assert!(stdout.contains("edgeworkload/ok created"), "{stdout}");

    // A tree without manifests says so.
    let empty = server.work_dir().join("empty/nested");
    mkdir(&empty);
    let (_, _, stderr) = failure(
        server
            .flotta()
            .args(["apply", "-R", "-f"])
            .arg(empty.parent().expect("parent")),
    );
    assert!(
        stderr.contains("no .yaml, .yml or .json files in this directory or below it"),
        "{stderr}"
    );
}

#[test]
fn prune_deletes_selected_objects_missing_from_the_input_and_nothing_else() {
    let server = CliServer::start();
    let managed = [("managed-by", "gitops")];
    let dir = server.work_dir().join("repo");
    mkdir(&dir);
    let web = write(&dir, "web.yaml", &workload("web", &managed, "r/web:1"));
    let old = write(&dir, "old.yaml", &workload("old", &managed, "r/old:1"));
    let lab = write(&dir, "lab.yaml", &device_set("lab", &managed));
    stdout_of(server.flotta().args(["apply", "-f"]).arg(&dir));
    // Made by hand, without the label: never pruned.
    let manual = write(
        server.work_dir(),
        "manual.yaml",
        &workload("manual", &[("managed-by", "hand")], "r/m:1"),
    );
    stdout_of(server.flotta().args(["apply", "-f", &manual]));
    // In another namespace the input does not touch: not looked at.
    stdout_of(
        server
            .flotta()
            .args(["apply", "-n", "elsewhere", "-f", &old]),
    );

    std::fs::remove_file(&old).expect("old.yaml removed");
    std::fs::remove_file(&lab).expect("lab.yaml removed");
    let pruned = stdout_of(server.flotta().args([
        "apply",
        "-f",
        &web,
        "--prune",
        "-l",
        "managed-by=gitops",
    ]));
    // The device set is of a kind the input no longer has: as kubectl, only the
    // input's kinds are pruned.
    assert_eq!(
        pruned,
        "edgeworkload/web unchanged\nedgeworkload/old pruned\n"
    );
    assert!(!exists(&server, "workload/old"));
    assert!(exists(&server, "workload/manual"));
    assert!(exists(&server, "workload/web"));
    assert!(exists(&server, "set/lab"));
    assert!(
        stdout_of(
            server
                .flotta()
                .args(["get", "workloads", "-n", "elsewhere", "-o", "name"])
        )
        .contains("edgeworkload/old")
    );

    // Documents the selector does not select are not applied, as with kubectl.
    let mixed = write(
        server.work_dir(),
        "mixed.yaml",
        &format!(
            "{}---\n{}",
            workload("web", &managed, "r/web:1"),
            workload("stray", &[], "r/stray:1")
        ),
    );
    let output = stdout_of(server.flotta().args([
        "apply",
        "-f",
        &mixed,
        "--prune",
        "-l",
        "managed-by=gitops",
    ]));
    assert_eq!(output, "edgeworkload/web unchanged\n");
    assert!(!exists(&server, "workload/stray"));
}

#[test]
fn prune_without_a_selector_is_refused_before_anything_is_applied() {
    let server = CliServer::start();
    let file = write(
        server.work_dir(),
        "web.yaml",
        &workload("web", &[("app", "web")], "r/web:1"),
    );
    for args in [
        vec!["apply", "-f", &file, "--prune"],
        vec!["apply", "-f", &file, "--prune", "-l", ""],
    ] {
        let (code, stdout, stderr) = failure(server.flotta().args(&args));
        assert_eq!(code, Some(1), "{args:?}");
        assert_eq!(stdout, "", "{args:?}");
        assert!(
            stderr.contains("error: --prune needs a label selector (-l/--selector)"),
            "{stderr}"
        );
    }
    let (_, _, stderr) =
        failure(
            server
                .flotta()
                .args(["apply", "-f", &file, "--prune", "-l", "app in (web"]),
        );
    assert!(
        stderr.contains("invalid selector \"app in (web\""),
        "{stderr}"
    );
    assert!(!exists(&server, "workload/web"));
}

#[test]
fn prune_is_skipped_when_a_document_fails() {
    let server = CliServer::start();
    let managed = [("managed-by", "gitops")];
    let old = write(
        server.work_dir(),
        "old.yaml",
        &workload("old", &managed, "r/old:1"),
    );
    stdout_of(server.flotta().args(["apply", "-f", &old]));
    let broken = write(
        server.work_dir(),
        "broken.yaml",
        &workload("new", &managed, "r/new:1").replace("  type: pod", "  tpye: pod"),
    );
    let (_, stdout, stderr) = failure(server.flotta().args([
        "apply",
        "-f",
        &broken,
        "--prune",
        "-l",
        "managed-by=gitops",
    ]));
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("1 of 1 documents failed to apply; nothing was pruned"),
        "{stderr}"
    );
    assert!(exists(&server, "workload/old"));
}

#[test]
fn client_dry_run_changes_nothing_and_says_what_it_would_do() {
    let server = CliServer::start();
    let managed = [("managed-by", "gitops")];
    let web = write(
        server.work_dir(),
        "web.yaml",
        &workload("web", &managed, "r/web:1"),
    );
    let old = write(
        server.work_dir(),
        "old.yaml",
        &workload("old", &managed, "r/old:1"),
    );
    stdout_of(server.flotta().args(["apply", "-f", &web, "-f", &old]));

    let changed = write(
        server.work_dir(),
        "changed.yaml",
        &format!(
            "{}---\n{}",
            workload("web", &managed, "r/web:2"),
            workload("new", &managed, "r/new:1")
        ),
    );
    for dry_run in ["--dry-run=client", "--dry-run"] {
        let output = stdout_of(server.flotta().args([
            "apply",
            "-f",
            &changed,
            dry_run,
            "--prune",
            "-l",
            "managed-by=gitops",
        ]));
        assert_eq!(
            output,
            "edgeworkload/web configured (dry run)\nedgeworkload/new created (dry run)\nedgeworkload/old pruned (dry run)\n",
            "{dry_run}"
        );
    }
    assert_eq!(image_of(&server, "web").as_deref(), Some("r/web:1"));
    assert_eq!(image_of(&server, "new"), None);
    assert_eq!(image_of(&server, "old").as_deref(), Some("r/old:1"));

    // A client dry run still checks the documents offline.
    let typo = write(
        server.work_dir(),
        "typo.yaml",
        &workload("typo", &[], "r/t:1").replace("  type: pod", "  tpye: pod"),
    );
    let (_, _, stderr) = failure(
        server
            .flotta()
            .args(["apply", "-f", &typo, "--dry-run=client"]),
    );
    assert!(
        stderr.contains(&format!("error: {typo}: document 0: edgeworkload/typo: ")),
        "{stderr}"
    );
    let (code, _, stderr) = failure(
        server
            .flotta()
            .args(["apply", "-f", &web, "--dry-run=maybe"]),
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("invalid value 'maybe'"), "{stderr}");
}

#[test]
fn server_dry_run_sends_every_write_with_dry_run_all_and_stores_nothing() {
    let server = CliServer::start();
    let managed = [("managed-by", "gitops")];
    let web = write(
        server.work_dir(),
        "web.yaml",
        &workload("web", &managed, "r/web:1"),
    );
    let old = write(
        server.work_dir(),
        "old.yaml",
        &workload("old", &managed, "r/old:1"),
    );
    stdout_of(server.flotta().args(["apply", "-f", &web, "-f", &old]));

    let changed = write(
        server.work_dir(),
        "changed.yaml",
        &format!(
            "{}---\n{}---\n{}",
            workload("web", &managed, "r/web:2"),
            workload("new", &managed, "r/new:1"),
            device_set("lab", &managed)
        ),
    );
    let output = stdout_of(server.flotta().args([
        "apply",
        "-f",
        &changed,
        "--dry-run=server",
        "--prune",
        "-l",
        "managed-by=gitops",
    ]));
    assert_eq!(
        output,
        "edgeworkload/web configured (server dry run)\nedgeworkload/new created (server dry run)\nedgedeviceset/lab created (server dry run)\nedgeworkload/old pruned (server dry run)\n"
    );
    assert_eq!(image_of(&server, "web").as_deref(), Some("r/web:1"));
    assert_eq!(image_of(&server, "new"), None);
    assert!(!exists(&server, "set/lab"));
    assert_eq!(image_of(&server, "old").as_deref(), Some("r/old:1"));
    let web: serde_json::Value = serde_json::from_str(&stdout_of(server.flotta().args([
        "get",
        "workload/web",
        "-o",
        "json",
    ])))
    .expect("JSON");
    assert_eq!(web["metadata"]["generation"], 1, "{web}");
}

#[test]
fn server_side_apply_prints_serverside_applied_and_refuses_another_managers_fields() {
    let server = CliServer::start();
    let dir = server.work_dir();
    let v1 = write(dir, "web-1.yaml", &workload("web", &[], "r/web:1"));
    let v2 = write(dir, "web-2.yaml", &workload("web", &[], "r/web:2"));
    let out = stdout_of(server.flotta().args(["apply", "--server-side", "-f", &v1]));
    assert_eq!(out, "edgeworkload/web serverside-applied\n");

    // The image belongs to the field manager `flotta` now: `ci` may not change it.
    let output = server
        .flotta()
        .args(["apply", "--server-side", "--field-manager", "ci", "-f", &v2])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("conflict with \"flotta\"") && stderr.contains(".spec.pod.spec.containers"),
        "{stderr}"
    );
    assert_eq!(image_of(&server, "web").as_deref(), Some("r/web:1"));

    // A server dry run answers and stores nothing; --force-conflicts takes over.
    let out = stdout_of(server.flotta().args([
        "apply",
        "--server-side",
        "--field-manager",
        "ci",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        &v2,
    ]));
    assert_eq!(
        out,
        "edgeworkload/web serverside-applied (server dry run)\n"
    );
    assert_eq!(image_of(&server, "web").as_deref(), Some("r/web:1"));
    stdout_of(server.flotta().args([
        "apply",
        "--server-side",
        "--field-manager",
        "ci",
        "--force-conflicts",
        "-f",
        &v2,
    ]));
    assert_eq!(image_of(&server, "web").as_deref(), Some("r/web:2"));

    // Flags that do not go together are refused before anything is sent.
    for args in [
        vec!["apply", "--force-conflicts", "-f", &v1],
        vec!["apply", "--server-side", "--dry-run=client", "-f", &v1],
    ] {
        let output = server.flotta().args(&args).output().expect("runs");
        assert!(!output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("server-side"),
            "{args:?}"
        );
    }
}
