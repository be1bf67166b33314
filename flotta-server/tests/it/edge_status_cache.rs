//! Heartbeats answered from the cached device status must still see every change
//! made by anyone else: management API status writes, deletions, registrations.

use flotta_server::edge::EdgeOptions;
use flotta_server::store::ResourceKind;
use flotta_testing::Database;
use serde_json::json;

use crate::edge_support::{
    ClientIdentity, EdgeServer, NAMESPACE, envelope, heartbeat_message, registration_message,
};

fn out_path(id: &str) -> String {
    format!("/data/{id}/out")
}

/// A device created the way the management API does (no certificate serials, so
/// deleting it revokes nothing) and an identity for it.
async fn api_created_device(server: &EdgeServer, id: &str) -> ClientIdentity {
    let known = server.state.config_cache_stats().devices;
    server.create_device(id, json!({})).await;
    // Heartbeats are judged against what the configuration view serves: wait until
    // it knows the device (on PostgreSQL it learns through the change feed), or the
    // status sweep, judging against the view later, rewrites the status between
    // two heartbeats and no heartbeat is "unchanged".
    flotta_testing::eventually("the configuration view knows the device", || async {
        (server.state.config_cache_stats().devices > known).then_some(())
    })
    .await;
    server.device_identity(id, NAMESPACE)
}

/// Sends the same heartbeat twice, so that the second one is answered from the
/// cache, and checks that it left the device row alone.
async fn beat_twice(server: &EdgeServer, device: &ClientIdentity, id: &str) -> u64 {
    let response = server
        .post(Some(device), &out_path(id), &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 200);
    let first = server.device(id).await.expect("device").resource_version;
    let response = server
        .post(Some(device), &out_path(id), &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 200);
    let second = server.device(id).await.expect("device").resource_version;
    assert_eq!(first, second, "an unchanged heartbeat writes no status");
    second
}

#[tokio::test]
async fn a_status_written_by_the_api_is_the_base_of_the_next_heartbeat() {
    status_written_behind_the_cache(Database::Sqlite).await;
}

/// On PostgreSQL the cached status is checked in the last-seen statement instead
/// of being vouched for by the store: the same changes must be seen.
#[tokio::test]
#[ignore = "needs PostgreSQL (FLOTTA_TEST_POSTGRES_URL)"]
async fn a_status_written_by_the_api_is_the_base_of_the_next_heartbeat_on_postgresql() {
    status_written_behind_the_cache(Database::fresh_postgres().await).await;
}

