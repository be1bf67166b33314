//! Agents running against the shared test server (`flotta_testing::TestServer`,
//! whose `agent_builder` gives them quick timers), and the workloads they run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::{Agent, AgentEvent, PersistedConfig, StateItem};
use flotta_core::backoff::Backoff;
use flotta_core::model::EdgeDevice;

pub use flotta_testing::agent::RunningAgent;
pub use flotta_testing::{TestServer, eventually};

/// An EdgeWorkload for one device.
pub fn workload(name: &str, device: &str, image: &str) -> flotta_core::model::EdgeWorkload {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": "pod",
            "device": device,
            "pod": {"spec": {"containers": [{"name": "main", "image": image}]}}
        }
    }))
    .expect("workload")
}

/// An EdgeWorkload for one device whose container runs `command` (for the process
/// runtime).
pub fn process_workload(
    name: &str,
    device: &str,
    command: &[&str],
) -> flotta_core::model::EdgeWorkload {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": "pod",
            "device": device,
            "pod": {"spec": {"containers": [
                {"name": "main", "image": "unused", "command": command}
            ]}}
        }
    }))
    .expect("workload")
}

/// A process runtime keeping its logs under `dir`, with quick restarts and stops.
pub async fn process_runtime(dir: &Path) -> Arc<flotta_agent_lib::ProcessRuntime> {
    let mut options = flotta_agent_lib::ProcessOptions::new(dir);
    options.restart = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
    options.stop_grace = Duration::from_secs(2);
    Arc::new(
        flotta_agent_lib::ProcessRuntime::open(options)
            .await
            .expect("process runtime opens"),
    )
}

/// A state item as the agent persisted it under `state`.
pub fn read(state: &Path, item: StateItem) -> Option<Vec<u8>> {
    std::fs::read(state.join(item.file_name())).ok()
}

/// A persisted configuration item, decoded.
pub fn persisted(state: &Path, item: StateItem) -> Option<PersistedConfig> {
    PersistedConfig::decode(item, &read(state, item)?).ok()
}

/// The shared quick timers with half-second heartbeats and 2 s requests.
pub fn quick_heartbeats() -> flotta_agent_lib::AgentTiming {
    flotta_testing::quick::agent_timing()
        .with_heartbeat_period(Duration::from_millis(500))
        .with_request_timeout(Duration::from_secs(2))
}

/// Sets a one-second heartbeat period on the server (the configuration's period
/// wins over the agent's default; the control channel is polled at it too) and
/// waits until the agent runs with it.
pub async fn one_second_heartbeats(server: &TestServer, device: &str, state: &Path) {
    server
        .management_client()
        .patch::<EdgeDevice>(
            "default",
            device,
            &serde_json::json!({"spec": {"heartbeat": {"periodSeconds": 1}}}),
        )
        .await
        .expect("device patched");
    eventually("the heartbeat period in force", || async {
        let config = persisted(state, StateItem::CurrentConfig)?;
        let period = config.message.configuration?.heartbeat?.period_seconds?;
        (period == 1).then_some(())
    })
    .await;
}

/// Spawns `agent` and waits until it holds its device certificate.
pub async fn spawn_registered(agent: Agent) -> RunningAgent {
    let mut running = RunningAgent::spawn(agent);
    running
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    running
}

/// Why the agent refused the next version it was given (`ApplyFailed`).
pub async fn refusal(agent: &mut RunningAgent) -> String {
    let seen = agent
        .wait_for("the refusal", |e| {
            matches!(e, AgentEvent::ApplyFailed { .. })
        })
        .await;
    match seen.last() {
        Some(AgentEvent::ApplyFailed { reason, .. }) => reason.clone(),
        _ => panic!("no ApplyFailed in {seen:?}"),
    }
}
