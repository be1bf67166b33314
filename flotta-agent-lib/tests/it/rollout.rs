//! Enforced rollouts with real agents: each device runs the workload with the
//! process runtime, and the workload's command writes the revision it carries to a
//! marker file in its working directory, so what a device runs is read from the
//! device's disk, not from the server's status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flotta_agent_lib::AgentEvent;
use flotta_client::ResourceType;
use flotta_core::model::{EdgeDevice, EdgeWorkload};
use flotta_core::reconcile::{RolloutRecord, WorkloadRevision};
use serde_json::json;

use flotta_testing::Database;

use crate::harness::{RunningAgent, TestServer, eventually, process_runtime};

/// A fleet of agents with process runtimes, each in its own directory.
struct Fleet {
    agents: Vec<RunningAgent>,
    dirs: Vec<tempfile::TempDir>,
    names: Vec<String>,
}

impl Fleet {
    async fn start(server: &TestServer, count: usize) -> Fleet {
        let mut agents = Vec::new();
        let mut dirs = Vec::new();
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("dev-{i:02}");
            let dir = tempfile::tempdir().expect("dir");
            let runtime = process_runtime(&dir.path().join("runtime")).await;
            let agent = server.agent(&name, &dir.path().join("state"), runtime);
            agents.push(RunningAgent::spawn(agent));
            dirs.push(dir);
            names.push(name);
        }
        for agent in &mut agents {
            agent
                .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
                .await;
        }
        let client = server.management_client();
        for name in &names {
            client
                .patch::<EdgeDevice>(
                    "default",
                    name,
                    &json!({"spec": {"heartbeat": {"periodSeconds": 1}}}),
                )
                .await
                .expect("device patched");
        }
        Fleet {
            agents,
            dirs,
            names,
        }
    }

    /// The marker each device's workload wrote, by device (`None`: no marker yet).
    fn markers(&self) -> BTreeMap<String, Option<String>> {
        self.names
            .iter()
            .zip(&self.dirs)
            .map(|(name, dir)| (name.clone(), marker_in(&dir.path().join("runtime"))))
            .collect()
    }

    async fn stop(self) {
        for agent in self.agents {
            agent.stop().await;
        }
    }
}

/// The content of the first file named `marker` under `dir`.
fn marker_in(dir: &Path) -> Option<String> {
    let mut pending: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == "marker") {
                return std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty());
            }
        }
    }
    None
}

/// A workload for every `site=lab` device whose command writes `marker` and then
/// runs (or, with `fail`, exits with an error).
fn marker_workload(marker: &str, fail: bool, policy: serde_json::Value) -> EdgeWorkload {
    let tail = if fail { "exit 3" } else { "exec sleep 300" };
    serde_json::from_value(json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "marker", "namespace": "default"},
        "spec": {
            "type": "pod",
            "deviceSelector": {"matchLabels": {"site": "lab"}},
            "rolloutPolicy": policy,
            "pod": {"spec": {"containers": [{
                "name": "main",
                "image": "unused",
                "command": ["/bin/sh", "-c", format!("echo {marker} > marker; {tail}")],
            }]}},
        },
    }))
    .expect("workload")
}

fn revision_of(workload: &EdgeWorkload) -> String {
    WorkloadRevision::of(workload)
        .expect("the workload renders")
        .revision
}

async fn record(server: &TestServer) -> Option<RolloutRecord> {
    server
        .management_client()
        .rollout_status("default", "marker")
        .await
        .ok()
        .flatten()
}

/// Replaces the workload's spec with `workload`'s.
async fn update(server: &TestServer, workload: &EdgeWorkload) {
    let client = server.management_client();
    flotta_testing::retry_on_conflict("replacing the workload", || async {
        let mut stored: EdgeWorkload = client.get("default", "marker").await?;
        stored.spec = workload.spec.clone();
        client.replace("default", &stored).await
    })
    .await;
}

