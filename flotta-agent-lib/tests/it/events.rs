//! The agent's events as the fleet operator sees them: a real agent's failed apply
//! and rollback listed by the management API with the agent's reason, and events
//! queued while the server is down kept across an agent restart.

use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::{AgentEvent, MemoryRuntime, PersistedEventQueue, StateItem};
use flotta_client::{ListParams, ManagementClient, ResourceType, WatchEvent};
use flotta_core::model::{EdgeWorkload, Event};
use futures::StreamExt;

use crate::harness::{RunningAgent, TestServer, process_runtime, process_workload};

/// Watches the events about device `device` until `done` accepts what was seen;
/// returns the events seen (latest version of each).
async fn watch_device_events(
    client: &ManagementClient,
    device: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let params = ListParams::default().involving(ResourceType::EdgeDevice, device);
    let mut stream = Box::pin(client.watch::<Event>(Some("default"), &params));
    let mut seen: Vec<Event> = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = stream.next().await {
            let objects = match event {
                Ok(WatchEvent::Added(e) | WatchEvent::Modified(e)) => vec![e],
                Ok(WatchEvent::Restarted(all)) => all,
                Ok(WatchEvent::Deleted(_)) | Err(_) => continue,
            };
            for object in objects {
                seen.retain(|e| e.metadata.name != object.metadata.name);
                seen.push(object);
            }
            if done(&seen) {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "the events did not arrive; saw {seen:?}");
    seen
}

fn has_reasons(events: &[Event], reasons: &[&str]) -> bool {
    reasons
        .iter()
        .all(|r| events.iter().any(|e| e.reason.as_deref() == Some(*r)))
}

#[tokio::test]
async fn a_failing_workload_s_apply_failed_and_rolled_back_reach_the_api() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let logs = tempfile::tempdir().expect("log dir");
    let runtime = process_runtime(logs.path()).await;
    let agent = server
        .agent_builder("ev-proc-1", runtime.clone())
        .state_dir(state.path())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    let client = server.management_client();
    client
        .create::<EdgeWorkload>(
            "default",
            &process_workload("broken", "ev-proc-1", &["/nonexistent/flotta-test-binary"]),
        )
        .await
        .expect("workload created");
    let seen = agent
        .wait_for("RolledBack", |e| matches!(e, AgentEvent::RolledBack { .. }))
        .await;
    let reason = seen
        .iter()
        .find_map(|e| match e {
            AgentEvent::ApplyFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("ApplyFailed before RolledBack");

    let events = watch_device_events(&client, "ev-proc-1", |events| {
        has_reasons(events, &["ApplyFailed", "RolledBack"])
    })
    .await;
    let failed = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("ApplyFailed"))
        .expect("ApplyFailed");
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    let message = failed.message.as_deref().unwrap_or_default();
    assert!(
        message.contains(&reason),
        "{message:?} lacks the agent's reason {reason:?}"
    );
    assert!(message.contains("broken"), "{message}");
    assert_eq!(failed.involved_object.kind.as_deref(), Some("EdgeDevice"));
    assert_eq!(
        failed.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("flotta-agent")
    );
    // The same through the client's one-call form.
    let listed = client
        .events_for("default", ResourceType::EdgeDevice, "ev-proc-1")
        .await
        .expect("events");
    assert!(
        has_reasons(&listed, &["ApplyFailed", "RolledBack", "Registered"]),
        "{listed:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn events_queued_while_the_server_is_down_survive_an_agent_restart() {
    let mut server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let build = |server: &TestServer| {
        server
            .agent_builder("ev-queue-1", Arc::new(MemoryRuntime::new()))
            .state_dir(state.path())
            .build()
            .expect("agent builds")
    };
    let mut agent = RunningAgent::spawn(build(&server));
    agent
        .wait_for("HeartbeatDelivered", |e| {
            matches!(e, AgentEvent::HeartbeatDelivered)
        })
        .await;
    server.stop_keeping_data().await;

    let reasons = ["QueuedOne", "QueuedTwo", "QueuedThree"];
    for reason in reasons {
        agent
            .handle
            .report_event(reason, format!("{reason} happened while offline"), true);
    }
    agent
        .wait_for(
            "the queue saved with three events",
            |e| matches!(e, AgentEvent::EventQueuePersisted { events } if *events >= 3),
        )
        .await;
    // As a power loss would: no chance to deliver or save anything more.
    agent.kill().await;
    let saved = std::fs::read(state.path().join(StateItem::EventQueue.file_name()))
        .expect("the queue is in the state directory");
    let saved = PersistedEventQueue::decode(&saved).expect("a readable queue");
    // The agent's own events (ConfigApplied, say) may be queued too.
    let saved_reasons: Vec<_> = saved
        .events
        .iter()
        .filter_map(|e| e.reason.as_deref())
        .filter(|r| r.starts_with("Queued"))
        .collect();
    assert_eq!(saved_reasons, reasons);

    server.start_again().await;
    let mut agent = RunningAgent::spawn(build(&server));
    let events = watch_device_events(&server.management_client(), "ev-queue-1", |events| {
        has_reasons(events, &reasons)
    })
    .await;
    for reason in reasons {
        let event = events
            .iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .expect("delivered");
        assert_eq!(
            event.count,
            Some(1),
            "{reason} was delivered once: {event:?}"
        );
        assert_eq!(event.type_.as_deref(), Some("Warning"));
    }
    // Delivered, the queue is saved empty again.
    agent
        .wait_for("the queue saved empty", |e| {
            matches!(e, AgentEvent::EventQueuePersisted { events: 0 })
        })
        .await;
    agent.stop().await;
}
