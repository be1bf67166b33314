//! Config propagation from the in-memory view: exactly the selected devices are
//! woken and rendered, unchanged polls cost no store read, label changes re-target
//! workloads, deletions reach the devices.

use std::time::{Duration, Instant};

use flotta_server::edge::{ConfigCacheStats, EdgeOptions};
use flotta_server::store::ResourceKind;
use serde_json::{Value, json};

use flotta_testing::eventually;

use crate::edge_support::{EdgeServer, NAMESPACE, etag};

const API_VERSION: &str = "management.project-flotta.io/v1alpha1";

struct Device {
    id: String,
    client: reqwest::Client,
    url: String,
}

async fn add_device(server: &EdgeServer, id: &str, site: &str) -> Device {
    server.create_device(id, json!({"site": site})).await;
    Device {
        id: id.to_owned(),
        client: server.client(Some(&server.device_identity(id, NAMESPACE))),
        url: server.url(&format!("/data/{id}/in")),
    }
}

fn site_workload(name: &str, site: &str, image: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "EdgeWorkload",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"site": site}},
            "pod": {"spec": {"containers": [{"name": "app", "image": image}]}}},
    })
}

fn stats(server: &EdgeServer) -> ConfigCacheStats {
    server.state.config_cache_stats()
}

/// Waits until the view knows `devices` devices.
async fn view_holds(server: &EdgeServer, devices: u64) {
    eventually(&format!("the view to hold {devices} devices"), || async {
        (stats(server).devices == devices).then_some(())
    })
    .await;
}

/// Waits until `devices` devices wait in a long-poll.
async fn waiting(server: &EdgeServer, devices: usize) {
    eventually(&format!("{devices} devices waiting"), || async {
        (server.state.waiting_devices() == devices).then_some(())
    })
    .await;
}

/// A long-poll that is parked on the server: when a change the test did not make
/// (the view settling after the previous one) answers it first, polls again with
/// the tag it got.
async fn parked_poll(
    server: &EdgeServer,
    device: &Device,
    mut tag: String,
) -> tokio::task::JoinHandle<(u16, String, Value)> {
    for _ in 0..3 {
        let pending = long_poll(device, &tag, 30);
        let parked = eventually("the long-poll parked or answered", || async {
            if server.state.waiting_devices() == 1 {
                Some(true)
            } else if pending.is_finished() {
                Some(false)
            } else {
                None
            }
        })
        .await;
        if parked {
            return pending;
        }
        let (status, next, body) = pending.await.expect("task");
        assert_eq!(status, 200, "{body}");
        assert_ne!(next, tag, "an unchanged configuration answered a long-poll");
        tag = next;
    }
    panic!("the configuration kept changing without a change to it");
}

/// A plain poll: the current version tag.
async fn poll(device: &Device) -> String {
    let response = device.client.get(&device.url).send().await.expect("poll");
    assert_eq!(response.status(), 200, "{}", device.id);
    etag(&response)
}

/// A long-poll with `tag` in a task: its status, tag and body.
fn long_poll(
    device: &Device,
    tag: &str,
    wait_s: u64,
) -> tokio::task::JoinHandle<(u16, String, Value)> {
    let client = device.client.clone();
    let url = format!("{}?wait={wait_s}", device.url);
    let tag = tag.to_owned();
    tokio::spawn(async move {
        let response = client
            .get(url)
            .header("if-none-match", &tag)
            .send()
            .await
            .expect("long-poll");
        let status = response.status().as_u16();
        let tag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, tag, body)
    })
}

fn workload_names(body: &Value) -> Vec<String> {
    body["content"]["workloads"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_change_wakes_and_renders_exactly_the_selected_devices() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let mut devices = Vec::new();
    for i in 0..4 {
        devices.push(add_device(&server, &format!("site-a-{i}"), "a").await);
    }
    for i in 0..3 {
        devices.push(add_device(&server, &format!("site-b-{i}"), "b").await);
    }
    view_holds(&server, 7).await;
    let mut tags = Vec::new();
    for device in &devices {
        tags.push(poll(device).await);
    }
    let hits = stats(&server).hits;
    let polls: Vec<_> = devices
        .iter()
        .zip(&tags)
        .map(|(device, tag)| long_poll(device, tag, 3))
        .collect();
    waiting(&server, devices.len()).await;
    // A long-poll waits before its first look-up (so that no change slips between
    // the two): wait for those look-ups too, answered from the cache.
    eventually("every long-poll's first look-up", || async {
        (stats(&server).hits >= hits + devices.len() as u64).then_some(())
    })
    .await;
    let before = stats(&server);
    let started = Instant::now();
    server
        .store
        .create(
            ResourceKind::EdgeWorkload,
            NAMESPACE,
            "app",
            site_workload("app", "a", "quay.io/test/app:1"),
        )
        .await
        .expect("create workload");
    for ((device, tag), poll) in devices.iter().zip(&tags).zip(polls) {
        let (status, new_tag, body) = poll.await.expect("task");
        if device.id.starts_with("site-a") {
            assert_eq!(status, 200, "{}", device.id);
            assert_ne!(&new_tag, tag);
            assert_eq!(workload_names(&body), ["app"], "{}", device.id);
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "woken, not timed out"
            );
        } else {
            assert_eq!(status, 304, "{}", device.id);
            assert_eq!(&new_tag, tag);
        }
    }
    let after = stats(&server);
    assert_eq!(after.renders - before.renders, 4, "only site=a is rendered");
    assert_eq!(after.store_reads, before.store_reads, "no store read");
    // Every answered poll let go of its wake-up channel.
    assert_eq!(after.long_poll_channels, 0);
    server.stop().await;
}

