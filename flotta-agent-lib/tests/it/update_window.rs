//! `spec.updatePolicy.updateSchedule`: outside the window a new version is
//! prefetched but not applied and the agent says it waits for the update window;
//! inside it the version applies.

use std::sync::Arc;

use flotta_agent_lib::{AgentEvent, MemoryRuntime};
use flotta_core::model::{EdgeDevice, EdgeWorkload};

use crate::harness::{RunningAgent, TestServer, quick_heartbeats, workload};

async fn set_update_schedule(server: &TestServer, device: &str, at: &str, grace: &str) {
    server
        .management_client()
        .patch::<EdgeDevice>(
            "default",
            device,
            &serde_json::json!({"spec": {"updatePolicy": {"updateSchedule": {
                "at": at, "timeZone": "UTC", "startGraceDuration": grace
            }}}}),
        )
        .await
        .expect("device patched");
}

#[tokio::test]
async fn outside_the_update_window_nothing_is_applied_inside_it_the_version_runs() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    let agent = server
        .agent_builder("window-1", runtime.clone())
        .state_dir(state.path())
        .timing(quick_heartbeats())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    // A one-hour window twelve hours from now: closed whatever the time.
    let hour = (time::OffsetDateTime::now_utc().hour() + 12) % 24;
    set_update_schedule(&server, "window-1", &format!("0 {hour} * * *"), "1h").await;
    server
        .management_client()
        .create::<EdgeWorkload>(
            "default",
            &workload("app", "window-1", "registry.test/app:1"),
        )
        .await
        .expect("workload created");
    let seen = agent
        .wait_for("the wait for the window", |e| {
            matches!(e, AgentEvent::WaitingForWindow { .. })
        })
        .await;
    let Some(AgentEvent::WaitingForWindow { message, .. }) = seen.last() else {
        panic!("no WaitingForWindow event");
    };
    assert!(
        message.contains("waiting for the update window"),
        "{message}"
    );
    assert!(message.contains(", opens 20"), "{message}");
    assert!(
        runtime.names().is_empty(),
        "nothing applied outside the window"
    );
    let status = agent.handle.status();
    assert!(
        status
            .waiting_for_window
            .as_deref()
            .is_some_and(|w| w.contains("waiting for the update window")),
        "{status:?}"
    );

    // A window open every minute for a minute: the version applies.
    set_update_schedule(&server, "window-1", "* * * * *", "1m").await;
    agent
        .wait_for("the version applied in the window", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. })
        })
        .await;
    assert_eq!(runtime.names(), ["app"]);
    assert_eq!(agent.handle.status().waiting_for_window, None);
    agent.stop().await;
}

#[tokio::test]
async fn a_schedule_the_server_cannot_honour_is_refused() {
    let server = TestServer::start().await;
    let mut device = EdgeDevice::new("window-2", Default::default());
    device.metadata.namespace = Some("default".into());
    device.spec.update_policy = Some(flotta_core::model::UpdatePolicy {
        update_schedule: Some(flotta_core::model::UpdateSchedule {
            at: "0 2 * * *".into(),
            time_zone: Some("Mars/Olympus_Mons".into()),
            start_grace_duration: "1h".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let error = server
        .management_client()
        .create::<EdgeDevice>("default", &device)
        .await
        .expect_err("refused");
    let text = error.to_string();
    assert!(
        text.contains(
            "spec.updatePolicy.updateSchedule: time zone \"Mars/Olympus_Mons\" is not known here"
        ),
        "{text}"
    );
}
