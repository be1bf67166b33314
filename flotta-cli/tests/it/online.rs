//! Commands against a running server.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use flotta_core::model::{DeviceWorkloadStatus, EdgeDevice, EdgeDeviceStatus};
use predicates::str::contains;
use serde_json::Value;

use crate::harness::{CliServer, FLEET, flotta, stdout_of, write};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn apply_creates_then_reports_unchanged_and_configured() {
    let server = CliServer::start();
    let file = write(server.work_dir(), "fleet.yaml", FLEET);
    let first = stdout_of(server.flotta().args(["apply", "-f", &file]));
    assert_eq!(
        first,
        "edgedeviceset/lab created\nedgeworkload/web created\nedgedevicesignedrequest/edge-09 created\n"
    );
    let again = stdout_of(
        server
            .flotta()
            .args(["apply", "-f", "-"])
            .write_stdin(FLEET),
    );
    assert_eq!(
        again,
        "edgedeviceset/lab unchanged\nedgeworkload/web unchanged\nedgedevicesignedrequest/edge-09 unchanged\n"
    );
    let changed = FLEET.replace("web:1", "web:2");
    let dir = server.work_dir().join("manifests");
    std::fs::create_dir(&dir).expect("dir");
    write(&dir, "fleet.yaml", &changed);
    let third = stdout_of(server.flotta().args(["apply", "-f"]).arg(&dir));
    assert!(third.contains("edgeworkload/web configured"), "{third}");
}

