//! Two server instances over one PostgreSQL database act as one: a device enrolled
//! through one long-polls the other, and a workload created through the first's
//! management API reaches that long-poll within a second.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_harness::{Database, TestServer, collection, expect_json, test_config};
use crate::app_edge_client::{device_client, enrol_and_register};
use crate::edge_support::{NAMESPACE, etag};

const DEVICE: &str = "replicated-device";

/// The URL of an Edge API path on a running server.
fn edge_url(server: &TestServer, path: &str) -> String {
    crate::app_edge_client::edge_url(&server.running().admin_config().edge_server, path)
}

/// Copies the `pki` directory of one data directory into another.
fn copy_pki(from: &Path, to: &Path) {
    let target = to.join("pki");
    std::fs::create_dir_all(&target).expect("pki directory");
    for entry in std::fs::read_dir(from.join("pki")).expect("read pki") {
        let entry = entry.expect("pki entry");
        std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy PKI file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: FLOTTA_TEST_POSTGRES_URL (scripts/test.sh runs it)"]
async fn a_workload_created_on_one_instance_wakes_a_long_poll_on_the_other_within_a_second() {
    let database = Database::fresh_postgres().await;
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let a = TestServer::start_with(test_config(dir_a.path(), &database)).await;
    copy_pki(dir_a.path(), dir_b.path());
    let b = TestServer::start_with(test_config(dir_b.path(), &database)).await;
    assert_eq!(
        a.running().admin_config().certificate_authority,
        b.running().admin_config().certificate_authority,
        "one fleet CA"
    );

    let admin_a = a.running().admin_config();
    let device = enrol_and_register(
        &admin_a.edge_server,
        &admin_a.certificate_authority,
        dir_a.path(),
        DEVICE,
    )
    .await;
    let ca_pem = b.running().admin_config().certificate_authority.clone();
    let client = device_client(&ca_pem, &device);
    let config_path = format!("/data/{DEVICE}/in");
    let first = client
        .get(edge_url(&b, &config_path))
        .send()
        .await
        .expect("config from B");
    assert_eq!(first.status(), StatusCode::OK, "B knows the device");
    let tag = etag(&first);
    let body: Value = first.json().await.expect("json");
    assert_eq!(body["content"]["workloads"], json!([]), "{body}");

    let waiting = tokio::spawn({
        let url = format!("{}?wait=30", edge_url(&b, &config_path));
        let tag = tag.clone();
        async move {
            let response = client
                .get(url)
                .header("if-none-match", tag)
                .send()
                .await
                .expect("long-poll on B");
            (response, Instant::now())
        }
    });
    // Wait until the long-poll waits on B; it must still be waiting when the change
    // lands.
    flotta_testing::eventually("the long-poll to wait on B", || async {
        (b.edge().waiting_devices() == 1).then_some(())
    })
    .await;
    assert!(!waiting.is_finished(), "long-poll ended before any change");

    let workload = json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "replicated-app"},
        "spec": {"type": "pod", "device": DEVICE,
            "pod": {"spec": {"containers": [{"name": "app", "image": "quay.io/test/app:2"}]}}},
    });
    let path = collection(NAMESPACE, "edgeworkloads");
    // Open A's management connection first, so the measurement starts at the create.
    let warm = a.admin(Method::GET, &path).send().await.expect("list on A");
    assert_eq!(warm.status(), StatusCode::OK);
    let created_at = Instant::now();
    let created = a
        .admin(Method::POST, &path)
        .json(&workload)
        .send()
        .await
        .expect("create on A");
    expect_json(created, StatusCode::CREATED).await;

    let (response, answered_at) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("long-poll answered")
        .expect("long-poll task");
    let elapsed = answered_at.duration_since(created_at);
    assert_eq!(response.status(), StatusCode::OK, "new configuration");
    println!("B answered {elapsed:?} after the create on A");
    assert!(
        elapsed < Duration::from_secs(1),
        "B answered {elapsed:?} after the create on A"
    );
    let new_tag = etag(&response);
    assert_ne!(new_tag, tag);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["content"]["workloads"][0]["name"], "replicated-app",
        "{body}"
    );

    // A renders the same configuration version for the device.
    let device_on_a = device_client(&ca_pem, &device);
    let from_a = device_on_a
        .get(edge_url(&a, &config_path))
        .send()
        .await
        .expect("config from A");
    assert_eq!(from_a.status(), StatusCode::OK);
    assert_eq!(etag(&from_a), new_tag);

    b.stop().await;
    a.stop().await;
}
