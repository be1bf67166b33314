//! The management API shows the heartbeat time kept in the last-seen table as an
//! `EdgeDevice`'s `status.lastSeen`, and selects on it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api_harness::{Database, TestServer, collection, expect_json, object_path, test_config};
use crate::app_edge_client::{device_client, edge_url, enrol_and_register};
use crate::edge_support::{NAMESPACE, heartbeat_message};

const DEVICE: &str = "seen-device";

fn parse_time(text: &Value) -> OffsetDateTime {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {text}"));
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn format_time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("format")
}

/// Names of the devices a filtered list returns.
async fn listed(server: &TestServer, field_selector: &str) -> Vec<String> {
    let response = server
        .admin(Method::GET, &collection(NAMESPACE, "edgedevices"))
        .query(&[("fieldSelector", field_selector)])
        .send()
        .await
        .expect("list");
    let list = expect_json(response, StatusCode::OK).await;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["metadata"]["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Sends a heartbeat and checks it was accepted.
async fn beat(client: &reqwest::Client, edge_server: &str, status: &str) {
    let response = client
        .post(edge_url(edge_server, &format!("/data/{DEVICE}/out")))
        .json(&heartbeat_message(status))
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(response.status(), StatusCode::OK, "heartbeat accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_time_shows_in_get_list_watch_and_field_selectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(test_config(dir.path(), &Database::Sqlite)).await;
    let admin = server.running().admin_config().clone();
    let identity = enrol_and_register(
        &admin.edge_server,
        &admin.certificate_authority,
        dir.path(),
        DEVICE,
    )
    .await;
    let device_path = object_path(NAMESPACE, "edgedevices", DEVICE);

    let response = server
        .admin(Method::GET, &device_path)
        .send()
        .await
        .expect("get");
    let unseen = expect_json(response, StatusCode::OK).await;
    assert!(
        unseen["status"].get("lastSeen").is_none(),
        "no heartbeat yet: {unseen}"
    );

    // The store keeps microseconds; a whole-second bound one second back stays below.
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let client = device_client(&admin.certificate_authority, &identity);
    beat(&client, &admin.edge_server, "up").await;
    let after = OffsetDateTime::now_utc();

    let response = server
        .admin(Method::GET, &device_path)
        .send()
        .await
        .expect("get");
    let device = expect_json(response, StatusCode::OK).await;
    let seen = parse_time(&device["status"]["lastSeen"]);
    assert!(
        before <= seen && seen <= after,
        "{seen} within the heartbeat"
    );

    let response = server
        .admin(Method::GET, &format!("{device_path}/status"))
        .send()
        .await
        .expect("get status");
    let status = expect_json(response, StatusCode::OK).await;
    assert_eq!(status["status"]["lastSeen"], device["status"]["lastSeen"]);

    let response = server
        .admin(Method::GET, &collection(NAMESPACE, "edgedevices"))
        .send()
        .await
        .expect("list");
    let list = expect_json(response, StatusCode::OK).await;
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["status"]["lastSeen"], device["status"]["lastSeen"]);

    let since = format_time(before);
    assert_eq!(
        listed(&server, &format!("status.lastSeen>={since}")).await,
        vec![DEVICE.to_owned()]
    );
    assert!(
        listed(&server, &format!("status.lastSeen<{since}"))
            .await
            .is_empty()
    );
    let later = format_time(after + time::Duration::seconds(1));
    assert!(
        listed(&server, &format!("status.lastSeen>{later}"))
            .await
            .is_empty()
    );

    // A watch from the list's version: the next heartbeat changes the status, and the
    // event carries a stored time (at least the first heartbeat's).
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_owned();
    let watch = server
        .admin(Method::GET, &collection(NAMESPACE, "edgedevices"))
        .query(&[
            ("watch", "true"),
            ("resourceVersion", version.as_str()),
            ("timeoutSeconds", "10"),
            ("fieldSelector", &format!("status.lastSeen>={since}")),
        ])
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), StatusCode::OK);
    beat(&client, &admin.edge_server, "degraded").await;
    let mut stream = watch.bytes_stream();
    let mut buffer = Vec::new();
    let event: Value = tokio::time::timeout(Duration::from_secs(10), async {
        use futures::StreamExt;
        loop {
            if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                return serde_json::from_slice(&line).expect("event JSON");
            }
            let chunk = stream
                .next()
                .await
                .expect("event before the end")
                .expect("chunk");
            buffer.extend_from_slice(&chunk);
        }
    })
    .await
    .expect("an event within the timeout");
    assert_eq!(event["type"], "MODIFIED", "{event}");
    assert_eq!(event["object"]["metadata"]["name"], DEVICE);
    let watched = parse_time(&event["object"]["status"]["lastSeen"]);
    assert!(
        seen <= watched,
        "{watched} not before the first heartbeat {seen}"
    );

    server.stop().await;
}
