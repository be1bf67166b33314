//! Agents running in tasks of the test's runtime.

use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::{Agent, AgentBuilder, AgentEvent, AgentHandle, WorkloadRuntime};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::identity::ClientIdentity;
use crate::{NAMESPACE, quick};

/// An agent builder for `device_id` in [`NAMESPACE`] (label `site=lab`) aimed at
/// the Edge API at `edge_server` (trusted through `ca_pem`), enrolling with
/// `registration`, with quick timers; the caller adds a state directory or store.
pub fn agent_builder(
    edge_server: &str,
    ca_pem: &str,
    registration: &ClientIdentity,
    device_id: &str,
    runtime: Arc<dyn WorkloadRuntime>,
) -> AgentBuilder {
    Agent::builder()
        .server(edge_server)
        .ca_pem(ca_pem)
        .registration_identity(
            registration.certificate_pem.clone(),
            registration.key_pem.clone(),
        )
        .device_id(device_id)
        .namespace(NAMESPACE)
        .label("site", "lab")
        .runtime(runtime)
        .timing(quick::agent_timing())
        .enrolment_config(quick::enrolment_config(quick::RETRY_MAX))
}

/// An agent running in a task.
pub struct RunningAgent {
    /// Its status and events.
    pub handle: AgentHandle,
    /// Its events since it was spawned.
    pub events: broadcast::Receiver<AgentEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), flotta_agent_lib::AgentError>>,
}

impl RunningAgent {
    /// Runs `agent` in a task until stopped.
    pub fn spawn(agent: Agent) -> RunningAgent {
        let handle = agent.handle();
        let events = handle.subscribe();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            agent
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        RunningAgent {
            handle,
            events,
            stop: Some(stop),
            task,
        }
    }

    /// Waits for the first event `matches` accepts (events before it are returned
    /// too, in order).
    pub async fn wait_for(
        &mut self,
        what: &str,
        matches: impl Fn(&AgentEvent) -> bool,
    ) -> Vec<AgentEvent> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match self.events.recv().await {
                    Ok(event) => {
                        let hit = matches(&event);
                        seen.push(event);
                        if hit {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
        .await;
        assert!(
            found.is_ok() && seen.last().is_some_and(&matches),
            "no {what} event; saw {seen:?}"
        );
        seen
    }

    /// Waits (up to 30 s) for the agent to end by itself, and returns how.
    pub async fn finished(self) -> Result<(), flotta_agent_lib::AgentError> {
        // Dropping the stop sender would stop the agent: keep it until the end.
        let RunningAgent { task, stop, .. } = self;
        let result = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the agent ended")
            .expect("agent task");
        drop(stop);
        result
    }

    /// Ends the agent at once, wherever it is (as a killed process would).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Asks the agent to stop, without waiting (see [`RunningAgent::stopped`]).
    pub fn request_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits (up to 30 s) for the agent to end after [`RunningAgent::request_stop`],
    /// and returns how.
    pub async fn stopped(self) -> Result<(), flotta_agent_lib::AgentError> {
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the agent stops")
            .expect("agent task")
    }

    /// Stops the agent and checks it ended cleanly.
    pub async fn stop(mut self) {
        self.request_stop();
        self.stopped().await.expect("agent ends without error");
    }
}
