//! Enrolment, heartbeats, configuration and rollback against a real server.

use std::sync::Arc;

use flotta_agent_lib::{
    AgentEvent, AgentPhase, HeartbeatResult, MemoryRuntime, PersistedConfig, StateError, StateItem,
};
use flotta_core::model::{EdgeDevice, EdgeWorkload};

use crate::harness::{RunningAgent, TestServer, eventually, workload};

/// The version of the configuration the agent persisted as running, once that
/// configuration has the workload `with`.
fn current_version(state_dir: &std::path::Path, with: &str) -> Option<String> {
    let bytes = std::fs::read(state_dir.join(StateItem::CurrentConfig.file_name())).ok()?;
    let config = PersistedConfig::decode(StateItem::CurrentConfig, &bytes).ok()?;
    let has = config
        .message
        .workloads
        .iter()
        .flatten()
        .any(|w| w.name.as_deref() == Some(with));
    has.then_some(config.version)
}

async fn device_workload_phase(
    client: &flotta_client::ManagementClient,
    device: &str,
    workload: &str,
) -> Option<String> {
    let device: EdgeDevice = client.get("default", device).await.ok()?;
    device
        .status?
        .workloads?
        .into_iter()
        .find(|w| w.name == workload)?
        .phase
}

#[tokio::test]
async fn enrols_heartbeats_and_runs_a_workload_created_on_the_server() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    let mut agent = RunningAgent::spawn(server.agent("cam-1", state.path(), runtime.clone()));

    let seen = agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    assert!(
        seen.contains(&AgentEvent::PhaseChanged(AgentPhase::Enrolling)),
        "{seen:?}"
    );
    assert!(state.path().join(StateItem::DeviceKey.file_name()).exists());
    assert!(
        state
            .path()
            .join(StateItem::DeviceCertificate.file_name())
            .exists()
    );
    agent
        .wait_for("HeartbeatDelivered", |e| {
            matches!(e, AgentEvent::HeartbeatDelivered)
        })
        .await;
    let status = agent.handle.status();
    assert_eq!(status.phase, Some(AgentPhase::Running));
    assert!(matches!(
        status.last_heartbeat,
        Some(HeartbeatResult::Delivered { .. })
    ));

    let client = server.management_client();
    client
        .create::<EdgeWorkload>(
            "default",
            &workload("recorder", "cam-1", "registry.local/rec:1"),
        )
        .await
        .expect("workload created");
    eventually("the workload in the runtime", || async {
        runtime.workload("recorder")
    })
    .await;
    let version = eventually("the version in the agent status", || async {
        let running = current_version(state.path(), "recorder")?;
        (agent.handle.status().config_version.as_deref() == Some(running.as_str()))
            .then_some(running)
    })
    .await;
    assert!(!version.is_empty());
    let phase = eventually("the workload in the device status", || async {
        device_workload_phase(&client, "cam-1", "recorder").await
    })
    .await;
    assert_eq!(phase, "Running");

    agent.stop().await;
}

