//! A real flotta server on a background runtime, and `flotta` commands aimed at it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use flotta_client::ManagementClient;
use flotta_testing::TestServer;

/// The shared test server on a runtime of its own (the tests are synchronous);
/// `flotta` runs as a child process against it.
pub struct CliServer {
    runtime: tokio::runtime::Runtime,
    server: Option<TestServer>,
    dir: tempfile::TempDir,
}

impl CliServer {
    /// Starts a server whose data directory is `<temp>/flotta-data`.
    pub fn start() -> CliServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = runtime.block_on(
            TestServer::builder()
                .data_dir(dir.path().join("flotta-data"))
                .start(),
        );
        CliServer {
            runtime,
            server: Some(server),
            dir,
        }
    }

    /// The directory holding `flotta-data/`.
    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `flotta-data/admin.yaml`.
    pub fn admin_yaml(&self) -> PathBuf {
        self.dir.path().join("flotta-data").join("admin.yaml")
    }

    /// A `flotta` command configured through `FLOTTA_CONFIG`.
    pub fn flotta(&self) -> Command {
        let mut command = flotta();
        command.env("FLOTTA_CONFIG", self.admin_yaml());
        command
    }

    /// Runs a client call on the server's runtime.
    pub fn with_client<T>(&self, call: impl AsyncFnOnce(ManagementClient) -> T) -> T {
        let client = ManagementClient::from_config_file(self.admin_yaml()).expect("client");
        self.runtime.block_on(call(client))
    }

    /// Runs a real agent for `device_id` against the server, with `runtime` and its
    /// state in `state_dir`, on the server's runtime.
    pub fn spawn_agent(
        &self,
        device_id: &str,
        state_dir: &Path,
        runtime: std::sync::Arc<dyn flotta_agent_lib::WorkloadRuntime>,
    ) -> flotta_testing::agent::RunningAgent {
        let server = self.server.as_ref().expect("the server runs");
        let agent = server.agent(device_id, state_dir, runtime);
        let _inside = self.runtime.enter();
        flotta_testing::agent::RunningAgent::spawn(agent)
    }

    /// Runs `future` on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Starts agents (in-memory runtime, one-second heartbeats) for `devices` on the
    /// server's runtime and waits until they are registered; they run until the
    /// returned agents are dropped with the server.
    pub fn agents(&self, devices: &[&str]) -> Vec<flotta_testing::agent::RunningAgent> {
        let server = self.server.as_ref().expect("server running");
        self.runtime.block_on(async {
            let mut agents = Vec::new();
            for device in devices {
                let state = self.dir.path().join(format!("agent-{device}"));
                let runtime = std::sync::Arc::new(flotta_agent_lib::MemoryRuntime::new());
                let mut agent = flotta_testing::agent::RunningAgent::spawn(
                    server.agent(device, &state, runtime),
                );
                agent
                    .wait_for("Registered", |e| {
                        matches!(e, flotta_agent_lib::AgentEvent::Registered)
                    })
                    .await;
                server
                    .management_client()
                    .patch::<flotta_core::model::EdgeDevice>(
                        "default",
                        device,
                        &serde_json::json!({"spec": {"heartbeat": {"periodSeconds": 1}}}),
                    )
                    .await
                    .expect("device patched");
                agents.push(agent);
            }
            agents
        })
    }

    /// Stops the server; its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

impl Drop for CliServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `flotta` command with no configuration from the environment.
pub fn flotta() -> Command {
    let mut command = Command::cargo_bin("flotta").expect("flotta binary");
    command.env_remove("FLOTTA_CONFIG");
    command
}

/// Writes `text` to `name` under `dir` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
}

/// A device set, a workload and an enrolment request.
pub const FLEET: &str = "\
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSet
metadata:
  name: lab
  labels:
    site: lab
spec:
  selector:
    matchLabels:
      site: lab
---
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: web
spec:
  type: pod
  deviceSelector:
    matchLabels:
      site: lab
  pod:
    spec:
      containers:
      - name: web
        image: quay.io/org/web:1
---
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSignedRequest
metadata:
  name: edge-09
  labels:
    batch: one
spec:
  targetNamespace: default
  approved: false
";

/// Standard output of a successful command.
pub fn stdout_of(command: &mut Command) -> String {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}
