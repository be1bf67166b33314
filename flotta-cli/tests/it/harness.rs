//! A real flotta server on a background runtime, and `flotta` commands aimed at it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use flotta_client::ManagementClient;
use flotta_server::app::{self, RunningServer};
use flotta_server::config::ServerConfig;

/// A server in this process; `flotta` runs as a child process against it.
pub struct CliServer {
    runtime: tokio::runtime::Runtime,
    running: Option<RunningServer>,
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
        let mut config = ServerConfig::with_data_dir(dir.path().join("flotta-data"));
        config.api_listen = "127.0.0.1:0".parse().expect("address");
        config.edge_listen = "127.0.0.1:0".parse().expect("address");
        let running = runtime.block_on(app::start(config)).expect("server starts");
        CliServer {
            runtime,
            running: Some(running),
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

    /// Stops the server; its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            self.runtime.block_on(running.shutdown());
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
