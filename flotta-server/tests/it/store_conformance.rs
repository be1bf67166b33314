//! The storage conformance suite, written once against `dyn Store` and run for
//! every backend by [`conformance_tests!`].

use std::collections::BTreeSet;
use std::time::Duration;

use flotta_server::store::{
    Deletion, LastSeen, ListOptions, ResourceKind, RevokedCertificate, StoreError, TokenHash,
    TokenRole, TokenSpec, WatchEvent, WatchEventType, WatchStream,
};
use futures::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::store_harness::Backend;

const DEVICE: ResourceKind = ResourceKind::EdgeDevice;
const WORKLOAD: ResourceKind = ResourceKind::EdgeWorkload;

fn workload(image: &str) -> Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"labels": {"app": "web"}},
        "spec": {"type": "pod", "pod": {"spec": {"containers": [{"name": "c", "image": image}]}}}
    })
}

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a watch event within 5 s")
        .expect("the watch stream is open")
        .expect("a watch event, not an error")
}

async fn no_event_for(stream: &mut WatchStream, wait: Duration) {
    if let Ok(item) = tokio::time::timeout(wait, stream.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).expect("valid time")
}

pub async fn crud_round_trip(backend: Backend) {
    let store = backend.open().await;
    let created = store
        .create(WORKLOAD, "default", "web", workload("nginx:1"))
        .await
        .expect("create");
    assert_eq!(created.namespace, "default");
    assert_eq!(created.name, "web");
    assert_eq!(created.generation, 1);
    assert!(created.resource_version > 0);
    assert!(!created.uid.is_empty());
    assert_eq!(created.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(
        created.body["metadata"]["resourceVersion"],
        json!(created.resource_version.to_string())
    );
    assert_eq!(created.body["metadata"]["uid"], json!(created.uid));

    let got = store
        .get(WORKLOAD, "default", "web")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got, created);
    assert!(
        store
            .get(WORKLOAD, "other", "web")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get(DEVICE, "default", "web")
            .await
            .expect("get")
            .is_none()
    );

    let updated = store
        .update(
            WORKLOAD,
            "default",
            "web",
            Some(created.resource_version),
            workload("nginx:2"),
        )
        .await
        .expect("update");
    assert!(updated.resource_version > created.resource_version);
    assert_eq!(updated.generation, 2);
    assert_eq!(updated.uid, created.uid);
    assert_eq!(updated.creation_timestamp, created.creation_timestamp);
    assert_eq!(
        store.get(WORKLOAD, "default", "web").await.expect("get"),
        Some(updated.clone())
    );

    let deleted = store
        .delete(WORKLOAD, "default", "web", None)
        .await
        .expect("delete");
    let Deletion::Removed(last) = deleted else {
        panic!("expected removal, got {deleted:?}");
    };
    assert!(last.resource_version > updated.resource_version);
    assert_eq!(
        last.body["spec"]["pod"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert!(
        store
            .get(WORKLOAD, "default", "web")
            .await
            .expect("get")
            .is_none()
    );
    assert!(matches!(
        store.delete(WORKLOAD, "default", "web", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .update(WORKLOAD, "default", "web", None, workload("x"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .update_status(WORKLOAD, "default", "web", None, json!({}))
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn create_existing_is_already_exists(backend: Backend) {
    let store = backend.open().await;
    store
        .create(DEVICE, "ns", "dev-1", json!({"spec": {}}))
        .await
        .expect("create");
    let before = store.current_resource_version().await.expect("rv");
    let again = store
        .create(DEVICE, "ns", "dev-1", json!({"spec": {}}))
        .await;
    assert!(
        matches!(&again, Err(StoreError::AlreadyExists { kind, namespace, name })
            if *kind == DEVICE && namespace == "ns" && name == "dev-1"),
        "{again:?}"
    );
    assert_eq!(store.current_resource_version().await.expect("rv"), before);
    // The same name in another kind or namespace is a different object.
    store
        .create(WORKLOAD, "ns", "dev-1", json!({"spec": {}}))
        .await
        .expect("other kind");
    store
        .create(DEVICE, "ns2", "dev-1", json!({"spec": {}}))
        .await
        .expect("other namespace");
    let mismatched = store
        .create(
            DEVICE,
            "ns",
            "dev-2",
            json!({"metadata": {"name": "dev-3"}}),
        )
        .await;
    assert!(matches!(mismatched, Err(StoreError::InvalidObject { .. })));
}

pub async fn stale_resource_version_conflicts(backend: Backend) {
    let store = backend.open().await;
    let v1 = store
        .create(WORKLOAD, "ns", "w", workload("a"))
        .await
        .expect("create");
    let v2 = store
        .update(
            WORKLOAD,
            "ns",
            "w",
            Some(v1.resource_version),
            workload("b"),
        )
        .await
        .expect("update");
    let stale = store
        .update(
            WORKLOAD,
            "ns",
            "w",
            Some(v1.resource_version),
            workload("c"),
        )
        .await;
    match stale {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!(expected, v1.resource_version);
            assert_eq!(actual, v2.resource_version);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        store
            .update_status(WORKLOAD, "ns", "w", Some(v1.resource_version), json!({}))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .delete(WORKLOAD, "ns", "w", Some(v1.resource_version))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let kept = store
        .get(WORKLOAD, "ns", "w")
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(kept, v2);
    // Without a precondition the write goes through.
    store
        .update(WORKLOAD, "ns", "w", None, workload("d"))
        .await
        .expect("unconditional update");
}

pub async fn resource_version_is_global_and_increasing(backend: Backend) {
    let store = backend.open().await;
    let start = store.current_resource_version().await.expect("rv");
    let mut last = start;
    for (i, kind) in ResourceKind::ALL.into_iter().enumerate() {
        let o = store
            .create(kind, "ns", &format!("o{i}"), json!({"spec": {}}))
            .await
            .expect("create");
        assert!(
            o.resource_version > last,
            "{} after {last}",
            o.resource_version
        );
        last = o.resource_version;
    }
    let s = store
        .update_status(DEVICE, "ns", "o0", None, json!({"phase": "up"}))
        .await
        .expect("status");
    assert!(s.resource_version > last);
    assert_eq!(
        store.current_resource_version().await.expect("rv"),
        s.resource_version
    );
}

pub async fn status_update_keeps_generation(backend: Backend) {
    let store = backend.open().await;
    let created = store
        .create(WORKLOAD, "ns", "w", workload("a"))
        .await
        .expect("create");
    let with_status = store
        .update_status(
            WORKLOAD,
            "ns",
            "w",
            Some(created.resource_version),
            json!({"phase": "Running"}),
        )
        .await
        .expect("status");
    assert_eq!(with_status.generation, 1);
    assert!(with_status.resource_version > created.resource_version);
    assert_eq!(with_status.body["status"], json!({"phase": "Running"}));
    assert_eq!(with_status.body["spec"], created.body["spec"]);

    // A spec update bumps the generation and cannot change the status.
    let mut body = workload("b");
    body["status"] = json!({"phase": "Forged"});
    let respecced = store
        .update(WORKLOAD, "ns", "w", None, body)
        .await
        .expect("update");
    assert_eq!(respecced.generation, 2);
    assert_eq!(respecced.body["status"], json!({"phase": "Running"}));

    // A metadata-only update keeps the generation.
    let mut relabelled = workload("b");
    relabelled["metadata"]["labels"] = json!({"tier": "edge"});
    let relabelled = store
        .update(WORKLOAD, "ns", "w", None, relabelled)
        .await
        .expect("update labels");
    assert_eq!(relabelled.generation, 2);
    assert_eq!(
        relabelled.labels.get("tier").map(String::as_str),
        Some("edge")
    );
    assert!(!relabelled.labels.contains_key("app"));
}

pub async fn finalizers_defer_deletion(backend: Backend) {
    let store = backend.open().await;
    let mut body = workload("a");
    body["metadata"]["finalizers"] = json!(["flotta/cleanup"]);
    store
        .create(WORKLOAD, "ns", "w", body.clone())
        .await
        .expect("create");
    let pending = store
        .delete(WORKLOAD, "ns", "w", None)
        .await
        .expect("delete");
    let Deletion::Pending(marked) = pending else {
        panic!("expected a pending deletion, got {pending:?}");
    };
    assert!(marked.deletion_timestamp.is_some());
    let still = store
        .get(WORKLOAD, "ns", "w")
        .await
        .expect("get")
        .expect("kept while finalizers remain");
    assert_eq!(still.deletion_timestamp, marked.deletion_timestamp);
    body["metadata"]["finalizers"] = json!([]);
    store
        .update(WORKLOAD, "ns", "w", Some(marked.resource_version), body)
        .await
        .expect("clear finalizers");
    assert!(store.get(WORKLOAD, "ns", "w").await.expect("get").is_none());
}

pub async fn pagination_with_concurrent_inserts(backend: Backend) {
    let store = backend.open().await;
    for i in (0..20).step_by(2) {
        store
            .create(DEVICE, "a", &format!("n{i:02}"), json!({"spec": {}}))
            .await
            .expect("create");
    }
    for name in ["m", "z"] {
        store
            .create(DEVICE, "b", name, json!({"spec": {}}))
            .await
            .expect("create");
        store
            .create(WORKLOAD, "a", name, json!({"spec": {}}))
            .await
            .expect("create other kind");
    }
    let page_size = 3;
    let mut seen = Vec::new();
    let mut options = ListOptions {
        limit: Some(page_size),
        continue_token: None,
    };
    let mut first_rv = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(DEVICE, Some("a"), &options)
            .await
            .expect("list page");
        pages += 1;
        assert!(page.items.len() <= page_size);
        let rv = *first_rv.get_or_insert(page.resource_version);
        assert_eq!(
            page.resource_version, rv,
            "every page reports the list's version"
        );
        seen.extend(page.items.iter().map(|o| o.name.clone()));
        if pages == 1 {
            // One insert before the cursor, two after it, while paging.
            for name in ["n01", "n05", "n99"] {
                store
                    .create(DEVICE, "a", name, json!({"spec": {}}))
                    .await
                    .expect("concurrent insert");
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
        assert!(pages < 20, "pagination does not end");
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no object twice: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "ordered by name");
    for i in (0..20).step_by(2) {
        assert!(unique.contains(&format!("n{i:02}")), "n{i:02} missing");
    }
    assert!(unique.contains("n05") && unique.contains("n99"));
    assert!(!unique.contains("n01"), "inserted behind the cursor");

    let all = store
        .list(DEVICE, None, &ListOptions::default())
        .await
        .expect("list all");
    let keys: Vec<_> = all
        .items
        .iter()
        .map(|o| (o.namespace.as_str(), o.name.as_str()))
        .collect();
    assert_eq!(keys.len(), 15);
    assert_eq!(keys.first(), Some(&("a", "n00")));
    assert_eq!(&keys[13..], &[("b", "m"), ("b", "z")]);
    assert!(all.continue_token.is_none());

    let bad = store
        .list(
            DEVICE,
            None,
            &ListOptions {
                limit: Some(1),
                continue_token: Some("not a token".into()),
            },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidContinueToken { .. })));
}

pub async fn watch_replays_then_streams_live(backend: Backend) {
    let store = backend.open().await;
    let a1 = store
        .create(WORKLOAD, "ns", "a", workload("1"))
        .await
        .expect("create a");
    let a2 = store
        .update(WORKLOAD, "ns", "a", None, workload("2"))
        .await
        .expect("update a");
    store
        .create(WORKLOAD, "other", "x", workload("1"))
        .await
        .expect("create in other namespace");
    store
        .create(DEVICE, "ns", "d", json!({"spec": {}}))
        .await
        .expect("create other kind");

    let mut stream = store
        .watch(WORKLOAD, Some("ns"), a1.resource_version)
        .await
        .expect("watch");
    let replayed = next_event(&mut stream).await;
    assert_eq!(replayed.event_type, WatchEventType::Modified);
    assert_eq!(replayed.object, a2);

    let b = store
        .create(WORKLOAD, "ns", "b", workload("1"))
        .await
        .expect("create b");
    let live = next_event(&mut stream).await;
    assert_eq!(live.event_type, WatchEventType::Added);
    assert_eq!(live.object, b);

    store
        .create(WORKLOAD, "other", "y", workload("1"))
        .await
        .expect("create y");
    let status = store
        .update_status(WORKLOAD, "ns", "b", None, json!({"phase": "Ready"}))
        .await
        .expect("status");
    let live = next_event(&mut stream).await;
    assert_eq!(live.event_type, WatchEventType::Modified);
    assert_eq!(live.object, status);

    let Deletion::Removed(gone) = store
        .delete(WORKLOAD, "ns", "a", None)
        .await
        .expect("delete")
    else {
        panic!("expected removal");
    };
    let live = next_event(&mut stream).await;
    assert_eq!(live.event_type, WatchEventType::Deleted);
    assert_eq!(live.object, gone);
    no_event_for(&mut stream, Duration::from_millis(300)).await;

    // Watching all namespaces from the beginning replays the full history in order.
    let mut all = store.watch(WORKLOAD, None, 0).await.expect("watch all");
    let mut versions = Vec::new();
    for _ in 0..7 {
        versions.push(next_event(&mut all).await.object.resource_version);
    }
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, versions);
    no_event_for(&mut all, Duration::from_millis(300)).await;
}

pub async fn watch_from_compacted_version_is_gone(backend: Backend) {
    let store = backend.open().await;
    let mut versions = Vec::new();
    for name in ["a", "b", "c"] {
        versions.push(
            store
                .create(DEVICE, "ns", name, json!({"spec": {}}))
                .await
                .expect("create")
                .resource_version,
        );
    }
    store.compact(versions[1]).await.expect("compact");
    match store.watch(DEVICE, None, versions[0]).await {
        Err(StoreError::Gone {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, versions[0]);
            assert_eq!(compacted, versions[1]);
        }
        Err(other) => panic!("expected Gone, got {other:?}"),
        Ok(_) => panic!("expected Gone, got a stream"),
    }
    let mut stream = store
        .watch(DEVICE, None, versions[1])
        .await
        .expect("watch from the compaction point");
    let event = next_event(&mut stream).await;
    assert_eq!(event.object.name, "c");
    assert_eq!(event.object.resource_version, versions[2]);
}

pub async fn slow_watcher_catches_up_from_the_log(backend: Backend) {
    let store = backend.open().await;
    let from = store.current_resource_version().await.expect("rv");
    let mut stream = store.watch(DEVICE, None, from).await.expect("watch");
    // More changes than the in-process feed holds, while the watcher reads nothing.
    let count = 1_100;
    for i in 0..count {
        store
            .create(DEVICE, "ns", &format!("d{i:04}"), json!({"spec": {}}))
            .await
            .expect("create");
    }
    for i in 0..count {
        let event = next_event(&mut stream).await;
        assert_eq!(event.event_type, WatchEventType::Added);
        assert_eq!(event.object.name, format!("d{i:04}"));
    }
    no_event_for(&mut stream, Duration::from_millis(200)).await;
}

pub async fn last_seen_batches(backend: Backend) {
    let store = backend.open().await;
    let device = store
        .create(DEVICE, "ns", "dev-1", json!({"spec": {}}))
        .await
        .expect("create");
    let rv_before = store.current_resource_version().await.expect("rv");
    let seen = |ns: &str, device: &str, secs| LastSeen {
        namespace: ns.into(),
        device: device.into(),
        seen_at: t(secs),
    };
    store
        .record_last_seen(&[
            seen("ns", "dev-1", 100),
            seen("ns", "dev-2", 100),
            seen("ns", "dev-1", 150),
            seen("other", "dev-9", 120),
        ])
        .await
        .expect("batch");
    assert_eq!(
        store.last_seen("ns", "dev-1").await.expect("read"),
        Some(t(150))
    );
    // An older time arriving late never moves last-seen backwards.
    store
        .record_last_seen(&[seen("ns", "dev-1", 110), seen("ns", "dev-2", 200)])
        .await
        .expect("batch");
    assert_eq!(
        store.last_seen("ns", "dev-1").await.expect("read"),
        Some(t(150))
    );
    assert_eq!(
        store.last_seen_all(Some("ns")).await.expect("read"),
        vec![seen("ns", "dev-1", 150), seen("ns", "dev-2", 200)]
    );
    assert_eq!(store.last_seen_all(None).await.expect("read").len(), 3);
    assert_eq!(store.last_seen("ns", "nobody").await.expect("read"), None);
    store.record_last_seen(&[]).await.expect("empty batch");

    // Heartbeats never touch the device row or the resource version.
    assert_eq!(
        store.current_resource_version().await.expect("rv"),
        rv_before
    );
    assert_eq!(
        store.get(DEVICE, "ns", "dev-1").await.expect("get"),
        Some(device)
    );
    // Deleting the device forgets its last-seen time.
    store
        .delete(DEVICE, "ns", "dev-1", None)
        .await
        .expect("delete");
    assert_eq!(store.last_seen("ns", "dev-1").await.expect("read"), None);
    assert_eq!(
        store.last_seen("ns", "dev-2").await.expect("read"),
        Some(t(200))
    );
}

/// A last-seen batch that tells each device's resource version (PostgreSQL), so a
/// heartbeat can check its cached copy of the device in the same statement; a store
/// that cannot tell (SQLite, whose replica vouches for versions itself) records and
/// says nothing.
pub async fn last_seen_with_versions(backend: Backend) {
    let store = backend.open().await;
    let device = store
        .create(DEVICE, "ns", "dev-1", json!({"spec": {}}))
        .await
        .expect("create");
    let batch = [
        LastSeen {
            namespace: "ns".into(),
            device: "dev-1".into(),
            seen_at: t(100),
        },
        LastSeen {
            namespace: "ns".into(),
            device: "ghost".into(),
            seen_at: t(100),
        },
        LastSeen {
            namespace: "ns".into(),
            device: "dev-1".into(),
            seen_at: t(90),
        },
    ];
    let versions = store
        .record_last_seen_versions(&batch)
        .await
        .expect("batch");
    assert_eq!(
        store.last_seen("ns", "dev-1").await.expect("read"),
        Some(t(100))
    );
    if store.last_seen_tells_versions() {
        assert_eq!(
            versions,
            Some(vec![
                Some(device.resource_version),
                None,
                Some(device.resource_version)
            ])
        );
        // A device that does not exist is not stamped.
        assert_eq!(store.last_seen("ns", "ghost").await.expect("read"), None);
        // A change is seen by the next batch.
        let changed = store
            .update_status(DEVICE, "ns", "dev-1", None, json!({"phase": "up"}))
            .await
            .expect("status");
        assert_eq!(
            store
                .record_last_seen_versions(&batch[..1])
                .await
                .expect("batch"),
            Some(vec![Some(changed.resource_version)])
        );
    } else {
        assert_eq!(versions, None);
    }
}

pub async fn tokens(backend: Backend) {
    let store = backend.open().await;
    let admin = store
        .create_token(TokenRole::Admin, "bootstrap")
        .await
        .expect("create");
    let viewer = store
        .create_token(TokenRole::Viewer, "dashboard")
        .await
        .expect("create");
    assert_ne!(admin.secret, viewer.secret);
    assert!(admin.secret.len() >= 40);
    let found = store
        .find_token(&TokenHash::of(&admin.secret))
        .await
        .expect("find")
        .expect("known token");
    assert_eq!(found.id, admin.token.id);
    assert_eq!(found.role, Some(TokenRole::Admin));
    assert_eq!(found.description, "bootstrap");
    assert_eq!(found.name, format!("token-{}", &admin.token.id[..8]));
    // A named token with groups, no role and an expiry reads back whole.
    let expires_at = t(2_000_000_000);
    let named = store
        .issue_token(&TokenSpec {
            name: "alice".into(),
            role: None,
            groups: vec!["team-a".into(), "auditors".into()],
            description: "Alice".into(),
            expires_at: Some(expires_at),
        })
        .await
        .expect("create named");
    let read = store
        .find_token(&TokenHash::of(&named.secret))
        .await
        .expect("find")
        .expect("known token");
    assert_eq!(read, named.token);
    assert_eq!(read.expires_at, Some(expires_at));
    assert_eq!(read.groups, ["team-a", "auditors"]);
    assert!(store.delete_token(&named.token.id).await.expect("delete"));
    assert_eq!(
        store
            .find_token(&TokenHash::of("flt_wrong"))
            .await
            .expect("find"),
        None
    );
    let listed = store.list_tokens().await.expect("list");
    let ids: BTreeSet<_> = listed.iter().map(|t| t.id.clone()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([admin.token.id.clone(), viewer.token.id.clone()])
    );
    assert!(store.delete_token(&admin.token.id).await.expect("delete"));
    assert!(!store.delete_token(&admin.token.id).await.expect("delete"));
    assert_eq!(
        store
            .find_token(&TokenHash::of(&admin.secret))
            .await
            .expect("find"),
        None
    );
}

pub async fn revocations_and_settings(backend: Backend) {
    let store = backend.open().await;
    let revoked = |serial: &str| RevokedCertificate {
        serial: serial.into(),
        namespace: "ns".into(),
        device: format!("dev-{serial}"),
        revoked_at: t(1_000),
    };
    store
        .revoke_certificate(&revoked("0b"))
        .await
        .expect("revoke");
    store
        .revoke_certificate(&revoked("0a"))
        .await
        .expect("revoke");
    store
        .revoke_certificate(&revoked("0b"))
        .await
        .expect("revoking twice is harmless");
    assert_eq!(
        store.revoked_certificates().await.expect("list"),
        vec![revoked("0a"), revoked("0b")]
    );

    assert_eq!(store.setting("ca.cert").await.expect("get"), None);
    store.put_setting("ca.cert", "PEM1").await.expect("put");
    store.put_setting("ca.cert", "PEM2").await.expect("put");
    assert_eq!(
        store.setting("ca.cert").await.expect("get").as_deref(),
        Some("PEM2")
    );
}

pub async fn leases_have_one_holder_until_given_up_or_run_out(backend: Backend) {
    let store = backend.open().await;
    let long = Duration::from_secs(60);
    assert!(
        store
            .acquire_lease("leader", "a", long)
            .await
            .expect("take")
    );
    assert!(
        !store.acquire_lease("leader", "b", long).await.expect("try"),
        "a live lease has one holder"
    );
    assert!(
        store
            .acquire_lease("leader", "a", long)
            .await
            .expect("renew")
    );
    assert!(
        store.acquire_lease("other", "b", long).await.expect("take"),
        "leases are independent"
    );
    store.release_lease("leader", "b").await.expect("release");
    assert!(
        !store.acquire_lease("leader", "b", long).await.expect("try"),
        "only the holder gives a lease up"
    );
    store.release_lease("leader", "a").await.expect("release");
    assert!(
        store
            .acquire_lease("leader", "b", long)
            .await
            .expect("take over")
    );
    // A lease renewed for no time has run out at once: the next holder takes it.
    assert!(
        store
            .acquire_lease("leader", "b", Duration::ZERO)
            .await
            .expect("renew")
    );
    assert!(
        store
            .acquire_lease("leader", "a", long)
            .await
            .expect("take over")
    );
    assert!(!store.acquire_lease("leader", "b", long).await.expect("try"));
}

pub async fn data_survives_reopening(backend: Backend) {
    let (created, token, rv) = {
        let store = backend.open().await;
        let created = store
            .create(WORKLOAD, "ns", "w", workload("a"))
            .await
            .expect("create");
        store
            .record_last_seen(&[LastSeen {
                namespace: "ns".into(),
                device: "d".into(),
                seen_at: t(5),
            }])
            .await
            .expect("last seen");
        let token = store
            .create_token(TokenRole::Operator, "ci")
            .await
            .expect("token");
        store.put_setting("k", "v").await.expect("setting");
        let rv = store.current_resource_version().await.expect("rv");
        (created, token, rv)
    };
    let store = backend.open().await;
    assert_eq!(
        store.get(WORKLOAD, "ns", "w").await.expect("get"),
        Some(created.clone())
    );
    assert_eq!(store.last_seen("ns", "d").await.expect("read"), Some(t(5)));
    assert_eq!(
        store
            .find_token(&TokenHash::of(&token.secret))
            .await
            .expect("find"),
        Some(token.token)
    );
    assert_eq!(store.setting("k").await.expect("get").as_deref(), Some("v"));
    assert_eq!(store.current_resource_version().await.expect("rv"), rv);
    let next = store
        .create(WORKLOAD, "ns", "w2", workload("b"))
        .await
        .expect("create after reopening");
    assert!(next.resource_version > rv, "the counter continues");
    let mut history = store.watch(WORKLOAD, None, 0).await.expect("watch");
    assert_eq!(next_event(&mut history).await.object, created);
}

/// Instantiates every conformance case as a `#[tokio::test]` for one backend:
/// `conformance_tests!(OPEN)`, or `conformance_tests!(attrs [#[...]] OPEN)` to give
/// each test attributes (`#[ignore = ...]` for a backend that needs a service).
/// `OPEN` is an async expression giving the `Backend`.
macro_rules! conformance_tests {
    (@case [$($attr:tt)*] $open:expr; $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $case() {
            let backend = $open;
            crate::store_conformance::$case(backend).await;
        }
    };
    (attrs $attrs:tt $open:expr) => {
        conformance_tests!(@case $attrs $open; crud_round_trip);
        conformance_tests!(@case $attrs $open; create_existing_is_already_exists);
        conformance_tests!(@case $attrs $open; stale_resource_version_conflicts);
        conformance_tests!(@case $attrs $open; resource_version_is_global_and_increasing);
        conformance_tests!(@case $attrs $open; status_update_keeps_generation);
        conformance_tests!(@case $attrs $open; finalizers_defer_deletion);
        conformance_tests!(@case $attrs $open; pagination_with_concurrent_inserts);
        conformance_tests!(@case $attrs $open; watch_replays_then_streams_live);
        conformance_tests!(@case $attrs $open; watch_from_compacted_version_is_gone);
        conformance_tests!(@case $attrs $open; slow_watcher_catches_up_from_the_log);
        conformance_tests!(@case $attrs $open; last_seen_batches);
        conformance_tests!(@case $attrs $open; last_seen_with_versions);
        conformance_tests!(@case $attrs $open; tokens);
        conformance_tests!(@case $attrs $open; revocations_and_settings);
        conformance_tests!(@case $attrs $open; leases_have_one_holder_until_given_up_or_run_out);
        conformance_tests!(@case $attrs $open; data_survives_reopening);
    };
    ($open:expr) => {
        conformance_tests!(attrs [] $open);
    };
}
pub(crate) use conformance_tests;
