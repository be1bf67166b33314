//! Ansible playbooks end to end, with real ansible-core (`ansible-playbook` from
//! PyPI, `flotta_testing::ansible`) run by a real agent against a real server:
//! an `EdgeConfig` and a device label make a `PlaybookExecution`, the agent runs
//! it (the file the playbook writes is read from disk), and the execution's
//! conditions, the device's `status.PlaybookExec` and its label follow. A failing
//! playbook is tried as often as asked and reported failed with ansible's reason;
//! one that outlives its timeout is stopped and reported so.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use flotta_agent_lib::{AgentEvent, MemoryRuntime};
use flotta_core::ansible::{EDGE_CONFIG_LABEL, current_state};
use flotta_core::model::{EdgeConfig, EdgeDevice, PlaybookExecution};
use flotta_testing::eventually_within;
use serde_json::json;

use crate::harness::{RunningAgent, TestServer, eventually};

/// ansible-playbook starts in about a second; two cores shared with a build are
/// slower.
const PATIENCE: Duration = Duration::from_secs(90);

/// The playbook tests are ignored where ansible-core is missing; on CI that is a
/// failure.
#[test]
fn ansible_is_there_on_ci() {
    flotta_testing::ansible::require_in_ci();
}

fn edge_config(name: &str, playbook: &str, extra: serde_json::Value) -> EdgeConfig {
    let mut entry = json!({
        "content": base64::engine::general_purpose::STANDARD.encode(playbook),
    });
    if let (Some(entry), Some(extra)) = (entry.as_object_mut(), extra.as_object()) {
        entry.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeConfig",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"edgePlaybook": {"playbooks": [entry]}},
    }))
    .expect("edge config")
}

/// A playbook in the shape of Flotta's sample (`hosts: 127.0.0.1`) writing
/// `content` to `path`.
fn writes(path: &Path, content: &str) -> String {
    format!(
        "- name: Write a file\n  hosts: 127.0.0.1\n  gather_facts: false\n  tasks:\n    - name: Write the marker\n      copy:\n        content: {content:?}\n        dest: {:?}\n",
        path.display().to_string()
    )
}

async fn label(server: &TestServer, device: &str, config: &str) {
    server
        .management_client()
        .patch::<EdgeDevice>(
            "default",
            device,
            &json!({"metadata": {"labels": {EDGE_CONFIG_LABEL: config}}}),
        )
        .await
        .expect("device labelled");
}

/// The execution once the device reported it finished.
async fn finished(server: &TestServer, name: &str) -> PlaybookExecution {
    let client = server.management_client();
    eventually_within(&format!("{name} finished"), PATIENCE, || {
        let client = client.clone();
        async move {
            let execution = client
                .get::<PlaybookExecution>("default", name)
                .await
                .ok()?;
            current_state(&execution)
                .is_some_and(flotta_core::ansible::is_final)
                .then_some(execution)
        }
    })
    .await
}

fn true_message(execution: &PlaybookExecution) -> String {
    execution
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().rev().find(|c| c.status == "True"))
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}

