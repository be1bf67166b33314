//! A real Prometheus server for the metrics tests: Debian's `prometheus` package
//! (2.42 in bookworm), started on a free loopback port with its storage in a
//! temporary directory and the remote-write receiver on
//! (`--web.enable-remote-write-receiver`).
//!
//! Tests that need it are marked `#[ignore = "needs Prometheus ..."]`, so a plain
//! `cargo test` reports them ignored, never passed; `scripts/test.sh` installs the
//! package (scripts/prepare.sh) and runs the ignored tests. On CI (`CI=true`), a
//! missing binary is a failure: see [`require_in_ci`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::postgres::on_ci;
use crate::wait::eventually_within;

/// The environment variable naming another `prometheus` binary than the one on
/// `PATH`.
pub const BINARY_VARIABLE: &str = "FLOTTA_TEST_PROMETHEUS";

const HOW_TO: &str = "install it with `apt-get install prometheus` (scripts/prepare.sh does) \
     or name a binary in FLOTTA_TEST_PROMETHEUS";

/// The `prometheus` binary, if there is one.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_VARIABLE).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

/// Fails on CI when no `prometheus` binary is found, so that the ignored
/// Prometheus tests cannot go unrun there unnoticed.
pub fn require_in_ci() {
    if on_ci() && binary().is_none() {
        panic!("CI=true but no prometheus binary: the metrics tests would be skipped; {HOW_TO}");
    }
}

/// A Prometheus process; killed when dropped.
pub struct Prometheus {
    dir: tempfile::TempDir,
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus and waits until it is ready; panics saying how to install
    /// it when there is no binary.
    pub async fn start() -> Prometheus {
        let Some(binary) = binary() else {
            panic!("no prometheus binary: this test needs Prometheus; {HOW_TO}");
        };
        let dir = tempfile::tempdir().expect("Prometheus directory");
        std::fs::write(
            dir.path().join("prometheus.yml"),
            "global:\n  scrape_interval: 1m\n",
        )
        .expect("Prometheus configuration");
        // Prometheus cannot be handed a bound socket: take a free port and give
        // it back just before Prometheus binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut prometheus = Prometheus {
            dir,
            binary,
            port,
            child: None,
            http: reqwest::Client::builder()
                .use_preconfigured_tls(
                    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("TLS versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        };
        prometheus.start_again().await;
        prometheus
    }

    /// The remote-write endpoint: `http://127.0.0.1:PORT/api/v1/write`.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base())
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log (standard output and error of every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Starts it (again) on the same port and storage, and waits until it is ready.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "Prometheus already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("prometheus.log"))
            .expect("log file");
        let child = Command::new(&self.binary)
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        self.child = Some(child);
        let ready = format!("{}/-/ready", self.base());
        eventually_within("Prometheus ready", Duration::from_secs(60), || async {
            let response = self.http.get(&ready).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    /// Stops it as an operator would (SIGTERM: it flushes its storage) and waits
    /// for the process to end.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let ended = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        if ended.is_err() {
            let _ = child.kill().await;
        }
    }

    /// The instant vector a PromQL query gives now: each series' labels and value.
    /// `None` when Prometheus does not answer or the query fails.
    pub async fn query(&self, promql: &str) -> Option<Vec<(BTreeMap<String, String>, f64)>> {
        let response = self
            .http
            .get(format!("{}/api/v1/query", self.base()))
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        if body["status"] != "success" {
            return None;
        }
        body["data"]["result"]
            .as_array()?
            .iter()
            .map(|series| {
                let labels = series["metric"]
                    .as_object()?
                    .iter()
                    .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect::<Option<BTreeMap<_, _>>>()?;
                let value = series["value"][1].as_str()?.parse().ok()?;
                Some((labels, value))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