/// Waits until every device's marker is `marker` and the rollout of `revision`
/// completed.
async fn settled(server: &TestServer, fleet: &Fleet, marker: &str, revision: &str) {
    eventually(&format!("every device running {marker}"), || async {
        let all = fleet
            .markers()
            .values()
            .all(|m| m.as_deref() == Some(marker));
        let record = record(server).await?;
        (all && record.complete && record.current_revision.as_deref() == Some(revision))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn batches_are_enforced_a_failing_revision_pauses_and_undo_returns_batch_one_sqlite() {
    batches_failure_and_undo(Database::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs FLOTTA_TEST_POSTGRES_URL (scripts/postgres.sh)"]
async fn batches_are_enforced_a_failing_revision_pauses_and_undo_returns_batch_one_postgres() {
    batches_failure_and_undo(Database::fresh_postgres().await).await;
}

/// 10 devices, two batches of five: an update reaches batch 2 only after batch 1
/// runs it; a failing revision pauses in batch 1 and batch 2 keeps the old one;
/// undo brings batch 1 back.
async fn batches_failure_and_undo(database: Database) {
    let server = TestServer::start_on(database).await;
    let fleet = Fleet::start(&server, 10).await;
    let client = server.management_client();
    let policy = json!({"batches": [{"limit": "50%"}]});
    let v1 = marker_workload("v1", false, policy.clone());
    client.create("default", &v1).await.expect("created");
    settled(&server, &fleet, "v1", &revision_of(&v1)).await;

    // An update: batch 1 (the first five by name) first, batch 2 only once batch 1
    // runs it.
    let batch_one: Vec<String> = fleet.names[..5].to_vec();
    let v2 = marker_workload("v2", false, policy.clone());
    update(&server, &v2).await;
    eventually("every device running v2", || {
        let markers = fleet.markers();
        let batch_one = &batch_one;
        async move {
            let one_done = batch_one
                .iter()
                .all(|d| markers[d].as_deref() == Some("v2"));
            let two_started = markers
                .iter()
                .filter(|(d, _)| !batch_one.contains(d))
                .any(|(_, m)| m.as_deref() == Some("v2"));
            assert!(
                !two_started || one_done,
                "a batch-2 device runs v2 before batch 1 does: {markers:?}"
            );
            markers
                .values()
                .all(|m| m.as_deref() == Some("v2"))
                .then_some(())
        }
    })
    .await;
    settled(&server, &fleet, "v2", &revision_of(&v2)).await;

    // A revision that fails: batch 1 fails, the rollout pauses, batch 2 stays on v2.
    let bad = marker_workload("v3-bad", true, policy.clone());
    update(&server, &bad).await;
    let paused = eventually("the rollout paused on the failing batch", || async {
        let record = record(&server).await?;
        (record.current_revision.as_deref() == Some(revision_of(&bad).as_str())
            && record.reason.as_deref() == Some("BatchFailed"))
        .then_some(record)
    })
    .await;
    assert!(paused.paused);
    let message = paused.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("batch 0: ")
            && message.contains("dev-0")
            && message.contains(": WorkloadFailed"),
        "the pause names the failing devices and their reasons: {message}"
    );
    assert_eq!(paused.batches[1].updated, 0, "{paused:?}");
    let markers = fleet.markers();
    for device in &fleet.names[5..] {
        assert_eq!(markers[device].as_deref(), Some("v2"), "{markers:?}");
    }
    eventually("batch 1 running the bad revision", || async {
        let markers = fleet.markers();
        batch_one
            .iter()
            .all(|d| markers[d].as_deref() == Some("v3-bad"))
            .then_some(())
    })
    .await;
    let markers = fleet.markers();
    for device in &fleet.names[5..] {
        assert_eq!(
            markers[device].as_deref(),
            Some("v2"),
            "batch 2 keeps v2: {markers:?}"
        );
    }
    let workload: EdgeWorkload = client.get("default", "marker").await.expect("get");
    let progressing = workload
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .expect("a Progressing condition");
    assert_eq!(progressing.reason, "RolloutPaused");
    assert!(
        progressing.message.contains("BatchFailed"),
        "{progressing:?}"
    );
    // The rollout's steps are events on the workload, the pause a warning saying why.
    let events: Vec<flotta_core::model::Event> = eventually("the rollout's events", || async {
        let params = flotta_client::ListParams::default()
            .involving(flotta_client::ResourceType::EdgeWorkload, "marker");
        let events: Vec<flotta_core::model::Event> =
            client.list_all(Some("default"), &params).await.ok()?;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("RolloutPaused"))
            .then_some(events)
    })
    .await;
    let paused_event = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("RolloutPaused"))
        .expect("paused event");
    assert_eq!(paused_event.type_.as_deref(), Some("Warning"));
    assert!(
        paused_event
            .message
            .as_deref()
            .is_some_and(|m| m.contains("BatchFailed") && m.contains("dev-0")),
        "{paused_event:?}"
    );
    for reason in ["RolloutStarted", "RolloutBatchReleased"] {
        assert!(
            events.iter().any(|e| e.reason.as_deref() == Some(reason)),
            "no {reason} in {events:?}"
        );
    }

    // Undo: back to v2, at once since the bad rollout never completed.
    client
        .undo_rollout("default", "marker")
        .await
        .expect("undo");
    settled(&server, &fleet, "v2", &revision_of(&v2)).await;
    fleet.stop().await;
}

/// Devices running `revision` of the marker workload, as they report it.
async fn reported(server: &TestServer, revision: &str) -> BTreeMap<String, bool> {
    let devices: Vec<EdgeDevice> = server
        .management_client()
        .list_all(Some("default"), &Default::default())
        .await
        .expect("devices listed");
    devices
        .into_iter()
        .map(|device| {
            let running = device
                .status
                .and_then(|s| s.workloads)
                .unwrap_or_default()
                .into_iter()
                .any(|w| {
                    w.name == "marker"
                        && w.revision.as_deref() == Some(revision)
                        && w.phase.as_deref() == Some("Running")
                });
            (device.metadata.name.unwrap_or_default(), running)
        })
        .collect()
}

#[tokio::test]
async fn max_unavailable_one_updates_one_device_at_a_time() {
    let server = TestServer::start().await;
    let fleet = Fleet::start(&server, 5).await;
    let client = server.management_client();
    let policy = json!({"maxUnavailable": 1});
    let v1 = marker_workload("v1", false, policy.clone());
    client.create("default", &v1).await.expect("created");
    settled(&server, &fleet, "v1", &revision_of(&v1)).await;

    let v2 = marker_workload("v2", false, policy);
    let revision = revision_of(&v2);
    // Every device report wakes a new sample.
    let mut changes = Box::pin(
        client.watch::<EdgeDevice>(Some("default"), &flotta_client::ListParams::default()),
    );
    update(&server, &v2).await;
    // Sampled at each device change until every device runs v2: at no sample may
    // two devices be caught mid-update (running v2 but not yet reporting it). A
    // device may also go from old to reported-new between two samples; core's
    // proptest checks the bound over every step.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fleet.markers().values().all(|m| m.as_deref() == Some("v2"))
        || !reported(&server, &revision).await.values().all(|r| *r)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for every device to run v2"
        );
        // Markers first, reports second: a report read after a marker is at least as
        // new as what the server decided that device's update from.
        let markers = fleet.markers();
        let reports = reported(&server, &revision).await;
        let updating: Vec<&String> = markers
            .iter()
            .filter(|(device, marker)| {
                marker.as_deref() == Some("v2") && !reports.get(*device).copied().unwrap_or(false)
            })
            .map(|(device, _)| device)
            .collect();
        assert!(
            updating.len() <= 1,
            "more than one device updating at once: {updating:?}"
        );
        // The next report, or a marker written meanwhile (files send no signal).
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(250),
            futures::StreamExt::next(&mut changes),
        )
        .await;
    }
    settled(&server, &fleet, "v2", &revision).await;
    fleet.stop().await;
}

