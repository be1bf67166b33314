//! Secrets and keys never reach the logs: the real binary runs at `FLOTTA_LOG=trace`
//! through a whole flow (enrolment, registration, a device configuration holding a
//! secret, a Secret object sent to the device, config fetches, heartbeats, token creation, refused tokens), and its
//! output is searched for every secret it handled.

use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::api_harness::object_path;
use crate::app_edge_client::{device_client, edge_url, enrol_and_register};
use crate::edge_support::{NAMESPACE, heartbeat_message};

const BINARY: &str = env!("CARGO_BIN_EXE_flotta-server");
const DEVICE: &str = "log-device";
const CONFIG_SECRET: &str = "config-secret-value-7f3a9c2e";
const REFUSED_TOKEN: &str = "refused-token-value-41b8d0";
const SECRET_VALUE: &str = "secret-object-value-9c04e7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_at_trace_level_logs_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let data_dir = dir.path().join("data");
    let mut child = Command::new(BINARY)
        .args([
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
            "--api-listen",
            "127.0.0.1:0",
            "--edge-listen",
            "127.0.0.1:0",
        ])
        .env("FLOTTA_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("server starts");

    let (client, admin) = crate::api_harness::wait_ready(&data_dir, None).await;

    let identity = enrol_and_register(
        &admin.edge_server,
        &admin.certificate_authority,
        &data_dir,
        DEVICE,
    )
    .await;
    let device_url = format!(
        "{}{}",
        admin.server,
        object_path(NAMESPACE, "edgedevices", DEVICE)
    );
    let patched = client
        .request(Method::PATCH, &device_url)
        .bearer_auth(&admin.token)
        .header("content-type", "application/merge-patch+json")
        .body(
            serde_json::to_vec(&json!({"spec": {"files": [
                {"path": "/etc/app/credentials", "content": CONFIG_SECRET, "mode": "0600"}
            ]}}))
            .expect("patch"),
        )
        .send()
        .await
        .expect("patch device");
    assert_eq!(patched.status(), StatusCode::OK);

    // A Secret object, and a workload that sends it to the device.
    let secret = client
        .post(format!(
            "{}/api/v1/namespaces/{NAMESPACE}/secrets",
            admin.server
        ))
        .bearer_auth(&admin.token)
        .json(&json!({"metadata": {"name": "api"}, "stringData": {"token": SECRET_VALUE}}))
        .send()
        .await
        .expect("create secret");
    assert_eq!(secret.status(), StatusCode::CREATED);
    let workload = client
        .post(format!(
            "{}/apis/management.project-flotta.io/v1alpha1/namespaces/{NAMESPACE}/edgeworkloads",
            admin.server
        ))
        .bearer_auth(&admin.token)
        .json(&json!({"metadata": {"name": "uses-secret"}, "spec": {"type": "pod", "device": DEVICE,
            "pod": {"spec": {"containers": [{"name": "app", "image": "app:1",
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]}]}}}}))
        .send()
        .await
        .expect("create workload");
    assert_eq!(workload.status(), StatusCode::CREATED);
    let encoded_value = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE)
    };

    let device = device_client(&admin.certificate_authority, &identity);
    // Config polls are answered from a view the store's watch keeps current, so the
    // patch shows up a moment after it was acknowledged: poll as a device does.
    let config_url = edge_url(&admin.edge_server, &format!("/data/{DEVICE}/in"));
    let config = device.get(&config_url).send().await.expect("config");
    assert_eq!(config.status(), StatusCode::OK);
    let tag = config
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .to_owned();
    let mut config_text = config.text().await.expect("config body");
    let mut tag = tag;
    while !(config_text.contains(CONFIG_SECRET) && config_text.contains(&encoded_value)) {
        // Not in the view yet: long-poll, as a device does, until the change lands.
        let changed = device
            .get(format!("{config_url}?wait=10"))
            .header("if-none-match", &tag)
            .send()
            .await
            .expect("config long-poll");
        assert_eq!(
            changed.status(),
            StatusCode::OK,
            "the patch and the workload change the config"
        );
        tag = changed
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .expect("ETag header")
            .to_owned();
        config_text = changed.text().await.expect("config body");
    }
    assert!(
        config_text.contains(CONFIG_SECRET),
        "the device receives its secret"
    );
    for _ in 0..3 {
        let response = device
            .post(edge_url(&admin.edge_server, &format!("/data/{DEVICE}/out")))
            .json(&heartbeat_message("up"))
            .send()
            .await
            .expect("heartbeat");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let created = client
        .post(format!(
            "{}/apis/management.project-flotta.io/v1alpha1/tokens",
            admin.server
        ))
        .bearer_auth(&admin.token)
        .json(&json!({"role": "operator", "description": "log test"}))
        .send()
        .await
        .expect("create token");
    assert_eq!(created.status(), StatusCode::CREATED);
    let token_secret = created.json::<serde_json::Value>().await.expect("token")["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let refused = client
        .get(format!(
            "{}/apis/management.project-flotta.io/v1alpha1/edgedevices",
            admin.server
        ))
        .bearer_auth(REFUSED_TOKEN)
        .send()
        .await
        .expect("refused request");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let _ = child.kill();
    let _ = child.wait();
    let output = std::fs::read_to_string(&log_path).expect("log");

    // The output really is the server's log (the server logs few events below info
    // level; every one that fired is in here too).
    assert!(
        output.contains("INFO") && output.contains("listening"),
        "no server log captured: {}",
        output.lines().take(20).collect::<Vec<_>>().join("\n")
    );

    let pki = data_dir.join("pki");
    let key_lines = |file: &str| -> Vec<String> {
        std::fs::read_to_string(pki.join(file))
            .expect("key file")
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 32)
            .map(str::to_owned)
            .collect()
    };
    let mut secrets: Vec<(String, String)> = vec![
        ("PEM private key marker".into(), "PRIVATE KEY".into()),
        ("admin token".into(), admin.token.clone()),
        ("created token".into(), token_secret),
        ("refused token".into(), REFUSED_TOKEN.into()),
        ("config secret".into(), CONFIG_SECRET.into()),
        ("Secret object value".into(), SECRET_VALUE.into()),
        ("Secret object value, base64".into(), encoded_value.clone()),
        (
            "secret sealing key".into(),
            std::fs::read_to_string(data_dir.join("secret-key"))
                .expect("sealing key created at first start")
                .trim()
                .to_owned(),
        ),
    ];
    for file in ["ca.key", "server.key", "register.key"] {
        for line in key_lines(file) {
            secrets.push((format!("a line of {file}"), line));
        }
    }
    for line in identity
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 32)
    {
        secrets.push(("a line of the device key".into(), line.to_owned()));
    }
    let leaked: Vec<&str> = secrets
        .iter()
        .filter(|(_, value)| output.contains(value.as_str()))
        .map(|(what, _)| what.as_str())
        .collect();
    println!(
        "searched {} bytes of trace-level logs for {} secrets",
        output.len(),
        secrets.len()
    );
    assert!(leaked.is_empty(), "secrets in the logs: {leaked:?}");
}
