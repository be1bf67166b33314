//! A real S3-compatible server for the data upload tests: moto's server mode
//! (`moto_server`, the `moto[server]` package from PyPI, installed by
//! `scripts/prepare.sh` into `~/.cache/flotta-rs/venv-s3`). moto speaks S3's REST
//! protocol over plain HTTP, multipart uploads included, keeps everything in
//! memory and starts in about a second, which suits a test; MinIO and Ceph are not
//! in the registries this project installs from.
//!
//! Tests that need it are marked `#[ignore = "needs moto ..."]`, so a plain
//! `cargo test` reports them ignored, never passed; `scripts/test.sh` installs it
//! and runs the ignored tests. On CI (`CI=true`), a missing `moto_server` is a
//! failure: see [`require_in_ci`].
//!
//! [`CutProxy`] sits between a client and the server and can cut every
//! connection on demand, to interrupt an upload half-way.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::postgres::on_ci;
use crate::wait::eventually_within;

/// The environment variable naming another `moto_server` than the one found.
pub const BINARY_VARIABLE: &str = "FLOTTA_TEST_MOTO_SERVER";
/// The credentials the tests use (moto accepts any).
pub const ACCESS_KEY_ID: &str = "flotta-test";
/// The secret of [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "flotta-test-secret";
/// The region the tests sign for.
pub const REGION: &str = "us-east-1";

const HOW_TO: &str = "run scripts/prepare.sh (it installs moto[server] into \
     ~/.cache/flotta-rs/venv-s3) or name a moto_server in FLOTTA_TEST_MOTO_SERVER";

/// The `moto_server` program, if there is one (the variable, the project's venv,
/// then `PATH`).
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_VARIABLE).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let venv = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/flotta-rs/venv-s3/bin/moto_server"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    venv.into_iter()
        .chain(std::env::split_paths(&path).map(|dir| dir.join("moto_server")))
        .find(|candidate| candidate.is_file())
}

/// Fails on CI when there is no `moto_server`, so that the ignored S3 tests
/// cannot go unrun there unnoticed.
pub fn require_in_ci() {
    if on_ci() && binary().is_none() {
        panic!("CI=true but no moto_server: the data upload tests would be skipped; {HOW_TO}");
    }
}

/// A moto server; killed when dropped.
pub struct S3Server {
    _dir: tempfile::TempDir,
    port: u16,
    _child: Child,
    http: reqwest::Client,
    credentials: Credentials,
}

impl S3Server {
    /// Starts moto on a free loopback port and waits until it answers; panics
    /// saying how to install it when there is none.
    pub async fn start() -> S3Server {
        let Some(binary) = binary() else {
            panic!("no moto_server: this test needs an S3 server; {HOW_TO}");
        };
        let dir = tempfile::tempdir().expect("moto directory");
        // moto cannot be handed a bound socket: take a free port and give it back
        // just before moto binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log file");
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server starts");
        let server = S3Server {
            _dir: dir,
            port,
            _child: child,
            http: reqwest::Client::builder()
                .use_preconfigured_tls(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("TLS versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            credentials: Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY),
        };
        let base = server.endpoint();
        eventually_within("moto answering", Duration::from_secs(60), || async {
            let response = server.http.get(&base).send().await.ok()?;
            (!response.status().is_server_error()).then_some(())
        })
        .await;
        server
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn bucket(&self, name: &str) -> Bucket {
        Bucket::new(
            self.endpoint().parse().expect("endpoint"),
            UrlStyle::Path,
            name.to_owned(),
            REGION,
        )
        .expect("bucket")
    }

    /// Creates bucket `name`.
    pub async fn create_bucket(&self, name: &str) {
        let bucket = self.bucket(name);
        let url = bucket
            .create_bucket(&self.credentials)
            .sign(Duration::from_secs(60));
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }

    /// The keys and sizes of the objects in bucket `name`; `None` when moto does
    /// not answer.
    pub async fn objects(&self, name: &str) -> Option<Vec<(String, u64)>> {
        let bucket = self.bucket(name);
        let url =
            ListObjectsV2::new(&bucket, Some(&self.credentials)).sign(Duration::from_secs(60));
        let response = self.http.get(url).send().await.ok()?;
        let text = response.text().await.ok()?;
        let list = ListObjectsV2::parse_response(&text).ok()?;
        Some(
            list.contents
                .into_iter()
                .map(|object| (object.key, object.size))
                .collect(),
        )
    }

    /// The content of object `key` in bucket `name`.
    pub async fn get(&self, name: &str, key: &str) -> Vec<u8> {
        let bucket = self.bucket(name);
        let url = bucket
            .get_object(Some(&self.credentials), key)
            .sign(Duration::from_secs(60));
        let response = self.http.get(url).send().await.expect("get object");
        assert!(
            response.status().is_success(),
            "get {key}: {}",
            response.status()
        );
        response.bytes().await.expect("object body").to_vec()
    }
}

/// A TCP relay to a loopback port that can cut every connection and refuse new
/// ones until restored.
pub struct CutProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Relays connections on a free loopback port to `127.0.0.1:target`.
    pub async fn start(target: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0u64);
        let task = {
            let cut = cut.clone();
            let cuts = cuts.clone();
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let mut cutting = cuts.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cutting.changed() => {}
                        }
                    });
                }
            })
        };
        CutProxy {
            port,
            cut,
            cuts,
            task,
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
