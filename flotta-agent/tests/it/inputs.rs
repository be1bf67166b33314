//! The `flotta-agent` binary with the process runtime gives a workload its Secret and
//! ConfigMap (environment and a mounted file), restarts it when the Secret changes,
//! and writes the `spec.files` overlay so that a SIGKILL in the middle leaves every
//! file old or new, never partial.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotta_core::model::{EdgeDevice, EdgeWorkload};
use flotta_server::app::pki_files;
use flotta_testing::{TestServer, eventually_within};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::killed_mid_apply::{AgentProcess, processes_with, wait_until, workloads_with};

fn write_config(dir: &Path, server: &TestServer, device: &str, file_roots: &[&Path]) -> PathBuf {
    let admin = server.admin_config();
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &admin.certificate_authority).expect("write CA");
    let pki = server.data_dir().join("pki");
    let roots: Vec<String> = file_roots
        .iter()
        .map(|r| format!("{:?}", r.display().to_string()))
        .collect();
    let config = dir.join("agent.toml");
    let toml = format!(
        r#"server = "{edge}"
ca = "{ca}"
registration_certificate = "{cert}"
registration_key = "{key}"
state_dir = "{state}"
device_id = "{device}"
runtime = "process"
heartbeat_period_seconds = 1
file_roots = [{roots}]

[process]
log_dir = "{logs}"
initial_backoff_seconds = 1
max_backoff_seconds = 2
stop_grace_seconds = 1
"#,
        edge = admin.edge_server,
        ca = ca.display(),
        cert = pki.join(pki_files::REGISTER_CERT).display(),
        key = pki.join(pki_files::REGISTER_KEY).display(),
        state = dir.join("state").display(),
        logs = dir.join("workloads").display(),
        roots = roots.join(", "),
    );
    std::fs::write(&config, toml).expect("write agent.toml");
    config
}

async fn post(server: &TestServer, path: &str, body: serde_json::Value) {
    let response = server
        .admin(Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED, "POST {path}");
}

/// Kills the marked workload processes whatever happens.
struct Marker(String);

