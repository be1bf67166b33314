//! Staged rollouts of a device set's configuration with real agents: the set's
//! template writes a marker file on each member (under the member's own allowed
//! root), so which revision a device runs is read from the device's disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flotta_agent_lib::{AgentEvent, MemoryRuntime};
use flotta_core::model::{EdgeDevice, EdgeDeviceSet, Event};
use flotta_core::reconcile::{RolloutRecord, SetRevision};
use serde_json::json;

use crate::harness::{RunningAgent, TestServer, eventually};

/// Members of the set `lab`, each allowed to write files under `base/NAME`.
struct Members {
    agents: Vec<RunningAgent>,
    names: Vec<String>,
    base: tempfile::TempDir,
    _state: tempfile::TempDir,
}

impl Members {
    async fn start(server: &TestServer, count: usize) -> Members {
        let base = tempfile::tempdir().expect("base");
        let state = tempfile::tempdir().expect("state");
        let client = server.management_client();
        let mut agents = Vec::new();
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("dev-{i:02}");
            let root = base.path().join(&name);
            std::fs::create_dir_all(&root).expect("root");
            let agent = server
                .agent_builder(&name, Arc::new(MemoryRuntime::new()))
                .state_dir(state.path().join(&name))
                .file_roots([root.display().to_string()])
                .build()
                .expect("agent builds");
            agents.push(RunningAgent::spawn(agent));
            names.push(name);
        }
        for agent in &mut agents {
            agent
                .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
                .await;
        }
        for name in &names {
            client
                .patch::<EdgeDevice>(
                    "default",
                    name,
                    &json!({
                        "metadata": {"labels": {"flotta/member-of": "lab"}},
                        "spec": {"heartbeat": {"periodSeconds": 1}},
                    }),
                )
                .await
                .expect("device patched");
        }
        Members {
            agents,
            names,
            base,
            _state: state,
        }
    }

    fn marker_path(&self, device: &str) -> PathBuf {
        self.base.path().join(device).join("marker")
    }

    /// The marker on each member's disk (`None`: not written).
    fn markers(&self) -> BTreeMap<String, Option<String>> {
        self.names
            .iter()
            .map(|name| {
                let marker = std::fs::read_to_string(self.marker_path(name)).ok();
                (name.clone(), marker)
            })
            .collect()
    }

    async fn stop(self) {
        for agent in self.agents {
            agent.stop().await;
        }
    }
}

/// The set `lab`: two batches of half the members, and a template writing
/// `marker` (plus, with `outside`, a file outside every member's allowed root,
/// which agents refuse).
fn lab_set(base: &Path, marker: &str, outside: Option<&Path>) -> EdgeDeviceSet {
    let mut files = vec![json!({
        "path": format!("{}/{{{{ .metadata.name }}}}/marker", base.display()),
        "content": marker,
    })];
    if let Some(outside) = outside {
        files.push(json!({"path": outside.display().to_string(), "content": marker}));
    }
    serde_json::from_value(json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeDeviceSet",
        "metadata": {"name": "lab", "namespace": "default"},
        "spec": {
            "rolloutPolicy": {"batches": [{"limit": "50%"}]},
            "template": {"spec": {"files": files}},
        },
    }))
    .expect("set")
}

fn revision_of(set: &EdgeDeviceSet) -> String {
    SetRevision::of(set).expect("the set encodes").revision
}

async fn record(server: &TestServer) -> Option<RolloutRecord<SetRevision>> {
    server
        .management_client()
        .rollout_status_of::<EdgeDeviceSet>("default", "lab")
        .await
        .ok()
        .flatten()
}

/// Replaces the set's spec.
async fn update(server: &TestServer, set: &EdgeDeviceSet) {
    let client = server.management_client();
    flotta_testing::retry_on_conflict("replacing the set", || async {
        let mut stored: EdgeDeviceSet = client.get("default", "lab").await?;
        stored.spec = set.spec.clone();
        client.replace("default", &stored).await
    })
    .await;
}