#[test]
fn apply_names_the_file_and_document_that_failed_and_goes_on() {
    let server = CliServer::start();
    let manifest = format!("kind: Gizmo\nmetadata: {{name: g}}\n---\n{FLEET}");
    let file = write(server.work_dir(), "mixed.yaml", &manifest);
    let output = server
        .flotta()
        .args(["apply", "-f", &file])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(
        stderr.contains(&format!(
            "error: {file}: document 0: gizmo/g: unknown kind \"Gizmo\""
        )),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 4 documents failed"), "{stderr}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(stdout.contains("edgeworkload/web created"), "{stdout}");
}

#[test]
fn get_prints_aligned_tables_and_every_format() {
    let server = CliServer::start();
    let file = write(server.work_dir(), "fleet.yaml", FLEET);
    stdout_of(server.flotta().args(["apply", "-f", &file]));
    stdout_of(server.flotta().args(["apply", "-n", "other", "-f", &file]));

    let table = stdout_of(server.flotta().args(["get", "workloads"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("NAME   TYPE   TARGET     RUNNING   AGE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("web    pod    site=lab   <none>    "),
        "{table}"
    );

    let all = stdout_of(server.flotta().args(["get", "ew", "-A"]));
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    assert!(lines[0].starts_with("NAMESPACE   NAME"), "{all}");
    assert!(lines[1].starts_with("default     web"), "{all}");
    assert!(lines[2].starts_with("other       web"), "{all}");

    let wide = stdout_of(server.flotta().args(["get", "sets", "-o", "wide"]));
    assert!(
        wide.lines().next().is_some_and(|h| h.ends_with("LABELS")),
        "{wide}"
    );
    assert!(wide.contains("site=lab"), "{wide}");

    let one = stdout_of(server.flotta().args(["get", "workload/web", "-o", "json"]));
    assert_eq!(
        json(&one)["spec"]["pod"]["spec"]["containers"][0]["name"],
        "web"
    );
    let list = stdout_of(server.flotta().args(["get", "edsr", "-A", "-o", "json"]));
    assert_eq!(json(&list)["items"].as_array().map(Vec::len), Some(2));
    let yaml = stdout_of(
        server
            .flotta()
            .args(["get", "edgedeviceset", "lab", "-o", "yaml"]),
    );
    let parsed: Value = serde_yaml_ng::from_str(&yaml).expect("YAML");
    assert_eq!(parsed["kind"], "EdgeDeviceSet");
    let names = stdout_of(
        server
            .flotta()
            .args(["get", "signedrequests", "-o", "name"]),
    );
    assert_eq!(names, "edgedevicesignedrequest/edge-09\n");

    let selected =
        stdout_of(
            server
                .flotta()
                .args(["get", "edsr", "-l", "batch=one", "-o", "name"]),
        );
    assert_eq!(selected, "edgedevicesignedrequest/edge-09\n");
    let none = server
        .flotta()
        .args(["get", "edsr", "-l", "batch=two"])
        .output()
        .expect("runs");
    assert!(none.status.success());
    assert!(none.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .contains("No edgedevicesignedrequests found in namespace default.")
    );
    let by_field = stdout_of(server.flotta().args([
        "get",
        "sets",
        "--field-selector",
        "metadata.name=lab",
        "-o",
        "name",
    ]));
    assert_eq!(by_field, "edgedeviceset/lab\n");

    server
        .flotta()
        .args(["get", "device", "nowhere"])
        .assert()
        .failure()
        .stderr(contains("404 NotFound"));
    server
        .flotta()
        .args(["get", "edsr", "-l", "batch in (one"])
        .assert()
        .failure()
        .stderr(contains("400"));
}

#[test]
fn describe_device_shows_labels_status_hardware_and_workloads() {
    let server = CliServer::start();
    server.with_client(async |client| {
        let mut device = EdgeDevice::new("edge-01", Default::default());
        device.metadata.labels = Some([("site".to_owned(), "lab".to_owned())].into());
        let mut created = client.create("default", &device).await.expect("created");
        created.status = Some(EdgeDeviceStatus {
            phase: Some("up".into()),
            hardware: Some(flotta_core::model::Hardware {
                hostname: Some("rpi-01".into()),
                ..Default::default()
            }),
            workloads: Some(vec![DeviceWorkloadStatus {
                name: "web".into(),
                phase: Some("Running".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        client
            .replace_status("default", &created)
            .await
            .expect("status written");
    });
    let text = stdout_of(server.flotta().args(["describe", "device", "edge-01"]));
    for expected in [
        "Name:         edge-01",
        "Namespace:    default",
        "Labels:       site=lab",
        "Phase:        up",
        "Hostname:    rpi-01",
        "web    Running",
        "REVISION",
        "Conditions:",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let table = stdout_of(server.flotta().args(["get", "devices"]));
    // No heartbeat reached the server, so it computed no conditions yet.
    assert!(
        table.contains("edge-01   up      <none>   <none>    1"),
        "{table}"
    );
    server
        .flotta()
        .args(["describe", "device", "ghost"])
        .assert()
        .failure()
        .stderr(contains("NotFound"));
}

#[test]
fn delete_approve_and_label_change_objects() {
    let server = CliServer::start();
    let file = write(server.work_dir(), "fleet.yaml", FLEET);
    stdout_of(server.flotta().args(["apply", "-f", &file]));

    assert_eq!(
        stdout_of(server.flotta().args(["approve", "edsr/edge-09"])),
        "edgedevicesignedrequest/edge-09 approved\n"
    );
    let approved = stdout_of(
        server
            .flotta()
            .args(["get", "edsr", "edge-09", "-o", "json"]),
    );
    assert_eq!(json(&approved)["spec"]["approved"], true);
    server
        .flotta()
        .args(["approve", "device/edge-09"])
        .assert()
        .failure()
        .stderr(contains("only enrolment requests"));

    // --all approves only the pending ones matching the selector.
    let more = "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSignedRequest\nmetadata: {name: edge-10, labels: {batch: two}}\nspec: {targetNamespace: default}\n---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSignedRequest\nmetadata: {name: edge-11, labels: {batch: three}}\nspec: {targetNamespace: default}\n";
    stdout_of(server.flotta().args(["apply", "-f", "-"]).write_stdin(more));
    assert_eq!(
        stdout_of(
            server
                .flotta()
                .args(["approve", "--all", "-l", "batch=two"])
        ),
        "edgedevicesignedrequest/edge-10 approved\n"
    );
    let pending = stdout_of(
        server
            .flotta()
            .args(["get", "edsr", "edge-11", "-o", "json"]),
    );
    assert_ne!(json(&pending)["spec"]["approved"], true);

    // deny: the request says so in its status, `get` shows it, --all skips it.
    assert_eq!(
        stdout_of(server.flotta().args(["deny", "edsr/edge-11"])),
        "edgedevicesignedrequest/edge-11 denied\n"
    );
    let denied = json(&stdout_of(
        server
            .flotta()
            .args(["get", "edsr", "edge-11", "-o", "json"]),
    ));
    assert_eq!(denied["spec"]["approved"], false);
    assert_eq!(denied["status"]["conditions"][0]["type"], "declined");
    assert_eq!(denied["status"]["conditions"][0]["status"], "True");
    // Who decided: the server signs the condition with the caller's token.
    let message = denied["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with("denied through the management API (by token "),
        "{message}"
    );
    let table = stdout_of(server.flotta().args(["get", "edsr"]));
    let row = table
        .lines()
        .find(|l| l.starts_with("edge-11"))
        .unwrap_or_default();
    assert!(row.contains("Denied"), "{table}");
    server
        .flotta()
        .args(["deny", "--all"])
        .assert()
        .success()
        .stdout("");

    assert_eq!(
        stdout_of(
            server
                .flotta()
                .args(["label", "sets/lab", "tier=edge", "site-"])
        ),
        "edgedeviceset/lab labeled\n"
    );
    let labels = stdout_of(server.flotta().args(["get", "set", "lab", "-o", "json"]));
    assert_eq!(
        json(&labels)["metadata"]["labels"],
        serde_json::json!({"tier": "edge"})
    );
    server
        .flotta()
        .args(["label", "sets/lab", "tier=core"])
        .assert()
        .failure()
        .stderr(contains("--overwrite"));
    stdout_of(
        server
            .flotta()
            .args(["label", "sets/lab", "tier=core", "--overwrite"]),
    );

    assert_eq!(
        stdout_of(server.flotta().args(["delete", "workloads", "web"])),
        "edgeworkload/web deleted\n"
    );
    server
        .flotta()
        .args(["get", "ew", "web"])
        .assert()
        .failure()
        .stderr(contains("NotFound"));
    server
        .flotta()
        .args(["delete", "ew", "web"])
        .assert()
        .failure()
        .stderr(contains("NotFound"));
}

#[test]
fn the_default_configuration_is_read_from_the_working_directory() {
    let server = CliServer::start();
    flotta()
        .args(["get", "devices"])
        .current_dir(server.work_dir())
        .assert()
        .success()
        .stderr(contains("No edgedevices found in namespace default."));
    flotta()
        .args(["--config"])
        .arg(server.admin_yaml())
        .args(["get", "sets"])
        .assert()
        .success();
}

#[test]
fn an_unreachable_server_is_one_line_and_a_failure() {
    let mut server = CliServer::start();
    server.stop();
    let output = server
        .flotta()
        .args(["get", "devices"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot connect to https://"),
        "{stderr}"
    );
}

/// Starts `flotta get ... -w` and returns it with a receiver of its output lines.
fn spawn_watch(server: &CliServer, args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let binary = assert_cmd::cargo::cargo_bin("flotta");
    let mut child = std::process::Command::new(binary)
        .args(args)
        .env("FLOTTA_CONFIG", server.admin_yaml())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

#[test]
fn get_watch_streams_rows_as_objects_change() {
    let server = CliServer::start();
    let file = write(server.work_dir(), "fleet.yaml", FLEET);
    stdout_of(server.flotta().args(["apply", "-f", &file]));
    let (mut child, received) = spawn_watch(&server, &["get", "sets", "-w", "-o", "name"]);
    let next = || {
        received
            .recv_timeout(Duration::from_secs(20))
            .expect("a line")
    };
    assert_eq!(next(), "edgedeviceset/lab");
    let second = FLEET.replace("name: lab", "name: plant");
    stdout_of(
        server
            .flotta()
            .args(["apply", "-f", "-"])
            .write_stdin(second),
    );
    assert_eq!(next(), "edgedeviceset/plant");
    stdout_of(server.flotta().args(["delete", "sets", "lab"]));
    assert_eq!(next(), "edgedeviceset/lab");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn get_watch_as_a_table_prints_the_header_once_and_aligned_rows() {
    let server = CliServer::start();
    let file = write(server.work_dir(), "fleet.yaml", FLEET);
    stdout_of(server.flotta().args(["apply", "-f", &file]));
    let (mut child, received) = spawn_watch(&server, &["get", "edsr", "--watch"]);
    let next = || {
        received
            .recv_timeout(Duration::from_secs(20))
            .expect("a line")
    };
    let header = next();
    assert!(
        header.starts_with("NAME           TARGET NAMESPACE   CONDITION      AGE"),
        "{header:?}"
    );
    let first = next();
    assert!(
        first.starts_with("edge-09        default            Pending        "),
        "{first:?}"
    );
    stdout_of(server.flotta().args(["approve", "edge-09"]));
    let approved = next();
    assert!(
        approved.starts_with("edge-09        default            Approved       "),
        "{approved:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn secrets_and_config_maps_are_created_listed_and_described_without_values() {
    let server = CliServer::start();
    let key = write(server.work_dir(), "client.key", "KEY-MATERIAL-7c1d");
    let created = stdout_of(server.flotta().args([
        "create",
        "secret",
        "generic",
        "api",
        "--from-literal",
        "token=tok-value-93f2",
        "--from-file",
        &key,
    ]));
    assert_eq!(created, "secret/api created\n");
    let map = stdout_of(server.flotta().args([
        "create",
        "configmap",
        "app",
        "--from-literal",
        "MODE=fast",
    ]));
    assert_eq!(map, "configmap/app created\n");

    let table = stdout_of(server.flotta().args(["get", "secrets"]));
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "TYPE", "DATA", "AGE"], "{table}");
    assert_eq!(rows[1][..3], ["api", "Opaque", "2"], "{table}");
    let maps = stdout_of(server.flotta().args(["get", "cm", "-o", "name"]));
    assert_eq!(maps, "configmap/app\n");

    let described = stdout_of(server.flotta().args(["describe", "secret", "api"]));
    assert!(described.contains("token:  14 bytes"), "{described}");
    assert!(described.contains("client.key:  17 bytes"), "{described}");
    assert!(
        !described.contains("tok-value") && !described.contains("KEY-MATERIAL"),
        "{described}"
    );

    let again = server
        .flotta()
        .args([
            "create",
            "secret",
            "generic",
            "api",
            "--from-literal",
            "a=b",
        ])
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(1));
    let bad = server
        .flotta()
        .args([
            "create",
            "secret",
            "generic",
            "x",
            "--from-literal",
            "no-equals-sign",
        ])
        .output()
        .expect("runs");
    let stderr = String::from_utf8(bad.stderr).expect("utf-8");
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");
    assert!(
        !stderr.contains("no-equals-sign"),
        "the text may be a value: {stderr}"
    );

    // The example manifest applies, secrets and config maps included, and applying
    // it again changes nothing.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/manifests/secrets/app-with-secrets.yaml"
    );
    let applied = stdout_of(server.flotta().args(["apply", "-f", example]));
    assert_eq!(
        applied,
        "secret/telemetry-credentials created\nconfigmap/telemetry-settings created\n\
         edgeworkload/telemetry-uploader created\nedgedeviceset/cameras-files created\n"
    );
    let again = stdout_of(server.flotta().args(["apply", "-f", example]));
    assert!(
        again.starts_with("secret/telemetry-credentials unchanged\n"),
        "{again}"
    );
    let listed =
        stdout_of(
            server
                .flotta()
                .args(["get", "secrets", "-n", "plant-north", "-o", "name"]),
        );
    assert_eq!(listed, "secret/telemetry-credentials\n");
}

#[test]
fn edge_configs_are_applied_listed_and_refused_by_field() {
    let server = CliServer::start();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/manifests/edgeconfig.yaml"
    );
    let applied = stdout_of(server.flotta().args(["apply", "-f", example]));
    assert_eq!(applied, "edgeconfig/motd created\n");
    let table = stdout_of(server.flotta().args(["get", "edgeconfigs", "-o", "wide"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME   PLAYBOOKS   TIMEOUT   AGE"),
        "{table}"
    );
    assert!(lines[1].starts_with("motd   1           120s"), "{table}");
    let executions = stdout_of(server.flotta().args(["get", "playbookexecutions"]));
    // No device is labelled: no execution, at most the header.
    assert!(executions.lines().count() <= 1, "{executions}");
    // Two playbooks: refused, naming the field.
    let text = std::fs::read_to_string(example).expect("example");
    let entry = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("- content:"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    let two = format!(
        "{}\n{entry}\n",
        text.replace("name: motd", "name: motd-two")
    );
    let file = write(server.work_dir(), "two.yaml", &two);
    let output = server
        .flotta()
        .args(["apply", "-f", &file])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(stderr.contains("spec.edgePlaybook.playbooks"), "{stderr}");
}