impl Drop for Marker {
    fn drop(&mut self) {
        for pid in processes_with(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_workload_reads_its_secret_and_config_map_and_restarts_when_the_secret_changes() {
    const DEVICE: &str = "inputs-agent";
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("seen.txt");
    let marker = Marker(format!("flotta-inputs-test-{}", std::process::id()));
    post(
        &server,
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "api"}, "stringData": {"token": "first-token", "key.pem": "KEY"}}),
    )
    .await;
    post(
        &server,
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "app"}, "data": {"MODE": "fast", "app.conf": "level=3"}}),
    )
    .await;
    let workload: EdgeWorkload = serde_json::from_value(json!({
        "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeWorkload",
        "metadata": {"name": "reader", "namespace": "default"},
        "spec": {"type": "pod", "device": DEVICE, "pod": {"spec": {
            "containers": [{"name": "main", "image": "unused",
                "command": ["sh", "-c",
                    "echo \"$TOKEN $MODE $(cat volumes/conf/app.conf)\" > \"$OUT.tmp\" && mv \"$OUT.tmp\" \"$OUT\"; sleep 300",
                    marker.0.clone()],
                "env": [
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "MODE"}}},
                    {"name": "OUT", "value": out.display().to_string()},
                ]}],
            "volumes": [
                {"name": "conf", "configMap": {"name": "app"}},
                {"name": "tls", "secret": {"secretName": "api", "items": [{"key": "key.pem", "path": "key.pem"}]}},
            ]}}}
    }))
    .expect("workload");
    server
        .management_client()
        .create::<EdgeWorkload>("default", &workload)
        .await
        .expect("workload created");

    let config = write_config(dir.path(), &server, DEVICE, &[dir.path()]);
    let mut agent = AgentProcess::start(&config, &dir.path().join("agent.log"));
    let read = |expected: &'static str| {
        let out = out.clone();
        move || std::fs::read_to_string(&out).is_ok_and(|text| text.trim() == expected)
    };
    let waited = tokio::task::spawn_blocking({
        let check = read("first-token fast level=3");
        move || {
            wait_until(
                "the workload's first output",
                Duration::from_secs(60),
                check,
            )
        }
    })
    .await
    .expect("wait task");
    println!(
        "workload saw its inputs {} ms after the agent started",
        waited.as_millis()
    );
    let key = dir.path().join("workloads/reader/volumes/tls/key.pem");
    assert_eq!(std::fs::read_to_string(&key).expect("secret file"), "KEY");
    assert_eq!(
        std::fs::metadata(&key)
            .expect("secret file")
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "secret files are owner-only"
    );

    // A new secret value re-renders the device and restarts the workload with it.
    let path = "/api/v1/namespaces/default/secrets/api";
    let response = server
        .admin(Method::PATCH, path)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"stringData": {"token": "second-token"}}).to_string())
        .send()
        .await
        .expect("patch secret");
    assert_eq!(response.status(), StatusCode::OK);
    tokio::task::spawn_blocking({
        let check = read("second-token fast level=3");
        move || {
            wait_until(
                "the output with the new secret",
                Duration::from_secs(60),
                check,
            )
        }
    })
    .await
    .expect("wait task");
    assert_eq!(workloads_with(&marker.0).len(), 1, "one process, restarted");
    tokio::task::spawn_blocking(move || agent.terminate())
        .await
        .expect("terminate task");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_the_files_overlay_leaves_each_file_old_or_new() {
    const DEVICE: &str = "files-agent";
    const FILES: usize = 150;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("overlay");
    std::fs::create_dir_all(&root).expect("root");
    let config = write_config(dir.path(), &server, DEVICE, &[&root]);
    let log = dir.path().join("agent.log");
    let mut agent = AgentProcess::start(&config, &log);
    let client = server.management_client();
    eventually_within("the agent to register", Duration::from_secs(60), || async {
        client.get::<EdgeDevice>("default", DEVICE).await.ok()
    })
    .await;

    // Every file 16 KiB of one repeated letter: a partial file is too short.
    let content = |i: usize| {
        char::from(b'a' + u8::try_from(i % 26).unwrap_or(0))
            .to_string()
            .repeat(16 * 1024)
    };
    let path = {
        let root = root.clone();
        move |i: usize| root.join(format!("f{i:03}.conf"))
    };
    let files: Vec<serde_json::Value> = (0..FILES)
        .map(|i| json!({"path": path(i).display().to_string(), "content": content(i)}))
        .collect();
    client
        .patch::<EdgeDevice>("default", DEVICE, &json!({"spec": {"files": files}}))
        .await
        .expect("files set");
    // Kill as soon as the overlay has begun: busy-watch for its first file.
    let first = path(0);
    let killed_after = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        while !first.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the overlay never started"
            );
            std::thread::yield_now();
        }
        agent.kill();
        std::fs::read_dir(first.parent().expect("root"))
            .expect("root")
            .count()
    })
    .await
    .expect("kill task");
    let mut present = 0;
    for i in 0..FILES {
        match std::fs::read_to_string(path(i)) {
            Ok(text) => {
                assert_eq!(text, content(i), "f{i:03}.conf is partial after the kill");
                present += 1;
            }
            Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::NotFound),
        }
    }
    println!("killed with {present} of {FILES} files written ({killed_after} entries in the root)");

    // Restarted, the agent finishes the overlay and leaves no temporary file.
    let mut agent = AgentProcess::start(&config, &log);
    let root_for_wait = root.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("the overlay complete", Duration::from_secs(60), || {
            (0..FILES).all(|i| std::fs::read_to_string(path(i)).is_ok_and(|t| t == content(i)))
        });
        let names: Vec<String> = std::fs::read_dir(&root_for_wait)
            .expect("root")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".flotta-tmp"))
            .collect();
        assert!(names.is_empty(), "temporary files left: {names:?}");
        agent.terminate();
    })
    .await
    .expect("wait task");
    server.stop().await;
}