#[tokio::test]
async fn an_unchanged_poll_is_answered_304_without_store_read_or_rendering() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let device = add_device(&server, "quiet", "a").await;
    view_holds(&server, 1).await;
    let tag = poll(&device).await;
    let before = stats(&server);
    for _ in 0..5 {
        let response = device
            .client
            .get(&device.url)
            .header("if-none-match", &tag)
            .send()
            .await
            .expect("poll");
        assert_eq!(response.status(), 304);
        assert_eq!(etag(&response), tag);
    }
    let after = stats(&server);
    assert_eq!(after.store_reads, before.store_reads);
    assert_eq!(after.renders, before.renders);
    assert_eq!(after.hits - before.hits, 5);
    // The cached answer is the same configuration a fresh rendering gives.
    let full = device.client.get(&device.url).send().await.expect("poll");
    assert_eq!(etag(&full), tag);
    let body: Value = full.json().await.expect("json");
    assert_eq!(body["directive"], "device");
    assert_eq!(body["type"], "data");
    assert_eq!(body["content"]["device_id"], "quiet");
    assert_eq!(
        format!(
            "\"{}\"",
            body["content"]["version"].as_str().unwrap_or_default()
        ),
        tag
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_changes_retarget_workloads() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let mover = add_device(&server, "mover", "b").await;
    let leaver = add_device(&server, "leaver", "a").await;
    server
        .store
        .create(
            ResourceKind::EdgeWorkload,
            NAMESPACE,
            "app",
            site_workload("app", "a", "quay.io/test/app:1"),
        )
        .await
        .expect("create workload");
    view_holds(&server, 2).await;
    let mover_tag = poll(&mover).await;
    let leaver_tag = poll(&leaver).await;

    for (device, site, expected) in [(&mover, "a", vec!["app"]), (&leaver, "b", vec![])] {
        let tag = if device.id == "mover" {
            &mover_tag
        } else {
            &leaver_tag
        };
        let waiting_poll = long_poll(device, tag, 30);
        waiting(&server, 1).await;
        let mut body = server.device(&device.id).await.expect("device").body;
        body["metadata"]["labels"]["site"] = json!(site);
        server
            .store
            .update(ResourceKind::EdgeDevice, NAMESPACE, &device.id, None, body)
            .await
            .expect("relabel");
        let (status, new_tag, body) = waiting_poll.await.expect("task");
        assert_eq!(status, 200, "{}", device.id);
        assert_ne!(&new_tag, tag);
        assert_eq!(workload_names(&body), expected, "{}", device.id);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_propagate() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let device = add_device(&server, "doomed", "a").await;
    server
        .store
        .create(
            ResourceKind::EdgeWorkload,
            NAMESPACE,
            "app",
            site_workload("app", "a", "quay.io/test/app:1"),
        )
        .await
        .expect("create workload");
    view_holds(&server, 1).await;
    let tag = poll(&device).await;

    // The workload goes: the device gets a configuration without it.
    let waiting_poll = long_poll(&device, &tag, 30);
    waiting(&server, 1).await;
    server
        .store
        .delete(ResourceKind::EdgeWorkload, NAMESPACE, "app", None)
        .await
        .expect("delete workload");
    let (status, new_tag, body) = waiting_poll.await.expect("task");
    assert_eq!(status, 200);
    assert_ne!(new_tag, tag);
    assert!(workload_names(&body).is_empty(), "{body}");

    // The device goes: its long-poll ends with 404.
    let waiting_poll = parked_poll(&server, &device, new_tag).await;
    server
        .store
        .delete(ResourceKind::EdgeDevice, NAMESPACE, "doomed", None)
        .await
        .expect("delete device");
    let (status, _, _) = waiting_poll.await.expect("task");
    assert_eq!(status, 404);
    assert_eq!(stats(&server).devices, 0);
    server.stop().await;
}
