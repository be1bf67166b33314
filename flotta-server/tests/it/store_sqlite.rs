//! The conformance suite on SQLite, plus SQLite-specific checks.

use flotta_server::store::{ResourceKind, SqliteOptions, SqliteStore, Store, StoreError};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

use crate::store_conformance::conformance_tests;
use crate::store_harness::Backend;

conformance_tests!(Backend::sqlite());

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
    assert_eq!(version, 3);
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

/// Creates of new names beside creates of taken names, all at once: the writes
/// share transactions, yet each failing one fails alone and every acknowledged one
/// is there after reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_fail_alone_and_survive_a_reopen() {
    const WRITES: usize = 300;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("flotta.db");
    let store = std::sync::Arc::new(SqliteStore::open(&path).expect("open"));
    for i in 0..WRITES / 3 {
        store
            .create(
                ResourceKind::EdgeDevice,
                "ns",
                &format!("taken-{i}"),
                json!({"spec": {"n": i}}),
            )
            .await
            .expect("create");
    }
    let taken_version = store.current_resource_version().await.expect("rv");
    let mut tasks = Vec::new();
    for i in 0..WRITES {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let name = if i % 3 == 0 {
                format!("taken-{}", i / 3)
            } else {
                format!("new-{i}")
            };
            let result = store
                .create(
                    ResourceKind::EdgeDevice,
                    "ns",
                    &name,
                    json!({"spec": {"i": i}}),
                )
                .await;
            (name, result)
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        let (name, result) = task.await.expect("task");
        if name.starts_with("taken-") {
            assert!(
                matches!(result, Err(StoreError::AlreadyExists { .. })),
                "{name}: {result:?}"
            );
        } else {
            let object = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            created.push((name, object.resource_version));
        }
    }
    assert_eq!(created.len(), WRITES - WRITES / 3);
    // A failed write takes no resource version: the successful ones are exactly the
    // versions after the set-up, each once.
    let mut versions: Vec<u64> = created.iter().map(|(_, rv)| *rv).collect();
    versions.sort_unstable();
    let expected: Vec<u64> = (taken_version + 1..=taken_version + created.len() as u64).collect();
    assert_eq!(versions, expected);
    drop(store);

    let reopened = SqliteStore::open(&path).expect("reopen");
    for (name, rv) in &created {
        let object = reopened
            .get(ResourceKind::EdgeDevice, "ns", name)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{name} was acknowledged but is missing"));
        assert_eq!(object.resource_version, *rv, "{name}");
    }
    for i in 0..WRITES / 3 {
        let object = reopened
            .get(ResourceKind::EdgeDevice, "ns", &format!("taken-{i}"))
            .await
            .expect("get")
            .expect("still there");
        assert_eq!(object.body["spec"], json!({"n": i}), "left as it was");
    }
    assert_eq!(
        reopened.current_resource_version().await.expect("rv"),
        taken_version + created.len() as u64
    );
}

/// Writes of different kinds and operations mixed in flight, with failures among
/// them, each get their own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_concurrent_writes_each_get_their_own_answer() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = std::sync::Arc::new(SqliteStore::open(dir.path().join("flotta.db")).expect("open"));
    let device = store
        .create(ResourceKind::EdgeDevice, "ns", "d", json!({}))
        .await
        .expect("create");
    let stale = device.resource_version;
    store
        .update_status(
            ResourceKind::EdgeDevice,
            "ns",
            "d",
            None,
            json!({"phase": "a"}),
        )
        .await
        .expect("status");
    let seen = [flotta_server::store::LastSeen {
        namespace: "ns".into(),
        device: "d".into(),
        seen_at: time::OffsetDateTime::from_unix_timestamp(1_000).expect("time"),
    }];
    let (a, b, c, d, e) = tokio::join!(
        store.update_status(
            ResourceKind::EdgeDevice,
            "ns",
            "d",
            Some(stale),
            json!({"phase": "stale"})
        ),
        store.put_setting("k", "v"),
        store.update(ResourceKind::EdgeDevice, "ns", "missing", None, json!({})),
        store.create(ResourceKind::EdgeWorkload, "ns", "w", json!({"spec": {}})),
        store.record_last_seen(&seen),
    );
    assert!(matches!(a, Err(StoreError::Conflict { .. })), "{a:?}");
    b.expect("setting written");
    assert!(matches!(c, Err(StoreError::NotFound { .. })), "{c:?}");
    d.expect("workload created");
    e.expect("last seen recorded");
    let stored = store
        .get(ResourceKind::EdgeDevice, "ns", "d")
        .await
        .expect("get")
        .expect("device");
    assert_eq!(stored.body["status"]["phase"], "a");
    assert_eq!(
        store.setting("k").await.expect("read").as_deref(),
        Some("v")
    );
    assert!(
        store
            .get(ResourceKind::EdgeWorkload, "ns", "w")
            .await
            .expect("get")
            .is_some()
    );
    assert!(store.last_seen("ns", "d").await.expect("read").is_some());
}

