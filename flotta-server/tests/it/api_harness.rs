//! The management API side of the shared test server: paths, JSON and `Status`
//! checks. The server itself is `flotta_testing::TestServer`.

use std::path::Path;

use flotta_server::tokens::AdminConfig;
pub use flotta_testing::{Database, TestServer, client_trusting, test_config};
use reqwest::{Response, StatusCode};
use serde_json::Value;

/// A client configured only from an admin.yaml file, as the CLI does.
pub fn client_from_admin_yaml(path: &Path) -> (reqwest::Client, AdminConfig) {
    let text = std::fs::read_to_string(path).expect("admin.yaml readable");
    let config: AdminConfig = serde_yaml_ng::from_str(&text).expect("admin.yaml parses");
    (client_trusting(&config.certificate_authority), config)
}

/// Waits until the server (a child process) writing `data_dir/admin.yaml` answers
/// `/readyz` at a URL other than `previous` (the last run's, still in the file until
/// rewritten); returns a client configured from that file.
pub async fn wait_ready(data_dir: &Path, previous: Option<&str>) -> (reqwest::Client, AdminConfig) {
    let admin_yaml = data_dir.join("admin.yaml");
    flotta_testing::eventually("the server to be ready", || async {
        if !admin_yaml.exists() {
            return None;
        }
        let (client, admin) = client_from_admin_yaml(&admin_yaml);
        if previous == Some(admin.server.as_str()) {
            return None;
        }
        let response = client
            .get(format!("{}/readyz", admin.server))
            .send()
            .await
            .ok()?;
        (response.status() == StatusCode::OK).then_some((client, admin))
    })
    .await
}

/// The collection path of a kind in a namespace.
pub fn collection(namespace: &str, plural: &str) -> String {
    format!("/apis/management.project-flotta.io/v1alpha1/namespaces/{namespace}/{plural}")
}

/// The path of one object.
pub fn object_path(namespace: &str, plural: &str, name: &str) -> String {
    format!("{}/{name}", collection(namespace, plural))
}

/// Reads a JSON response after checking its status code.
pub async fn expect_json(response: Response, code: StatusCode) -> Value {
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, code, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The names of the objects of one kind in `namespace`, as the management API at
/// `server` lists them.
pub async fn list_names(
    client: &reqwest::Client,
    server: &str,
    token: &str,
    namespace: &str,
    plural: &str,
) -> std::collections::BTreeSet<String> {
    let list = expect_json(
        client
            .get(format!("{server}{}", collection(namespace, plural)))
            .bearer_auth(token)
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["metadata"]["name"].as_str().expect("name").to_owned())
        .collect()
}

/// The names in `acknowledged` (workloads whose creation the server acknowledged)
/// that the server at `admin` does not list in `namespace`.
pub async fn lost_workloads(
    client: &reqwest::Client,
    admin: &AdminConfig,
    namespace: &str,
    acknowledged: &[String],
) -> Vec<String> {
    let stored = list_names(
        client,
        &admin.server,
        &admin.token,
        namespace,
        "edgeworkloads",
    )
    .await;
    acknowledged
        .iter()
        .filter(|name| !stored.contains(name.as_str()))
        .cloned()
        .collect()
}

/// Checks that a response is a Kubernetes `Status` failure with `code` and
/// `reason`, and returns it.
pub async fn expect_status(response: Response, code: StatusCode, reason: &str) -> Value {
    let status = expect_json(response, code).await;
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["apiVersion"], "v1", "{status}");
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["code"], code.as_u16(), "{status}");
    assert_eq!(status["reason"], reason, "{status}");
    assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()));
    status
}

/// A minimal valid object of each kind: (plural, body).
pub fn sample_objects(name: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "edgedevices",
            serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": name, "labels": {"site": "lab"}},
                "spec": {"requestTime": "2024-05-01T10:00:00Z"},
            }),
        ),
        (
            "edgedevicesets",
            serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDeviceSet",
                "metadata": {"name": name},
                "spec": {"heartbeat": {"periodSeconds": 30}},
            }),
        ),
        (
            "edgeworkloads",
            serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeWorkload",
                "metadata": {"name": name},
                "spec": {
                    "type": "pod",
                    "deviceSelector": {"matchLabels": {"site": "lab"}},
                    "pod": {"spec": {"containers": [{"name": "app", "image": "quay.io/app:1"}]}},
                },
            }),
        ),
        (
            "edgedevicesignedrequests",
            serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDeviceSignedRequest",
                "metadata": {"name": name},
                "spec": {"targetNamespace": "fleet", "approved": false},
            }),
        ),
    ]
}
