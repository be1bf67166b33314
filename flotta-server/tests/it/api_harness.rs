//! Running the whole server in-process over real TLS, and a reqwest client that
//! trusts its CA.

use std::path::Path;
use std::sync::Arc;

use flotta_server::app::{self, RunningServer};
use flotta_server::config::ServerConfig;
use flotta_server::store::TokenRole;
use flotta_server::tokens::AdminConfig;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

/// Where a test server keeps its state.
pub enum Database {
    /// SQLite in the data directory (the default).
    Sqlite,
    /// A PostgreSQL database of the test's own.
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl Database {
    /// SQLite, or PostgreSQL for `postgres`; `None` (after a skip line) when
    /// PostgreSQL is asked for and FLOTTA_TEST_POSTGRES_URL is not set.
    pub async fn for_backend(postgres: bool) -> Option<Database> {
        if !postgres {
            return Some(Database::Sqlite);
        }
        #[cfg(feature = "postgres")]
        {
            match crate::store_harness::Backend::postgres().await? {
                crate::store_harness::Backend::Postgres { url } => Some(Database::Postgres(url)),
                crate::store_harness::Backend::Sqlite { .. } => None,
            }
        }
        #[cfg(not(feature = "postgres"))]
        {
            println!("skipped: built without the postgres feature");
            None
        }
    }
}

/// A server running in this process on loopback ports chosen by the OS.
pub struct TestServer {
    server: Option<RunningServer>,
    config: ServerConfig,
    /// Keeps the data directory alive.
    _dir: Option<tempfile::TempDir>,
    /// A client trusting the server's CA.
    pub client: reqwest::Client,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token from admin.yaml.
    pub admin_token: String,
}

/// The server configuration tests use: loopback, port 0, data in `dir`.
pub fn test_config(dir: &Path, database: &Database) -> ServerConfig {
    let mut config = ServerConfig::with_data_dir(dir);
    config.api_listen = "127.0.0.1:0".parse().expect("addr");
    config.edge_listen = "127.0.0.1:0".parse().expect("addr");
    match database {
        Database::Sqlite => {}
        #[cfg(feature = "postgres")]
        Database::Postgres(url) => {
            config.database = flotta_server::config::DatabaseUrl::Postgres(url.clone());
        }
    }
    config
}

impl TestServer {
    /// A server over a fresh SQLite database.
    pub async fn start() -> TestServer {
        Self::start_on(Database::Sqlite).await
    }

    /// A server over a fresh database of the given backend.
    pub async fn start_on(database: Database) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = test_config(dir.path(), &database);
        let mut server = Self::start_with(config).await;
        server._dir = Some(dir);
        server
    }

    /// A server with this configuration.
    pub async fn start_with(config: ServerConfig) -> TestServer {
        let running = app::start(config.clone()).await.expect("server starts");
        let admin = running.admin_config().clone();
        TestServer {
            client: client_trusting(&admin.certificate_authority),
            base: admin.server.clone(),
            admin_token: admin.token.clone(),
            server: Some(running),
            config,
            _dir: None,
        }
    }

    /// The running server.
    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    /// Stops the server and starts it again over the same data (new ports).
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let running = app::start(self.config.clone())
            .await
            .expect("server restarts");
        let admin = running.admin_config().clone();
        self.client = client_trusting(&admin.certificate_authority);
        self.base = admin.server.clone();
        self.admin_token = admin.token.clone();
        self.server = Some(running);
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// A new token with `role`.
    pub async fn token(&self, role: TokenRole) -> String {
        self.running()
            .store()
            .create_token(role, "test")
            .await
            .expect("token")
            .secret
    }

    /// A request to `path` with the admin token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.with_token(method, path, &self.admin_token)
    }

    /// A request to `path` with `token`.
    pub fn with_token(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }
}

/// A reqwest client whose only trust anchor is `ca_pem`.
pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(certificate.expect("CA PEM"))
            .expect("CA certificate accepted");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client")
}

/// A client configured only from an admin.yaml file, as the CLI does.
pub fn client_from_admin_yaml(path: &Path) -> (reqwest::Client, AdminConfig) {
    let text = std::fs::read_to_string(path).expect("admin.yaml readable");
    let config: AdminConfig = serde_yaml_ng::from_str(&text).expect("admin.yaml parses");
    (client_trusting(&config.certificate_authority), config)
}

/// The collection path of a kind in a namespace.
pub fn collection(namespace: &str, plural: &str) -> String {
    format!("/apis/management.project-flotta.io/v1alpha1/namespaces/{namespace}/{plural}")
}

/// The path of one object.
pub fn object_path(namespace: &str, plural: &str, name: &str) -> String {
    format!("{}/{name}", collection(namespace, plural))
}

/// Reads a JSON response after checking its status code.
pub async fn expect_json(response: Response, code: StatusCode) -> Value {
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, code, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The names of the objects of one kind in `namespace`, as the management API at
/// `server` lists them.
pub async fn list_names(
    client: &reqwest::Client,
    server: &str,
    token: &str,
    namespace: &str,
    plural: &str,
) -> std::collections::BTreeSet<String> {
    let list = expect_json(
        client
            .get(format!("{server}{}", collection(namespace, plural)))
            .bearer_auth(token)
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["metadata"]["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Checks that a response is a Kubernetes `Status` failure with `code` and
/// `reason`, and returns it.
pub async fn expect_status(response: Response, code: StatusCode, reason: &str) -> Value {
    let status = expect_json(response, code).await;
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["apiVersion"], "v1", "{status}");
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["code"], code.as_u16(), "{status}");
    assert_eq!(status["reason"], reason, "{status}");
    assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()));
    status
}

/// A minimal valid object of each kind: (plural, body).
pub fn sample_objects(name: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "edgedevices",
            serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": name, "labels": {"site": "lab"}},
                "spec": {"requestTime": "2024-05-01T10:00:00Z"},
            }),
        ),
        (
            "edgedevicesets",
            serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDeviceSet",
                "metadata": {"name": name},
                "spec": {"heartbeat": {"periodSeconds": 30}},
            }),
        ),
        (
            "edgeworkloads",
            serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeWorkload",
                "metadata": {"name": name},
                "spec": {
                    "type": "pod",
                    "deviceSelector": {"matchLabels": {"site": "lab"}},
                    "pod": {"spec": {"containers": [{"name": "app", "image": "quay.io/app:1"}]}},
                },
            }),
        ),
        (
            "edgedevicesignedrequests",
            serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDeviceSignedRequest",
                "metadata": {"name": name},
                "spec": {"targetNamespace": "fleet", "approved": false},
            }),
        ),
    ]
}
