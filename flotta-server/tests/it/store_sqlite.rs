//! The conformance suite on SQLite, plus SQLite-specific checks.

use flotta_server::store::{ResourceKind, SqliteOptions, SqliteStore, Store, StoreError};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

use crate::store_conformance::conformance_tests;
use crate::store_harness::Backend;

conformance_tests!(Some(Backend::sqlite()));

#[tokio::test]
async fn journal_is_wal_with_full_sync() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("flotta.db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .create(ResourceKind::EdgeDevice, "ns", "d", json!({}))
        .await
        .expect("create");
    assert!(dir.path().join("flotta.db-wal").exists(), "WAL file in use");
    let conn = rusqlite::Connection::open(&path).expect("inspect");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
        .expect("schema version");
    assert_eq!(version, 1);
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("flotta.db");
    drop(SqliteStore::open(&path).expect("open"));
    rusqlite::Connection::open(&path)
        .expect("inspect")
        .execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .expect("bump version");
    let err = SqliteStore::open(&path).expect_err("newer schema");
    assert!(err.to_string().contains("schema_version"), "{err}");
}

#[tokio::test]
async fn change_log_is_compacted_to_the_configured_retention() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = SqliteOptions {
        event_retention: 10,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.path().join("flotta.db"), options).expect("open");
    for i in 0..35 {
        store
            .create(ResourceKind::EdgeDevice, "ns", &format!("d{i}"), json!({}))
            .await
            .expect("create");
    }
    let current = store.current_resource_version().await.expect("rv");
    assert!(matches!(
        store.watch(ResourceKind::EdgeDevice, None, 1).await,
        Err(StoreError::Gone { .. })
    ));
    // The last `event_retention` versions are always still there.
    let mut recent = store
        .watch(ResourceKind::EdgeDevice, None, current - 10)
        .await
        .expect("recent history is retained");
    for rv in current - 9..=current {
        let event = tokio::time::timeout(Duration::from_secs(5), recent.next())
            .await
            .expect("replayed at once")
            .expect("stream open")
            .expect("event");
        assert_eq!(event.object.resource_version, rv);
    }
}
