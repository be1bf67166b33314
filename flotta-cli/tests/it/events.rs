//! `flotta get events` and the events of `flotta describe`, from a real agent whose
//! workload fails.

use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::{AgentEvent, MemoryRuntime};
use flotta_client::{ListParams, ResourceType, WatchEvent};
use flotta_core::model::{EdgeWorkload, Event};
use futures::StreamExt;
use predicates::str::contains;

use crate::harness::{CliServer, stdout_of};

fn refused_workload(device: &str) -> EdgeWorkload {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"type": "pod", "device": device,
                 "pod": {"spec": {"containers": [{"name": "main", "image": "img:1"}]}}}
    }))
    .expect("workload")
}

#[test]
fn get_events_for_a_device_shows_the_agent_s_failed_apply_and_rollback() {
    let server = CliServer::start();
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    runtime.refuse("broken");
    let mut agent = server.spawn_agent("cli-ev-1", state.path(), runtime);
    server.block_on(agent.wait_for("Registered", |e| matches!(e, AgentEvent::Registered)));
    server.with_client(async |client| {
        client
            .create("default", &refused_workload("cli-ev-1"))
            .await
            .expect("workload created");
        // The agent's heartbeat after the rollback carries both events: wait for
        // them on a watch.
        let params = ListParams::default().involving(ResourceType::EdgeDevice, "cli-ev-1");
        let mut stream = Box::pin(client.watch::<Event>(Some("default"), &params));
        let mut reasons = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(event) = stream.next().await {
                if let Ok(WatchEvent::Added(event)) = event {
                    reasons.extend(event.reason);
                }
                if ["ApplyFailed", "RolledBack"]
                    .iter()
                    .all(|r| reasons.iter().any(|seen| seen == r))
                {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no ApplyFailed and RolledBack events; saw {reasons:?}"));
    });

    let table = stdout_of(
        server
            .flotta()
            .args(["get", "events", "--for", "device/cli-ev-1"]),
    );
    for expected in [
        "LAST SEEN",
        "REASON",
        "ApplyFailed",
        "RolledBack",
        "Warning",
        "edgedevice/cli-ev-1",
        // The agent's reason, as the runtime gave it.
        "refused by the in-memory runtime",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }
    // A bare name is a device; a selector narrows further.
    let warnings = stdout_of(server.flotta().args([
        "get",
        "events",
        "--for",
        "cli-ev-1",
        "--field-selector",
        "type=Warning",
    ]));
    assert!(warnings.contains("ApplyFailed"), "{warnings}");
    assert!(!warnings.contains("RolledBack"), "{warnings}");
    let described = stdout_of(server.flotta().args(["describe", "device", "cli-ev-1"]));
    assert!(described.contains("Events:"), "{described}");
    assert!(described.contains("ApplyFailed"), "{described}");
    assert!(described.contains("flotta-agent"), "{described}");
    server
        .flotta()
        .args(["get", "devices", "--for", "device/cli-ev-1"])
        .assert()
        .failure()
        .stderr(contains("only events"));
    server.block_on(agent.stop());
}

#[test]
fn get_events_watch_prints_a_new_event() {
    let server = CliServer::start();
    let mut watch = std::process::Command::new(assert_cmd::cargo::cargo_bin("flotta"))
        .env("FLOTTA_CONFIG", server.admin_yaml())
        .args(["get", "events", "-w", "-A", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flotta runs");
    let stdout = watch.stdout.take().expect("stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // An agent enrolling makes the server record events.
    let state = tempfile::tempdir().expect("state dir");
    let mut agent = server.spawn_agent("cli-ev-2", state.path(), Arc::new(MemoryRuntime::new()));
    server.block_on(agent.wait_for("Registered", |e| matches!(e, AgentEvent::Registered)));
    let found = loop {
        let line = received
            .recv_timeout(Duration::from_secs(30))
            .expect("a watched event within 30 s");
        if line.contains("\"Registered\"") && line.contains("cli-ev-2") {
            break line;
        }
    };
    assert!(found.contains("\"kind\":\"Event\""), "{found}");
    let _ = watch.kill();
    let _ = watch.wait();
    server.block_on(agent.stop());
}
