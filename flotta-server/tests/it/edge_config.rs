//! Config versions, `If-None-Match`, long-polls, heartbeats and batched last-seen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotta_server::edge::EdgeOptions;
use flotta_server::store::ResourceKind;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::edge_support::{EdgeServer, NAMESPACE, heartbeat_message};

fn workload(name: &str, device: &str) -> Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"type": "pod", "device": device,
            "pod": {"spec": {"containers": [{"name": "app", "image": "quay.io/test/app:1"}]}}},
    })
}

fn etag(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .to_owned()
}

#[tokio::test]
async fn etag_and_if_none_match() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let device = server.enrol_and_register("etag-device").await;
    let client = server.client(Some(&device));
    let url = server.url("/data/etag-device/in");

    let first = client.get(&url).send().await.expect("request");
    assert_eq!(first.status(), 200);
    let tag = etag(&first);
    let body: Value = first.json().await.expect("json");
    assert_eq!(
        format!(
            "\"{}\"",
            body["content"]["version"].as_str().expect("version")
        ),
        tag
    );

    let unchanged = client
        .get(&url)
        .header("if-none-match", &tag)
        .send()
        .await
        .expect("request");
    assert_eq!(unchanged.status(), 304);
    assert_eq!(etag(&unchanged), tag);
    assert!(unchanged.bytes().await.expect("body").is_empty());

    // A heartbeat changes the device's status, not its configuration.
    let response = server
        .post(
            Some(&device),
            "/data/etag-device/out",
            &heartbeat_message("degraded"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let still = client
        .get(&url)
        .header("if-none-match", &tag)
        .send()
        .await
        .expect("request");
    assert_eq!(still.status(), 304);

    server
        .store
        .create(
            ResourceKind::EdgeWorkload,
            NAMESPACE,
            "w1",
            workload("w1", "etag-device"),
        )
        .await
        .expect("create workload");
    let changed = client
        .get(&url)
        .header("if-none-match", &tag)
        .send()
        .await
        .expect("request");
    assert_eq!(changed.status(), 200);
    assert_ne!(etag(&changed), tag);
    let body: Value = changed.json().await.expect("json");
    assert_eq!(body["content"]["workloads"][0]["name"], "w1");
    server.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_on_a_change_for_the_device_only() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let device = server.enrol_and_register("poll-device").await;
    let client = server.client(Some(&device));
    let url = server.url("/data/poll-device/in");
    let tag = etag(&client.get(&url).send().await.expect("request"));

    // A change for another device does not end the wait.
    let started = Instant::now();
    let waiting = tokio::spawn({
        let client = client.clone();
        let url = format!("{url}?wait=2");
        let tag = tag.clone();
        async move {
            client
                .get(url)
                .header("if-none-match", tag)
                .send()
                .await
                .expect("request")
        }
    });
    // The poll is parked before the unrelated change lands.
    flotta_testing::eventually("the long-poll parked", || async {
        (server.state.waiting_devices() == 1).then_some(())
    })
    .await;
    server
        .store
        .create(
            ResourceKind::EdgeWorkload,
            NAMESPACE,
            "other",
            workload("other", "someone-else"),
        )
        .await
        .expect("create");
    let response = waiting.await.expect("task");
    assert_eq!(response.status(), 304);
    assert!(started.elapsed() >= Duration::from_secs(2));

    // A change for this device ends it at once.
    let started = Instant::now();
    let waiting = tokio::spawn({
        let client = client.clone();
        let url = format!("{url}?wait=30");
        let tag = tag.clone();
        async move {
            client
                .get(url)
                .header("if-none-match", tag)
                .send()
                .await
                .expect("request")
        }
    });
    for _ in 0..100 {
        if server.state.waiting_devices() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.state.waiting_devices(), 1);
    server
        .store
        .create(
            ResourceKind::EdgeWorkload,
            NAMESPACE,
            "mine",
            workload("mine", "poll-device"),
        )
        .await
        .expect("create");
    let response = waiting.await.expect("task");
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the change, not the timeout"
    );
    assert_ne!(etag(&response), tag);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["content"]["workloads"][0]["name"], "mine");
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_stamps_last_seen_when_it_arrives_and_when_it_is_answered() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let device = server.enrol_and_register("polling-device").await;
    let client = server.client(Some(&device));
    let url = server.url("/data/polling-device/in");
    let seen = || async {
        server
            .store
            .last_seen(NAMESPACE, "polling-device")
            .await
            .expect("last seen")
    };

    let before = OffsetDateTime::now_utc();
    let first = client.get(&url).send().await.expect("poll");
    assert_eq!(first.status(), 200);
    let tag = etag(&first);
    let arrived = seen()
        .await
        .expect("a poll stamps last-seen before its answer");
    assert!(
        arrived >= before - time::Duration::seconds(1),
        "{arrived} vs {before}"
    );

    // A long-poll that waits out its second is stamped again when answered: the
    // time is at least one second after it was sent.
    let sent = OffsetDateTime::now_utc();
    let unchanged = client
        .get(format!("{url}?wait=1"))
        .header("if-none-match", &tag)
        .send()
        .await
        .expect("long-poll");
    assert_eq!(unchanged.status(), 304);
    let answered = seen().await.expect("stamped");
    assert!(
        answered >= sent + time::Duration::seconds(1),
        "stamped at {answered}, the poll left at {sent}"
    );
    // The device's status reads it as its lastSeen, with no heartbeat sent.
    let status = server
        .management_client()
        .get::<flotta_core::model::EdgeDevice>(NAMESPACE, "polling-device")
        .await
        .expect("device")
        .status
        .expect("status");
    assert!(status.last_seen.is_some(), "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_update_status_only_on_change_and_last_seen_before_the_reply() {
    let options = EdgeOptions::default().with_auto_approve(true);
    let server = EdgeServer::start(options).await;
    let device = server.enrol_and_register("beat-device").await;
    let path = "/data/beat-device/out";

    let before = OffsetDateTime::now_utc();
    let response = server
        .post(Some(&device), path, &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 200);
    let after = OffsetDateTime::now_utc();
    // The 200 means the last-seen time is committed: it is in the store already.
    let first_seen = server
        .store
        .last_seen(NAMESPACE, "beat-device")
        .await
        .expect("last seen")
        .expect("recorded before the reply");
    assert!(
        first_seen >= before - time::Duration::seconds(1),
        "{first_seen} vs {before}"
    );
    assert!(first_seen <= after + time::Duration::seconds(1));
    let stored = server.device("beat-device").await.expect("device");
    assert_eq!(stored.body["status"]["phase"], "up");
    assert_eq!(stored.body["status"]["workloads"][0]["name"], "w1");
    assert_eq!(stored.body["status"]["workloads"][0]["phase"], "Running");
    assert!(stored.body["status"].get("lastSeen").is_none());

    // The same heartbeat again leaves the row alone.
    let response = server
        .post(Some(&device), path, &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 200);
    let again = server.device("beat-device").await.expect("device");
    assert_eq!(again.resource_version, stored.resource_version);

    // A different one rewrites the status.
    let response = server
        .post(Some(&device), path, &heartbeat_message("degraded"))
        .await;
    assert_eq!(response.status(), 200);
    let changed = server.device("beat-device").await.expect("device");
    assert!(changed.resource_version > stored.resource_version);
    assert_eq!(changed.body["status"]["phase"], "degraded");
    assert_eq!(changed.generation, stored.generation);

    // Every acknowledged heartbeat moved last-seen forward, also those that left
    // the device row alone.
    let seen = server
        .store
        .last_seen(NAMESPACE, "beat-device")
        .await
        .expect("last seen")
        .expect("recorded");
    assert!(seen >= first_seen, "{seen} vs {first_seen}");
    assert!(seen >= after - time::Duration::seconds(1));
    assert!(seen <= OffsetDateTime::now_utc());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_heartbeats_each_have_their_last_seen_stored_when_answered() {
    const DEVICES: usize = 40;
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let mut beats = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let id = format!("beat-{i:02}");
        let body = json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": id, "namespace": NAMESPACE},
            "spec": {},
        });
        server
            .store
            .create(ResourceKind::EdgeDevice, NAMESPACE, &id, body)
            .await
            .expect("create device");
        let client = server.client(Some(&server.device_identity(&id, NAMESPACE)));
        let url = server.url(&format!("/data/{id}/out"));
        beats.push((id, client, url));
    }
    let before = OffsetDateTime::now_utc();
    let tasks: Vec<_> = beats
        .into_iter()
        .map(|(id, client, url)| {
            let store = Arc::clone(&server.store);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&heartbeat_message("up"))
                    .send()
                    .await
                    .expect("request");
                // Read right after this device's own 200, while others still run.
                let seen = store.last_seen(NAMESPACE, &id).await.expect("last seen");
                (id, response.status(), seen)
            })
        })
        .collect();
    for task in tasks {
        let (id, status, seen) = task.await.expect("task");
        assert_eq!(status, 200, "{id}");
        let seen = seen.unwrap_or_else(|| panic!("{id}: acknowledged but not stored"));
        assert!(seen >= before - time::Duration::seconds(1), "{id}: {seen}");
    }
    assert_eq!(
        server
            .store
            .last_seen_all(Some(NAMESPACE))
            .await
            .expect("read")
            .len(),
        DEVICES
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_workload_change_wakes_every_matching_long_poll() {
    const DEVICES: usize = 200;
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let mut clients = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let id = format!("fleet-{i:03}");
        let body = json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": id, "namespace": NAMESPACE, "labels": {"site": "a"}},
            "spec": {},
        });
        server
            .store
            .create(ResourceKind::EdgeDevice, NAMESPACE, &id, body)
            .await
            .expect("create device");
        let client = server.client(Some(&server.device_identity(&id, NAMESPACE)));
        let url = server.url(&format!("/data/{id}/in"));
        let tag = etag(&client.get(&url).send().await.expect("request"));
        clients.push((client, url, tag));
    }
    let polls: Vec<_> = clients
        .into_iter()
        .map(|(client, url, tag)| {
            tokio::spawn(async move {
                let response = client
                    .get(format!("{url}?wait=60"))
                    .header("if-none-match", &tag)
                    .send()
                    .await
                    .expect("request");
                (response.status(), etag(&response) != tag)
            })
        })
        .collect();
    for _ in 0..500 {
        if server.state.waiting_devices() == DEVICES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.state.waiting_devices(), DEVICES);
    let started = Instant::now();
    let mut fleet_workload = workload("fleet-app", "none");
    fleet_workload["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("device");
    fleet_workload["spec"]["deviceSelector"] = json!({"matchLabels": {"site": "a"}});
    server
        .store
        .create(
            ResourceKind::EdgeWorkload,
            NAMESPACE,
            "fleet-app",
            fleet_workload,
        )
        .await
        .expect("create workload");
    for poll in polls {
        let (status, new_version) = poll.await.expect("task");
        assert_eq!(status, 200);
        assert!(new_version);
    }
    let elapsed = started.elapsed();
    println!("{DEVICES} long-polls answered {elapsed:?} after the workload change");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    server.stop().await;
}