/// The store vouches for a device's resource version only while it is current.
#[tokio::test]
async fn cached_resource_version_follows_every_write() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("flotta.db");
    let store = SqliteStore::open(&path).expect("open");
    let version =
        |store: &SqliteStore| store.cached_resource_version(ResourceKind::EdgeDevice, "ns", "d");
    assert_eq!(version(&store), None);
    let created = store
        .create(ResourceKind::EdgeDevice, "ns", "d", json!({}))
        .await
        .expect("create");
    assert_eq!(version(&store), Some(created.resource_version));
    let updated = store
        .update_status(
            ResourceKind::EdgeDevice,
            "ns",
            "d",
            None,
            json!({"phase": "x"}),
        )
        .await
        .expect("status");
    assert_eq!(version(&store), Some(updated.resource_version));
    store
        .delete(ResourceKind::EdgeDevice, "ns", "d", None)
        .await
        .expect("delete");
    assert_eq!(version(&store), None, "a deleted device is not vouched for");
    // Other kinds are never vouched for.
    store
        .create(ResourceKind::EdgeWorkload, "ns", "d", json!({}))
        .await
        .expect("create");
    assert_eq!(
        store.cached_resource_version(ResourceKind::EdgeWorkload, "ns", "d"),
        None
    );
    let again = store
        .create(ResourceKind::EdgeDevice, "ns", "d", json!({}))
        .await
        .expect("create");
    drop(store);

    // A fresh store knows nothing until it reads the device.
    let reopened = SqliteStore::open(&path).expect("reopen");
    assert_eq!(version(&reopened), None);
    reopened
        .get(ResourceKind::EdgeDevice, "ns", "d")
        .await
        .expect("get")
        .expect("device");
    assert_eq!(version(&reopened), Some(again.resource_version));
}

/// A database written before tokens had names, groups and expiry (schema version
/// 1) is upgraded in place: its tokens keep working, named after their ids.
#[tokio::test]
async fn tokens_of_a_version_1_database_survive_the_upgrade() {
    use flotta_server::store::{TokenHash, TokenRole};
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("flotta.db");
    let store = SqliteStore::open(&path).expect("open");
    let issued = store
        .create_token(TokenRole::Operator, "old")
        .await
        .expect("token");
    drop(store);
    // Back to version 1: what the version 2 and 3 migrations add, removed.
    let conn = rusqlite::Connection::open(&path).expect("inspect");
    conn.execute_batch(
        "ALTER TABLE api_tokens DROP COLUMN name;
         ALTER TABLE api_tokens DROP COLUMN groups;
         ALTER TABLE api_tokens DROP COLUMN expires_at_us;
         DROP TABLE leases;
         DELETE FROM schema_version WHERE version > 1;",
    )
    .expect("downgrade");
    drop(conn);
    let store = SqliteStore::open(&path).expect("reopen and migrate");
    let found = store
        .find_token(&TokenHash::of(&issued.secret))
        .await
        .expect("find")
        .expect("the old token is still there");
    assert_eq!(found.role, Some(TokenRole::Operator));
    assert_eq!(found.name, format!("token-{}", &issued.token.id[..8]));
    assert!(found.groups.is_empty());
    assert_eq!(found.expires_at, None);
}
