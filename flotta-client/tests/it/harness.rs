//! A real flotta server in this process, on loopback ports chosen by the OS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotta_client::{ManagementClient, RetryPolicy};
use flotta_server::app::{self, RunningServer};
use flotta_server::config::ServerConfig;

/// A running server over a temporary data directory.
pub struct TestServer {
    running: Option<RunningServer>,
    config: ServerConfig,
    _dir: tempfile::TempDir,
}

/// A retry policy quick enough for tests.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    }
}

impl TestServer {
    /// A server with SQLite in a fresh directory.
    pub async fn start() -> TestServer {
        Self::start_approving(true).await
    }

    /// A server that approves enrolling devices itself, or waits for an operator.
    pub async fn start_approving(auto_approve: bool) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = ServerConfig::with_data_dir(dir.path());
        config.api_listen = "127.0.0.1:0".parse().expect("address");
        config.edge_listen = "127.0.0.1:0".parse().expect("address");
        config.auto_approve = auto_approve;
        let running = app::start(config.clone()).await.expect("server starts");
        TestServer {
            running: Some(running),
            config,
            _dir: dir,
        }
    }

    fn running(&self) -> &RunningServer {
        self.running.as_ref().expect("server running")
    }

    /// Path of the admin.yaml the server wrote.
    pub fn admin_yaml(&self) -> PathBuf {
        self.running().admin_config_path().to_owned()
    }

    /// Address of the management API.
    pub fn api_addr(&self) -> SocketAddr {
        self.running().api_addr()
    }

    /// A management client built from admin.yaml, with quick retries.
    pub fn client(&self) -> ManagementClient {
        let admin = self.running().admin_config();
        ManagementClient::builder(admin.server.clone())
            .token(admin.token.clone())
            .ca_pem(admin.certificate_authority.clone())
            .retry_policy(quick_retries())
            .build()
            .expect("client builds")
    }

    /// The server's store, for what the API does not expose (compaction).
    pub fn store(&self) -> std::sync::Arc<dyn flotta_server::store::Store> {
        self.running().store()
    }

    /// Stops the server (its ports are released).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// Starts the server again over the same data, on the same ports.
    pub async fn start_again(&mut self, api: SocketAddr, edge: SocketAddr) {
        self.config.api_listen = api;
        self.config.edge_listen = edge;
        let mut attempts = 0;
        loop {
            match app::start(self.config.clone()).await {
                Ok(running) => {
                    self.running = Some(running);
                    return;
                }
                Err(error) if attempts < 50 => {
                    attempts += 1;
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("server restarts: {error}"),
            }
        }
    }

    /// The data directory (PKI files under `pki/`).
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Base URL of the Edge API, as written in admin.yaml.
    pub fn edge_url(&self) -> String {
        self.running().admin_config().edge_server.clone()
    }

    /// Address of the Edge API.
    pub fn edge_addr(&self) -> SocketAddr {
        self.running().edge_addr()
    }
}

/// An EdgeDevice with labels.
pub fn device(name: &str, labels: &[(&str, &str)]) -> flotta_core::model::EdgeDevice {
    let mut device = flotta_core::model::EdgeDevice::new(name, Default::default());
    device.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    device
}