async fn status_written_behind_the_cache(database: Database) {
    let server = EdgeServer::start_on(EdgeOptions::default(), database).await;
    let id = "cache-api-status";
    let device = api_created_device(&server, id).await;
    beat_twice(&server, &device, id).await;

    // The management API replaces the status behind the heartbeat handler's back.
    server
        .store
        .update_status(
            ResourceKind::EdgeDevice,
            NAMESPACE,
            id,
            None,
            json!({"phase": "maintenance", "hardware": {"hostname": "set-by-api",
                "disks": [], "gpus": [], "interfaces": []}}),
        )
        .await
        .expect("status update");

    // The same heartbeat as before is no longer "unchanged": it is applied on top
    // of the API's status, keeping what it does not report.
    let response = server
        .post(Some(&device), &out_path(id), &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 200);
    let stored = server.device(id).await.expect("device");
    assert_eq!(stored.body["status"]["phase"], "up");
    assert_eq!(stored.body["status"]["hardware"]["hostname"], "set-by-api");
    assert_eq!(stored.body["status"]["workloads"][0]["name"], "w1");

    // A changed heartbeat after that still builds on the API's hardware.
    let response = server
        .post(Some(&device), &out_path(id), &heartbeat_message("degraded"))
        .await;
    assert_eq!(response.status(), 200);
    let stored = server.device(id).await.expect("device");
    assert_eq!(stored.body["status"]["phase"], "degraded");
    assert_eq!(stored.body["status"]["hardware"]["hostname"], "set-by-api");
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_device_gets_404_on_its_next_heartbeat() {
    deleted_behind_the_cache(Database::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (FLOTTA_TEST_POSTGRES_URL)"]
async fn a_deleted_device_gets_404_on_its_next_heartbeat_on_postgresql() {
    deleted_behind_the_cache(Database::fresh_postgres().await).await;
}

async fn deleted_behind_the_cache(database: Database) {
    let server = EdgeServer::start_on(EdgeOptions::default(), database).await;
    let id = "cache-deleted";
    let device = api_created_device(&server, id).await;
    beat_twice(&server, &device, id).await;
    server
        .store
        .delete(ResourceKind::EdgeDevice, NAMESPACE, id, None)
        .await
        .expect("delete");

    let response = server
        .post(Some(&device), &out_path(id), &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 404);
    assert!(server.device(id).await.is_none(), "not recreated");
    assert_eq!(
        server.store.last_seen(NAMESPACE, id).await.expect("read"),
        None,
        "a refused heartbeat records no time"
    );

    // Created again, the device is served from its new row, not the old cache.
    server.create_device(id, json!({})).await;
    let device = server.device_identity(id, NAMESPACE);
    let response = server
        .post(Some(&device), &out_path(id), &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 200);
    let stored = server.device(id).await.expect("device");
    assert_eq!(stored.body["status"]["phase"], "up");
    server.stop().await;
}

#[tokio::test]
async fn a_registration_after_cached_heartbeats_is_kept_by_the_next_one() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let id = "cache-registered";
    let device = server.enrol_and_register(id).await;
    let before = beat_twice(&server, &device, id).await;
    let stored = server.device(id).await.expect("device");
    assert_eq!(stored.body["status"]["hardware"]["hostname"], "edge-host");

    // The device registers again (same certificate) reporting other hardware.
    let mut message = registration_message(None);
    message["content"]["hardware"] = json!({"hostname": "replaced-board"});
    let response = server.post(Some(&device), &out_path(id), &message).await;
    assert_eq!(response.status(), 200);
    let registered = server.device(id).await.expect("device");
    assert!(registered.resource_version > before);
    assert_eq!(
        registered.body["status"]["hardware"]["hostname"],
        "replaced-board"
    );

    // A changed heartbeat must build on the registration's hardware, not on the
    // status cached before it.
    let response = server
        .post(Some(&device), &out_path(id), &heartbeat_message("degraded"))
        .await;
    assert_eq!(response.status(), 200);
    let stored = server.device(id).await.expect("device");
    assert_eq!(stored.body["status"]["phase"], "degraded");
    assert_eq!(
        stored.body["status"]["hardware"]["hostname"],
        "replaced-board"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_heartbeat_after_cached_ones_changes_nothing() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let id = "cache-bad-payload";
    let device = api_created_device(&server, id).await;
    let version = beat_twice(&server, &device, id).await;
    let bad = envelope("heartbeat", json!({"hardware": {"hostname": 5}}));
    let response = server.post(Some(&device), &out_path(id), &bad).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        server.device(id).await.expect("device").resource_version,
        version
    );
    server.stop().await;
}

#[tokio::test]
async fn the_version_a_device_runs_is_stored_once_per_change() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let id = "cache-version";
    let device = api_created_device(&server, id).await;
    // heartbeat_message reports version "1": stored, then left alone.
    let written = beat_twice(&server, &device, id).await;
    let stored = server.device(id).await.expect("device");
    assert_eq!(stored.body["status"]["lastSyncedResourceVersion"], "1");
    assert_eq!(stored.resource_version, written);

    // A new version is a change: stored once.
    let mut message = heartbeat_message("up");
    message["content"]["version"] = json!("2");
    let mut versions = Vec::new();
    for _ in 0..2 {
        let response = server.post(Some(&device), &out_path(id), &message).await;
        assert_eq!(response.status(), 200);
        versions.push(server.device(id).await.expect("device"));
    }
    assert_eq!(versions[0].body["status"]["lastSyncedResourceVersion"], "2");
    assert!(
        versions[0].resource_version > written,
        "the new version is written"
    );
    assert_eq!(
        versions[1].resource_version, versions[0].resource_version,
        "and only once"
    );
    server.stop().await;
}