async fn device_label(server: &TestServer, device: &str) -> Option<String> {
    let device: EdgeDevice = server
        .management_client()
        .get("default", device)
        .await
        .expect("device");
    device.metadata.labels?.get(EDGE_CONFIG_LABEL).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ansible-core (ansible-playbook); scripts/test.sh runs it"]
async fn playbooks_run_on_the_device_and_their_executions_report_success_and_failure() {
    let ansible_playbook = flotta_testing::ansible::require();
    let server = TestServer::start().await;
    let client = server.management_client();
    let dir = tempfile::tempdir().expect("dir");
    let agent = server
        .agent_builder("dev-1", Arc::new(MemoryRuntime::new()))
        .state_dir(dir.path().join("state"))
        .ansible_playbook(&ansible_playbook)
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    client
        .patch::<EdgeDevice>(
            "default",
            "dev-1",
            &json!({"spec": {"heartbeat": {"periodSeconds": 1}}}),
        )
        .await
        .expect("heartbeat period");

    // What the server cannot honour is refused, naming the field.
    let mut two = edge_config("two", &writes(dir.path(), "x"), json!({}));
    let first = two.spec.edge_playbook.as_ref().expect("p").playbooks[0].clone();
    two.spec
        .edge_playbook
        .as_mut()
        .expect("p")
        .playbooks
        .push(first);
    let refused = client
        .create("default", &two)
        .await
        .expect_err("two playbooks refused");
    assert!(
        refused.to_string().contains("spec.edgePlaybook.playbooks"),
        "{refused}"
    );

    // A playbook that writes a file: run once, the file on disk.
    let marker = dir.path().join("hello.txt");
    client
        .create(
            "default",
            &edge_config(
                "hello",
                &writes(&marker, "hello from flotta"),
                json!({"timeoutSeconds": 60}),
            ),
        )
        .await
        .expect("hello created");
    label(&server, "dev-1", "hello").await;
    let execution = finished(&server, "dev-1-hello").await;
    assert_eq!(current_state(&execution), Some("SuccessfullyCompleted"));
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some("hello from flotta"),
        "the playbook's file on the device"
    );
    let message = true_message(&execution);
    assert!(
        message.starts_with("localhost: ok=1 changed=1") && message.contains("failed=0"),
        "the recap: {message}"
    );
    let states: Vec<(String, String)> = execution
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert_eq!(
        states.last(),
        Some(&("SuccessfullyCompleted".to_owned(), "True".to_owned()))
    );
    assert!(
        states
            .iter()
            .all(|(t, s)| t == "SuccessfullyCompleted" || s == "False"),
        "one True condition: {states:?}"
    );
    // The label is taken off, and the device's own status says it ran.
    eventually("the EdgeConfig label removed", || async {
        device_label(&server, "dev-1").await.is_none().then_some(())
    })
    .await;
    let device: EdgeDevice = client.get("default", "dev-1").await.expect("device");
    let entries = device
        .status
        .and_then(|s| s.playbook_exec)
        .unwrap_or_default();
    let entry = entries
        .iter()
        .find(|e| e.name == "dev-1-hello")
        .expect("status.PlaybookExec entry");
    let conditions = entry
        .playbook_execution_status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .expect("conditions");
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "SuccessfullyCompleted" && c.status == "True"),
        "{conditions:?}"
    );
    // Run once: the file removed now stays removed.
    std::fs::remove_file(&marker).expect("marker removed");

    // The server lost the final report (as when the agent stopped right after
    // the run): the execution is sent again, and the agent says how it ended
    // instead of running it again.
    client
        .patch_status::<PlaybookExecution>(
            "default",
            "dev-1-hello",
            &json!({"status": {"conditions": [{"type": "Running", "status": "True"}]}}),
        )
        .await
        .expect("status reset");
    label(&server, "dev-1", "hello").await;
    let again = finished(&server, "dev-1-hello").await;
    assert_eq!(current_state(&again), Some("SuccessfullyCompleted"));
    assert_eq!(
        true_message(&again),
        message,
        "the same recap, reported again"
    );
    assert!(!marker.exists(), "not run again");
    eventually("the EdgeConfig label removed again", || async {
        device_label(&server, "dev-1").await.is_none().then_some(())
    })
    .await;

    // A playbook that fails, tried twice, reported with ansible's reason.
    let missing = Path::new("/nonexistent-flotta-dir/out.txt");
    let mut broken = edge_config("broken", &writes(missing, "x"), json!({}));
    broken
        .spec
        .edge_playbook
        .as_mut()
        .expect("p")
        .execution_attempts = Some(2);
    client.create("default", &broken).await.expect("broken");
    label(&server, "dev-1", "broken").await;
    let execution = finished(&server, "dev-1-broken").await;
    assert_eq!(current_state(&execution), Some("CompletedWithError"));
    let message = true_message(&execution);
    assert!(
        message.starts_with("failed 2 times; last: task \"Write the marker\" failed on localhost: Destination directory /nonexistent-flotta-dir does not exist"),
        "{message}"
    );

    // A playbook that outlives its timeout is stopped.
    let slow = "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - name: Wait\n      command: sleep 60\n";
    client
        .create(
            "default",
            &edge_config("slow", slow, json!({"timeoutSeconds": 3})),
        )
        .await
        .expect("slow");
    label(&server, "dev-1", "slow").await;
    let execution = finished(&server, "dev-1-slow").await;
    assert_eq!(current_state(&execution), Some("CompletedWithError"));
    assert_eq!(
        true_message(&execution),
        "timed out after 3s: ansible-playbook was stopped"
    );
    assert!(!marker.exists(), "the finished playbook did not run again");
    agent.stop().await;
}