async fn settled(server: &TestServer, members: &Members, marker: &str, revision: &str) {
    eventually(&format!("every member running {marker}"), || async {
        let all = members
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
async fn a_device_set_change_reaches_batch_two_only_after_batch_one_and_a_refused_one_pauses() {
    let server = TestServer::start().await;
    let members = Members::start(&server, 6).await;
    let client = server.management_client();
    let base = members.base.path().to_owned();
    let v1 = lab_set(&base, "v1", None);
    client.create("default", &v1).await.expect("created");
    settled(&server, &members, "v1", &revision_of(&v1)).await;

    // A change: the first three members by name, then the other three once they
    // run it, never the other way round.
    let batch_one: Vec<String> = members.names[..3].to_vec();
    let v2 = lab_set(&base, "v2", None);
    update(&server, &v2).await;
    eventually("every member running v2", || {
        let markers = members.markers();
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
                "a batch-2 member runs v2 before batch 1 does: {markers:?}"
            );
            markers
                .values()
                .all(|m| m.as_deref() == Some("v2"))
                .then_some(())
        }
    })
    .await;
    settled(&server, &members, "v2", &revision_of(&v2)).await;

    // A change the agents refuse (a file outside their roots): batch 1 refuses it,
    // the rollout pauses naming them, batch 2 is never sent it.
    let forbidden = tempfile::tempdir().expect("outside");
    let outside = forbidden.path().join("evil.conf");
    let v3 = lab_set(&base, "v3", Some(&outside));
    update(&server, &v3).await;
    let paused = eventually("the set's rollout pauses", || async {
        record(&server)
            .await
            .filter(|r| r.reason.as_deref() == Some("BatchFailed"))
    })
    .await;
    let message = paused.message.clone().unwrap_or_default();
    assert!(
        message.contains("dev-00") && message.contains(&revision_of(&v3)),
        "{message}"
    );
    assert_eq!(paused.updated, batch_one, "only batch 1 is given v3");
    for (i, agent) in members.agents.iter().enumerate() {
        let refused = agent.handle.status().failed_version.is_some();
        assert_eq!(
            refused,
            i < 3,
            "{}: only batch-1 members were sent (and refused) v3",
            members.names[i]
        );
    }
    assert!(!outside.exists());
    assert!(
        members
            .markers()
            .values()
            .all(|m| m.as_deref() == Some("v2")),
        "every member keeps v2 on disk"
    );
    let events: Vec<Event> = client
        .list::<Event>(
            Some("default"),
            &flotta_client::ListParams {
                field_selector: Some(
                    "involvedObject.kind=EdgeDeviceSet,involvedObject.name=lab".into(),
                ),
                ..Default::default()
            },
        )
        .await
        .expect("events")
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("RolloutPaused")),
        "a RolloutPaused event about the set: {events:?}"
    );

    // Undo: the set's spec is v2's again, rolled out at once (the paused rollout
    // never completed); members keep their v2 files.
    let undone: EdgeDeviceSet =
        flotta_testing::retry_on_conflict("undo", || client.undo_rollout_of("default", "lab"))
            .await;
    assert_eq!(revision_of(&undone), revision_of(&v2));
    assert!(
        undone.spec.rollout_policy.is_some(),
        "undo keeps the rollout policy"
    );
    settled(&server, &members, "v2", &revision_of(&v2)).await;
    let history = client
        .rollout_history_of::<EdgeDeviceSet>("default", "lab")
        .await
        .expect("history");
    let ids: Vec<&str> = history.iter().map(|r| r.revision.as_str()).collect();
    assert!(
        ids.contains(&revision_of(&v1).as_str()) && ids.contains(&revision_of(&v3).as_str()),
        "{ids:?}"
    );
    members.stop().await;
    server.stop().await;
}