#[tokio::test]
async fn the_next_batch_waits_for_approval() {
    let server = TestServer::start().await;
    let fleet = Fleet::start(&server, 4).await;
    let client = server.management_client();
    let policy = json!({"batches": [{"limit": 1}], "manualApproval": true});
    let v1 = marker_workload("v1", false, policy.clone());
    client.create("default", &v1).await.expect("created");
    settled(&server, &fleet, "v1", &revision_of(&v1)).await;

    let v2 = marker_workload("v2", false, policy);
    update(&server, &v2).await;
    let waiting = eventually("batch 1 done, batch 2 awaiting approval", || async {
        let record = record(&server).await?;
        (record.reason.as_deref() == Some("AwaitingApproval")).then_some(record)
    })
    .await;
    assert_eq!(waiting.released_batches, 1);
    let markers = fleet.markers();
    assert_eq!(markers["dev-00"].as_deref(), Some("v2"), "{markers:?}");
    for device in &fleet.names[1..] {
        assert_eq!(markers[device].as_deref(), Some("v1"), "{markers:?}");
    }
    client
        .approve_rollout("default", "marker")
        .await
        .expect("approved");
    settled(&server, &fleet, "v2", &revision_of(&v2)).await;
    // Nothing left to approve once complete: a named error, not a silent success.
    let error = client
        .approve_rollout("default", "marker")
        .await
        .expect_err("nothing to approve");
    assert_eq!(error.kind(), flotta_client::ErrorKind::Rollout, "{error}");

    // The revisions subresource lists what the server keeps, oldest first.
    let prefix = "/apis/management.project-flotta.io/v1alpha1/namespaces/default";
    let response = server
        .admin(
            reqwest::Method::GET,
            &format!("{prefix}/edgeworkloads/marker/revisions"),
        )
        .send()
        .await
        .expect("revisions");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let list: serde_json::Value = response.json().await.expect("json");
    assert_eq!(list["kind"], "WorkloadRevisionList", "{list}");
    let items: Vec<(String, String)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["revision"].as_str().unwrap_or_default().to_owned(),
                item["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            (revision_of(&v1), "previous".to_owned()),
            (revision_of(&v2), "current".to_owned())
        ]
    );
    let response = server
        .admin(
            reqwest::Method::GET,
            &format!("{prefix}/edgedevices/dev-00/revisions"),
        )
        .send()
        .await
        .expect("revisions of a device");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    fleet.stop().await;
}

