//! A real flotta server in this process, and agents wired to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::{
    Agent, AgentBuilder, AgentEvent, AgentHandle, AgentTiming, MemoryRuntime, WorkloadRuntime,
};
use flotta_client::ManagementClient;
use flotta_core::enrolment::{AgentConfig, Backoff};
use flotta_server::app::{self, RunningServer, pki_files};
use flotta_server::config::ServerConfig;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// A running server (auto-approval on) over a temporary data directory.
pub struct TestServer {
    running: Option<RunningServer>,
    config: ServerConfig,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(true, None).await
    }

    /// A server with auto-approval on or off, and device certificates of
    /// `certificate_lifetime` (default 90 days).
    pub async fn start_with(
        auto_approve: bool,
        certificate_lifetime: Option<Duration>,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = ServerConfig::with_data_dir(dir.path());
        config.api_listen = "127.0.0.1:0".parse().expect("address");
        config.edge_listen = "127.0.0.1:0".parse().expect("address");
        config.auto_approve = auto_approve;
        if let Some(lifetime) = certificate_lifetime {
            config.cert_lifetime = lifetime;
        }
        let data_dir = config.data_dir.clone();
        let running = app::start(config.clone()).await.expect("server starts");
        TestServer {
            running: Some(running),
            config,
            data_dir,
            _dir: dir,
        }
    }

    /// Stops the server, keeping its data; returns its (edge, api) addresses.
    pub async fn stop(&mut self) -> (std::net::SocketAddr, std::net::SocketAddr) {
        let running = self.running.take().expect("server running");
        let addrs = (running.edge_addr(), running.api_addr());
        running.shutdown().await;
        addrs
    }

    /// Starts the server again over the same data and ports.
    pub async fn start_again(&mut self, (edge, api): (std::net::SocketAddr, std::net::SocketAddr)) {
        self.config.edge_listen = edge;
        self.config.api_listen = api;
        for _ in 0..50 {
            if let Ok(running) = app::start(self.config.clone()).await {
                self.running = Some(running);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server did not start again");
    }

    fn running(&self) -> &RunningServer {
        self.running.as_ref().expect("server running")
    }

    /// A management client with the admin token.
    pub fn client(&self) -> ManagementClient {
        let admin = self.running().admin_config();
        ManagementClient::builder(admin.server.clone())
            .token(admin.token.clone())
            .ca_pem(admin.certificate_authority.clone())
            .build()
            .expect("client builds")
    }

    fn pki(&self, name: &str) -> String {
        std::fs::read_to_string(self.data_dir.join("pki").join(name)).expect("PKI file")
    }

    /// An agent for `device_id` keeping state in `state_dir`, with quick timers.
    pub fn agent(&self, device_id: &str, state_dir: &Path, runtime: Arc<MemoryRuntime>) -> Agent {
        self.agent_builder(device_id, runtime)
            .state_dir(state_dir)
            .build()
            .expect("agent builds")
    }

    /// Approves the pending enrolment of `device_id` (manual approval).
    pub async fn approve(&self, device_id: &str) {
        self.client()
            .patch::<flotta_core::model::EdgeDeviceSignedRequest>(
                "default",
                device_id,
                &serde_json::json!({"spec": {"approved": true}}),
            )
            .await
            .expect("signed request approved");
    }

    /// A builder for an agent for `device_id` with quick timers and no state store
    /// yet.
    pub fn agent_builder(
        &self,
        device_id: &str,
        runtime: Arc<dyn WorkloadRuntime>,
    ) -> AgentBuilder {
        let admin = self.running().admin_config();
        Agent::builder()
            .server(admin.edge_server.clone())
            .ca_pem(admin.certificate_authority.clone())
            .registration_identity(
                self.pki(pki_files::REGISTER_CERT),
                self.pki(pki_files::REGISTER_KEY),
            )
            .device_id(device_id)
            .namespace("default")
            .label("site", "lab")
            .runtime(runtime)
            .timing(
                AgentTiming::default()
                    .with_config_wait(Duration::from_secs(1))
                    .with_retry(Duration::from_millis(50), Duration::from_millis(500)),
            )
            .enrolment_config(AgentConfig {
                backoff: Backoff {
                    initial: time::Duration::milliseconds(50),
                    max: time::Duration::milliseconds(500),
                },
                ..AgentConfig::default()
            })
    }
}

/// An agent running in a task.
pub struct RunningAgent {
    pub handle: AgentHandle,
    pub events: broadcast::Receiver<AgentEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), flotta_agent_lib::AgentError>>,
}

impl RunningAgent {
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

    /// Stops the agent and checks it ended cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .expect("agent task")
            .expect("agent ends without error");
    }
}

/// Polls `check` until it returns `Some`, for up to 30 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

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
    options.initial_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_millis(400);
    options.stop_grace = Duration::from_secs(2);
    Arc::new(
        flotta_agent_lib::ProcessRuntime::open(options)
            .await
            .expect("process runtime opens"),
    )
}