#[tokio::test]
async fn a_restarted_agent_resumes_with_its_persisted_state() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let client = server.management_client();
    let first_runtime = Arc::new(MemoryRuntime::new());
    let mut agent = RunningAgent::spawn(server.agent("cam-2", state.path(), first_runtime.clone()));
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    client
        .create::<EdgeWorkload>(
            "default",
            &workload("recorder", "cam-2", "registry.local/rec:1"),
        )
        .await
        .expect("workload created");
    // Applied and persisted: the configuration is saved as current just before
    // ConfigApplied, after the runtime has the workload.
    agent
        .wait_for("the workload applied", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. })
                && first_runtime.workload("recorder").is_some()
        })
        .await;
    agent.stop().await;
    let certificate = std::fs::read(state.path().join(StateItem::DeviceCertificate.file_name()))
        .expect("certificate persisted");
    let key =
        std::fs::read(state.path().join(StateItem::DeviceKey.file_name())).expect("key persisted");

    // A new process: empty runtime, same state directory.
    let second_runtime = Arc::new(MemoryRuntime::new());
    let mut agent =
        RunningAgent::spawn(server.agent("cam-2", state.path(), second_runtime.clone()));
    let seen = agent
        .wait_for("Resumed", |e| matches!(e, AgentEvent::Resumed))
        .await;
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            AgentEvent::Registered | AgentEvent::PhaseChanged(AgentPhase::Enrolling)
        )),
        "enrolled again: {seen:?}"
    );
    // The persisted configuration was restored before talking to the server.
    assert!(second_runtime.workload("recorder").is_some());
    assert_eq!(second_runtime.apply_attempts("recorder"), 1);
    agent
        .wait_for("HeartbeatDelivered", |e| {
            matches!(e, AgentEvent::HeartbeatDelivered)
        })
        .await;
    assert_eq!(
        std::fs::read(state.path().join(StateItem::DeviceCertificate.file_name())).expect("cert"),
        certificate
    );
    assert_eq!(
        std::fs::read(state.path().join(StateItem::DeviceKey.file_name())).expect("key"),
        key
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_failing_apply_rolls_back_reports_and_is_not_retried() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let client = server.management_client();
    let runtime = Arc::new(MemoryRuntime::new());
    runtime.refuse("broken");
    let mut agent = RunningAgent::spawn(server.agent("cam-3", state.path(), runtime.clone()));
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;

    client
        .create::<EdgeWorkload>(
            "default",
            &workload("good", "cam-3", "registry.local/good:1"),
        )
        .await
        .expect("workload created");
    eventually("good in the runtime", || async { runtime.workload("good") }).await;
    let good = eventually("the good version in the agent status", || async {
        let running = current_version(state.path(), "good")?;
        (agent.handle.status().config_version.as_deref() == Some(running.as_str()))
            .then_some(running)
    })
    .await;

    client
        .create::<EdgeWorkload>(
            "default",
            &workload("broken", "cam-3", "registry.local/bad:1"),
        )
        .await
        .expect("workload created");
    let seen = agent
        .wait_for("RolledBack", |e| matches!(e, AgentEvent::RolledBack { .. }))
        .await;
    let failed = seen
        .iter()
        .find_map(|e| match e {
            AgentEvent::ApplyFailed { version, reason } => Some((version.clone(), reason.clone())),
            _ => None,
        })
        .expect("ApplyFailed before RolledBack");
    assert!(failed.1.contains("broken"), "{failed:?}");
    assert_eq!(
        seen.last(),
        Some(&AgentEvent::RolledBack {
            failed_version: failed.0.clone(),
            to_version: good.clone(),
            complete: true,
        })
    );
    assert!(runtime.workload("good").is_some());
    assert!(runtime.workload("broken").is_none());
    let status = agent.handle.status();
    assert_eq!(status.config_version.as_deref(), Some(good.as_str()));
    assert_eq!(status.failed_version.as_deref(), Some(failed.0.as_str()));

    // Several long-poll rounds later the failed version was not retried. Each round
    // makes one or two look-ups of the device's configuration on the server: six
    // more mean at least three rounds.
    let lookups = server.edge().config_cache_stats().hits;
    eventually("three more long-poll rounds", || async {
        (server.edge().config_cache_stats().hits >= lookups + 6).then_some(())
    })
    .await;
    assert_eq!(runtime.apply_attempts("broken"), 1);
    assert_eq!(
        std::fs::read_to_string(state.path().join(StateItem::FailedVersion.file_name()))
            .expect("failed version persisted"),
        failed.0
    );

    // The device reported the failure in a heartbeat: the server saw it degraded.
    let workloads = eventually("a degraded device", || async {
        let device: EdgeDevice = client.get("default", "cam-3").await.ok()?;
        let status = device.status?;
        (status.phase.as_deref() == Some("degraded")).then_some(status.workloads)
    })
    .await;
    let names: Vec<String> = workloads.into_iter().flatten().map(|w| w.name).collect();
    assert_eq!(names, vec!["good".to_owned()]);
    agent.stop().await;
}