/// Two replicas on one PostgreSQL database, the devices talking to the second. The
/// first took the leader lease at start: it releases batch 1 and is killed while
/// batch 2 waits for approval. Once its lease ran out the second takes it and
/// releases batch 2 on approval; every batch is released once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FLOTTA_TEST_POSTGRES_URL (scripts/postgres.sh)"]
async fn a_killed_leader_hands_the_rollout_over_and_no_batch_is_released_twice() {
    let first = TestServer::builder()
        .database(Database::fresh_postgres().await)
        .leader_lease(std::time::Duration::from_secs(2))
        .start()
        .await;
    eventually("the first replica leads", || async {
        first.running().leadership().is_leader().then_some(())
    })
    .await;
    let second = first.replica().await;
    assert!(
        !second.running().leadership().is_leader(),
        "one leader at a time"
    );
    let fleet = Fleet::start(&second, 3).await;
    let client = second.management_client();
    let policy = json!({"batches": [{"limit": 1}], "manualApproval": true});
    let v1 = marker_workload("v1", false, policy.clone());
    client.create("default", &v1).await.expect("created");
    settled(&second, &fleet, "v1", &revision_of(&v1)).await;

    let v2 = marker_workload("v2", false, policy);
    update(&second, &v2).await;
    let waiting = eventually("batch 1 done, batch 2 awaiting approval", || async {
        let record = record(&second).await?;
        (record.reason.as_deref() == Some("AwaitingApproval")).then_some(record)
    })
    .await;
    assert_eq!(waiting.released_batches, 1);
    assert!(
        !second.running().leadership().is_leader(),
        "the first replica still leads"
    );

    first.kill();
    client
        .approve_rollout("default", "marker")
        .await
        .expect("approved");
    settled(&second, &fleet, "v2", &revision_of(&v2)).await;
    assert!(second.running().leadership().is_leader(), "took over");
    let markers = fleet.markers();
    assert!(
        markers.values().all(|m| m.as_deref() == Some("v2")),
        "{markers:?}"
    );

    let events = client
        .events_for("default", ResourceType::EdgeWorkload, "marker")
        .await
        .expect("events");
    let released: Vec<(String, i32)> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("RolloutBatchReleased"))
        .filter(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.contains(&revision_of(&v2)))
        })
        .map(|e| (e.message.clone().unwrap_or_default(), e.count.unwrap_or(1)))
        .collect();
    assert_eq!(released.len(), 2, "one event per batch: {released:?}");
    assert!(
        released.iter().all(|(_, count)| *count == 1),
        "a batch released twice: {released:?}"
    );
    fleet.stop().await;
    second.stop().await;
}
