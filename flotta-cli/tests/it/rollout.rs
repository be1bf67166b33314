//! `flotta rollout ...` against a real server and real agents.

use flotta_core::model::{EdgeDevice, EdgeDeviceSet, EdgeWorkload};
use flotta_core::reconcile::{RolloutRecord, SetRevision};

use crate::harness::{CliServer, stdout_of};

fn workload(image: &str) -> EdgeWorkload {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "pod",
            "deviceSelector": {"matchLabels": {"site": "lab"}},
            "rolloutPolicy": {"batches": [{"limit": 1}], "manualApproval": true},
            "pod": {"spec": {"containers": [{"name": "main", "image": image}]}},
        },
    }))
    .expect("workload")
}

/// Reads object `name`, changes it and writes it back.
async fn replace_spec<T: flotta_client::ApiObject>(
    client: &flotta_client::ManagementClient,
    name: &str,
    change: impl Fn(&mut T),
) {
    flotta_testing::retry_on_conflict(name, || async {
        let mut stored: T = client.get("default", name).await?;
        change(&mut stored);
        client.replace("default", &stored).await
    })
    .await;
}

/// Waits until the workload's rollout record satisfies `done`.
fn wait_for(server: &CliServer, what: &str, done: impl Fn(&RolloutRecord) -> bool) {
    server.with_client(async |client| {
        flotta_testing::eventually(what, || async {
            let record = client.rollout_status("default", "web").await.ok()??;
            done(&record).then_some(())
        })
        .await;
    });
}

#[test]
fn a_batch_waits_for_approval_through_the_cli() {
    let server = CliServer::start();
    let _agents = server.agents(&["cli-a", "cli-b"]);
    server.with_client(async |client| {
        client
            .create("default", &workload("registry.local/web:1"))
            .await
            .expect("created");
    });
    wait_for(&server, "the first revision everywhere", |r| {
        r.complete && r.batches.iter().map(|b| b.succeeded).sum::<u32>() == 2
    });
    server.with_client(async |client| {
        replace_spec(&client, "web", |w: &mut EdgeWorkload| {
            w.spec = workload("registry.local/web:2").spec;
        })
        .await;
    });
    wait_for(&server, "batch 1 done, batch 2 awaiting approval", |r| {
        r.reason.as_deref() == Some("AwaitingApproval")
    });

    let status = stdout_of(server.flotta().args(["rollout", "status", "workload/web"]));
    assert!(status.contains("paused (AwaitingApproval)"), "{status}");
    assert!(status.contains("previous revision: "), "{status}");
    let approved = stdout_of(
        server
            .flotta()
            .args(["rollout", "approve", "workload", "web"]),
    );
    assert!(
        approved.contains("workload/web batch 1 approved"),
        "{approved}"
    );
    wait_for(&server, "the second revision everywhere", |r| {
        r.complete && r.batches.iter().map(|b| b.succeeded).sum::<u32>() == 2
    });

    let history = stdout_of(server.flotta().args(["rollout", "history", "workload/web"]));
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(
        history.contains("current") && history.contains("previous"),
        "{history}"
    );

    // Nothing left to approve: a named error and a failing exit status.
    let output = server
        .flotta()
        .args(["rollout", "approve", "workload/web"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rollout of web: no rollout in progress, nothing to approve"),
        "{stderr}"
    );
    // Pause and resume write the control the server reads.
    stdout_of(server.flotta().args(["rollout", "pause", "workload/web"]));
    let paused: EdgeWorkload =
        server.with_client(async |client| client.get("default", "web").await.expect("get"));
    let annotations = paused.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations
            .get(flotta_core::reconcile::PAUSED_ANNOTATION)
            .map(String::as_str),
        Some("true")
    );
    stdout_of(server.flotta().args(["rollout", "resume", "workload/web"]));
}

#[test]
fn rollout_commands_refuse_what_has_no_rollout() {
    let server = CliServer::start();
    let output = server
        .flotta()
        .args(["rollout", "pause", "device/edge"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("only workloads (workload/NAME) and device sets (set/NAME) have rollouts"),
        "{stderr}"
    );

    let output = server
        .flotta()
        .args(["rollout", "undo", "workload/missing"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("404"), "{stderr}");
}

/// A device set whose members send hardware in their heartbeats or not.
fn device_set(include_hardware: bool) -> EdgeDeviceSet {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeDeviceSet",
        "metadata": {"name": "edge", "namespace": "default"},
        "spec": {
            "rolloutPolicy": {"batches": [{"limit": 1}], "manualApproval": true},
            "heartbeat": {"periodSeconds": 1, "hardwareProfile": {"include": include_hardware}},
        },
    }))
    .expect("set")
}

fn wait_for_set(
    server: &CliServer,
    what: &str,
    done: impl Fn(&RolloutRecord<SetRevision>) -> bool,
) {
    server.with_client(async |client| {
        flotta_testing::eventually(what, || async {
            let record = client
                .rollout_status_of::<EdgeDeviceSet>("default", "edge")
                .await
                .ok()??;
            done(&record).then_some(())
        })
        .await;
    });
}

#[test]
fn a_device_set_batch_waits_for_approval_through_the_cli() {
    let server = CliServer::start();
    let _agents = server.agents(&["set-a", "set-b"]);
    server.with_client(async |client| {
        for device in ["set-a", "set-b"] {
            client
                .patch::<EdgeDevice>(
                    "default",
                    device,
                    &serde_json::json!({"metadata": {"labels": {"flotta/member-of": "edge"}}}),
                )
                .await
                .expect("labelled");
        }
        client
            .create("default", &device_set(false))
            .await
            .expect("created");
    });
    wait_for_set(&server, "the first revision on both members", |r| {
        r.complete && r.batches.iter().map(|b| b.succeeded).sum::<u32>() == 2
    });
    server.with_client(async |client| {
        replace_spec(&client, "edge", |s: &mut EdgeDeviceSet| {
            s.spec = device_set(true).spec;
        })
        .await;
    });
    wait_for_set(&server, "batch 1 done, batch 2 awaiting approval", |r| {
        r.reason.as_deref() == Some("AwaitingApproval") && r.batches[0].succeeded == 1
    });
    let status = stdout_of(server.flotta().args(["rollout", "status", "set/edge"]));
    assert!(status.starts_with("set/edge"), "{status}");
    assert!(status.contains("paused (AwaitingApproval)"), "{status}");
    let approved = stdout_of(server.flotta().args(["rollout", "approve", "set", "edge"]));
    assert!(approved.contains("set/edge batch 1 approved"), "{approved}");
    wait_for_set(&server, "the second revision on both members", |r| {
        r.complete && r.batches.iter().map(|b| b.succeeded).sum::<u32>() == 2
    });
    let history = stdout_of(server.flotta().args(["rollout", "history", "set/edge"]));
    assert_eq!(history.lines().count(), 3, "{history}");
    let revision = SetRevision::of(&device_set(true))
        .expect("encodes")
        .revision;
    assert!(
        history
            .lines()
            .any(|l| l.starts_with(&revision) && l.ends_with("current")),
        "{history}"
    );
}