#[tokio::test]
async fn unusable_persisted_state_stops_the_agent_with_the_item_named() {
    let server = TestServer::start().await;

    let state = tempfile::tempdir().expect("state dir");
    std::fs::write(
        state.path().join(StateItem::CurrentConfig.file_name()),
        b"{\"version\": \"v1\", \"message\": ",
    )
    .expect("write");
    let agent = server.agent("cam-4", state.path(), Arc::new(MemoryRuntime::new()));
    let error = agent
        .run(std::future::pending())
        .await
        .expect_err("corrupt configuration");
    assert!(
        matches!(
            &error,
            flotta_agent_lib::AgentError::State(StateError::Corrupt {
                item: StateItem::CurrentConfig,
                ..
            })
        ),
        "{error:?}"
    );

    let state = tempfile::tempdir().expect("state dir");
    std::fs::write(
        state.path().join(StateItem::DeviceKey.file_name()),
        b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let agent = server.agent("cam-5", state.path(), Arc::new(MemoryRuntime::new()));
    let error = agent
        .run(std::future::pending())
        .await
        .expect_err("corrupt key");
    assert!(
        matches!(&error, flotta_agent_lib::AgentError::Key { .. }),
        "{error:?}"
    );
    // Nothing was sent for a device whose key is unusable.
    let device = server
        .management_client()
        .get::<EdgeDevice>("default", "cam-5")
        .await;
    assert!(
        device.as_ref().is_err_and(|e| e.is_not_found()),
        "{device:?}"
    );
}

#[tokio::test]
async fn heartbeats_back_off_while_the_server_is_down_and_resume_after() {
    let mut server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    let mut agent = RunningAgent::spawn(server.agent("cam-6", state.path(), runtime));
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    // A one-second heartbeat period, set on the server.
    server
        .management_client()
        .patch::<EdgeDevice>(
            "default",
            "cam-6",
            &serde_json::json!({"spec": {"heartbeat": {"periodSeconds": 1}}}),
        )
        .await
        .expect("device patched");
    eventually("the heartbeat period in force", || async {
        let bytes = std::fs::read(state.path().join(StateItem::CurrentConfig.file_name())).ok()?;
        let config = PersistedConfig::decode(StateItem::CurrentConfig, &bytes).ok()?;
        let period = config.message.configuration?.heartbeat?.period_seconds?;
        (period == 1).then_some(())
    })
    .await;

    server.stop_keeping_data().await;
    let handle = agent.handle.clone();
    agent
        .wait_for("two heartbeats failed in a row", |e| {
            matches!(e, AgentEvent::HeartbeatFailed { .. })
                && matches!(
                    handle.status().last_heartbeat,
                    Some(HeartbeatResult::Failed { consecutive_failures, .. })
                        if consecutive_failures >= 2
                )
        })
        .await;
    server.start_again().await;
    agent
        .wait_for("HeartbeatDelivered", |e| {
            matches!(e, AgentEvent::HeartbeatDelivered)
        })
        .await;
    agent.stop().await;
}

#[tokio::test]
async fn an_idle_agent_is_kept_seen_by_its_long_poll_and_sends_no_unchanged_heartbeat() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    let mut agent = RunningAgent::spawn(server.agent("idle-1", state.path(), runtime));
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    // A one-second period, a two-second long-poll and an hour of allowed silence.
    let client = server.management_client();
    client
        .patch::<EdgeDevice>(
            "default",
            "idle-1",
            &serde_json::json!({"spec": {"heartbeat": {
                "periodSeconds": 1, "longPollSeconds": 2, "maxSilenceSeconds": 3600}}}),
        )
        .await
        .expect("device patched");
    let in_force = eventually("the heartbeat settings in force", || async {
        let bytes = std::fs::read(state.path().join(StateItem::CurrentConfig.file_name())).ok()?;
        let config = PersistedConfig::decode(StateItem::CurrentConfig, &bytes).ok()?;
        let heartbeat = config.message.configuration?.heartbeat?;
        (heartbeat.max_silence_seconds == Some(3600) && heartbeat.long_poll_seconds == Some(2))
            .then_some(config.version)
    })
    .await;
    // The heartbeat that reports the new version, then quiet.
    let device_reports = || async {
        let device: EdgeDevice = client.get("default", "idle-1").await.ok()?;
        let status = device.status?;
        (status.last_synced_resource_version.as_deref() == Some(in_force.as_str()))
            .then_some(status.last_seen?.0)
    };
    let reported = eventually("the new version reported", device_reports).await;
    let last_seen = || async {
        let device: EdgeDevice = client.get("default", "idle-1").await.ok()?;
        device.status?.last_seen.map(|t| t.0)
    };
    // A second on, the agent has counted that heartbeat.
    let from = eventually("last-seen moved on", || async {
        let now = last_seen().await?;
        (now.as_second() > reported.as_second()).then_some(now)
    })
    .await;
    let sent = agent.handle.status().counters.heartbeats_sent;
    // Four seconds of the server seeing the device: four periods in which an
    // agent heartbeating every period would have sent four.
    eventually("last-seen moved on by four seconds", || async {
        let now = last_seen().await?;
        (now.as_second() >= from.as_second() + 4).then_some(())
    })
    .await;
    assert_eq!(
        agent.handle.status().counters.heartbeats_sent,
        sent,
        "an unchanged report was sent although {in_force} allows an hour of silence"
    );
    agent.stop().await;
}
