//! The real server, in the test's process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::{Agent, AgentBuilder, WorkloadRuntime};
use flotta_client::ManagementClient;
use flotta_core::pki::BuiltinCa;
use flotta_server::app::{self, RunningServer, pki_files};
use flotta_server::config::{DatabaseUrl, ServerConfig};
use flotta_server::edge::{BASE_PATH, EdgeState};
use flotta_server::store::{Store, TokenRole};
use flotta_server::tokens::AdminConfig;
use reqwest::{Method, RequestBuilder};
use time::OffsetDateTime;

use crate::identity::{self, ClientIdentity};
use crate::{NAMESPACE, eventually, quick};

/// Where a test server keeps its state.
#[derive(Debug, Clone)]
pub enum Database {
    /// SQLite in the data directory (the default).
    Sqlite,
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

impl Database {
    /// A fresh database of its own in the PostgreSQL test cluster; panics when none
    /// is configured (see [`crate::postgres`]).
    pub async fn fresh_postgres() -> Database {
        Database::Postgres(crate::postgres::fresh_database().await)
    }
}

/// The configuration tests use: loopback, port 0, data in `dir`, `database`.
pub fn test_config(dir: &Path, database: &Database) -> ServerConfig {
    let mut config = ServerConfig::with_data_dir(dir);
    config.api_listen = "127.0.0.1:0".parse().expect("address");
    config.edge_listen = "127.0.0.1:0".parse().expect("address");
    if let Database::Postgres(url) = database {
        config.database = DatabaseUrl::Postgres(url.clone());
    }
    config
}

/// How to start a [`TestServer`]; [`TestServer::builder`] makes one.
#[derive(Debug)]
pub struct TestServerBuilder {
    database: Database,
    data_dir: Option<PathBuf>,
    auto_approve: bool,
    cert_lifetime: Option<Duration>,
    superseded_grace: Option<Duration>,
    event_retention: Option<flotta_core::events::EventRetention>,
    leader_lease: Option<Duration>,
    oidc: Vec<flotta_server::oidc::OidcIssuerConfig>,
    gitops_file_repositories: bool,
}

impl TestServerBuilder {
    /// Keeps at most `max_events` events, each for `max_age` after it last
    /// happened (10,000 and one hour by default).
    pub fn event_retention(mut self, max_events: usize, max_age: Duration) -> Self {
        self.event_retention = Some(flotta_core::events::EventRetention {
            max_events,
            max_age,
        });
        self
    }

    /// Keeps the data in `database` (SQLite by default).
    pub fn database(mut self, database: Database) -> Self {
        self.database = database;
        self
    }

    /// Keeps the data directory at `dir` (a temporary directory by default, removed
    /// with the server).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Approves enrolling devices at once (the default) or waits for an operator.
    pub fn auto_approve(mut self, auto_approve: bool) -> Self {
        self.auto_approve = auto_approve;
        self
    }

    /// Issues device certificates valid for `lifetime` (90 days by default).
    pub fn cert_lifetime(mut self, lifetime: Duration) -> Self {
        self.cert_lifetime = Some(lifetime);
        self
    }

    /// Keeps a renewed device's previous certificate working for `grace` (ten
    /// minutes by default).
    pub fn superseded_grace(mut self, grace: Duration) -> Self {
        self.superseded_grace = Some(grace);
        self
    }

    /// Time to live of the leader lease (15 s by default).
    pub fn leader_lease(mut self, ttl: Duration) -> Self {
        self.leader_lease = Some(ttl);
        self
    }

    /// Lets `Repository` objects name `file://` URLs (off by default, as in the
    /// server).
    pub fn gitops_file_repositories(mut self, allow: bool) -> Self {
        self.gitops_file_repositories = allow;
        self
    }

    /// Trusts the JWTs of `issuer` besides the server's own tokens.
    pub fn oidc(mut self, issuer: flotta_server::oidc::OidcIssuerConfig) -> Self {
        self.oidc.push(issuer);
        self
    }

    /// Starts the server.
    pub async fn start(self) -> TestServer {
        let (dir, path) = match self.data_dir {
            Some(path) => (None, path),
            None => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let path = dir.path().to_owned();
                (Some(dir), path)
            }
        };
        let mut config = test_config(&path, &self.database);
        config.auto_approve = self.auto_approve;
        if let Some(lifetime) = self.cert_lifetime {
            config.cert_lifetime = lifetime;
        }
        if let Some(grace) = self.superseded_grace {
            config.superseded_certificate_grace = grace;
        }
        if let Some(retention) = self.event_retention {
            config.event_retention = retention;
        }
        if let Some(ttl) = self.leader_lease {
            config.leader_lease = ttl;
        }
        config.oidc = self.oidc;
        config.gitops_file_repositories = self.gitops_file_repositories;
        let mut server = TestServer::start_with(config).await;
        server._dir = dir;
        server
    }
}

/// The whole server (management API, Edge API over mutual TLS, store, built-in CA)
/// running in this process on loopback ports chosen by the OS.
pub struct TestServer {
    server: Option<RunningServer>,
    config: ServerConfig,
    ca: Arc<BuiltinCa>,
    /// Keeps a temporary data directory alive.
    _dir: Option<tempfile::TempDir>,
    /// A client of the management API trusting the server's CA.
    pub client: reqwest::Client,
    /// The management API's base URL, `https://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token from admin.yaml.
    pub admin_token: String,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("server", &self.server)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// How to start a server: SQLite in a temporary directory and auto-approval
    /// unless told otherwise.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            database: Database::Sqlite,
            data_dir: None,
            auto_approve: true,
            cert_lifetime: None,
            superseded_grace: None,
            event_retention: None,
            leader_lease: None,
            oidc: Vec::new(),
            gitops_file_repositories: false,
        }
    }

    /// A server over a fresh SQLite database.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    /// A server over a fresh database of the given backend.
    pub async fn start_on(database: Database) -> TestServer {
        Self::builder().database(database).start().await
    }

    /// A server with exactly this configuration (its data directory is the caller's).
    pub async fn start_with(config: ServerConfig) -> TestServer {
        let running = app::start(config.clone()).await.expect("server starts");
        let ca = server_ca(&config);
        let admin = running.admin_config().clone();
        TestServer {
            client: identity::tls_client(&admin.certificate_authority, None),
            base: admin.server,
            admin_token: admin.token,
            server: Some(running),
            config,
            ca: Arc::new(ca),
            _dir: None,
        }
    }

    /// The running server.
    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    /// The Edge API's state (its waiting-device count and config view).
    pub fn edge(&self) -> &EdgeState {
        self.running().edge()
    }

    /// The server's store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.running().store()
    }

    /// The server's CA.
    pub fn ca(&self) -> &Arc<BuiltinCa> {
        &self.ca
    }

    /// What the server wrote to admin.yaml.
    pub fn admin_config(&self) -> &AdminConfig {
        self.running().admin_config()
    }

    /// The path of admin.yaml.
    pub fn admin_yaml(&self) -> PathBuf {
        self.running().admin_config_path().to_owned()
    }

    /// The server's configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The data directory (PKI files under `pki/`).
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The address of the management API.
    pub fn api_addr(&self) -> SocketAddr {
        self.running().api_addr()
    }

    /// The address of the Edge API.
    pub fn edge_addr(&self) -> SocketAddr {
        self.running().edge_addr()
    }

    /// The Edge API's base URL as admin.yaml gives it, `https://127.0.0.1:PORT`.
    pub fn edge_server(&self) -> String {
        self.admin_config().edge_server.clone()
    }

    /// The URL of `path` under the Edge API's base path.
    pub fn edge_url(&self, path: &str) -> String {
        format!("{}{BASE_PATH}{path}", self.admin_config().edge_server)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.admin_config().certificate_authority.clone()
    }

    /// A management client built from admin.yaml's values, with quick retries.
    pub fn management_client(&self) -> ManagementClient {
        let admin = self.admin_config();
        ManagementClient::builder(admin.server.clone())
            .token(admin.token.clone())
            .ca_pem(admin.certificate_authority.clone())
            .retry_policy(quick::retries())
            .build()
            .expect("client builds")
    }

    /// A new token with `role`.
    pub async fn token(&self, role: TokenRole) -> String {
        self.store()
            .create_token(role, "test")
            .await
            .expect("token")
            .secret
    }

    /// A request to the management API's `path` with the admin token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.with_token(method, path, &self.admin_token)
    }

    /// A request to the management API's `path` with `token`.
    pub fn with_token(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    /// The fleet registration identity the server wrote to `pki/`.
    pub fn registration_identity(&self) -> ClientIdentity {
        identity::registration_identity_in(self.data_dir())
    }

    /// A valid device certificate for `id` in `namespace`, issued by the server's CA
    /// without enrolment (the device need not exist).
    pub fn device_identity(&self, id: &str, namespace: &str) -> ClientIdentity {
        identity::issue_device(
            self.ca.as_ref(),
            id,
            namespace,
            OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )
    }

    /// A device certificate for `id` from the server's CA that expired a day ago.
    pub fn expired_device_identity(&self, id: &str, namespace: &str) -> ClientIdentity {
        identity::issue_expired_device(self.ca.as_ref(), id, namespace)
    }

    /// An Edge API client trusting the server's CA and presenting `identity` (or no
    /// certificate).
    pub fn edge_client(&self, identity: Option<&ClientIdentity>) -> reqwest::Client {
        identity::tls_client(&self.ca_pem(), identity)
    }

    /// Enrols `id` in [`NAMESPACE`] and registers it over the Edge API with the
    /// registration identity (the server must approve at once); returns the device
    /// identity it was issued.
    pub async fn enrol_and_register(&self, id: &str) -> ClientIdentity {
        identity::enrol_and_register(
            &self.edge_server(),
            &self.ca_pem(),
            &self.registration_identity(),
            id,
        )
        .await
    }

    /// An agent builder for `device_id` in [`NAMESPACE`] (label `site=lab`) aimed at
    /// this server, with the registration identity and quick timers; the caller adds
    /// a state directory or store and builds.
    pub fn agent_builder(
        &self,
        device_id: &str,
        runtime: Arc<dyn WorkloadRuntime>,
    ) -> AgentBuilder {
        crate::agent::agent_builder(
            &self.edge_server(),
            &self.ca_pem(),
            &self.registration_identity(),
            device_id,
            runtime,
        )
    }

    /// An agent for `device_id` keeping its state in `state_dir`, as
    /// [`TestServer::agent_builder`] makes it.
    pub fn agent(
        &self,
        device_id: &str,
        state_dir: &Path,
        runtime: Arc<dyn WorkloadRuntime>,
    ) -> Agent {
        self.agent_builder(device_id, runtime)
            .state_dir(state_dir)
            .build()
            .expect("agent builds")
    }

    /// Approves the pending enrolment of `device_id` as an operator would.
    pub async fn approve(&self, device_id: &str) {
        self.management_client()
            .patch::<flotta_core::model::EdgeDeviceSignedRequest>(
                NAMESPACE,
                device_id,
                &serde_json::json!({"spec": {"approved": true}}),
            )
            .await
            .expect("signed request approved");
    }

    /// Stops the server, keeping its data and remembering its ports for
    /// [`TestServer::start_again`].
    pub async fn stop_keeping_data(&mut self) {
        if let Some(server) = self.server.take() {
            self.config.api_listen = server.api_addr();
            self.config.edge_listen = server.edge_addr();
            server.shutdown().await;
        }
    }

    /// Starts the server again over the same data and on the same ports, after
    /// [`TestServer::stop_keeping_data`].
    pub async fn start_again(&mut self) {
        assert!(self.server.is_none(), "the server is still running");
        let config = self.config.clone();
        // The old listeners are closed, but the OS may not hand their ports out again
        // at once: retry the bind.
        let running = eventually("the server to start again on its ports", || {
            let config = config.clone();
            async move { app::start(config).await.ok() }
        })
        .await;
        let admin = running.admin_config().clone();
        self.client = identity::tls_client(&admin.certificate_authority, None);
        self.base = admin.server;
        self.admin_token = admin.token;
        self.server = Some(running);
        // A CA rotation between the stop and the start changes the CA.
        self.ca = Arc::new(server_ca(&self.config));
    }

    /// Stops the server and starts it again over the same data (on new ports unless
    /// the configuration names them).
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let running = app::start(self.config.clone())
            .await
            .expect("server restarts");
        let admin = running.admin_config().clone();
        self.client = identity::tls_client(&admin.certificate_authority, None);
        self.base = admin.server;
        self.admin_token = admin.token;
        self.server = Some(running);
        // A CA rotation between the stop and the start changes the CA.
        self.ca = Arc::new(server_ca(&self.config));
    }

    /// Starts another replica of this server: the same database, settings and
    /// PKI (copied into a data directory of its own), on new loopback ports.
    /// Replicas share a PostgreSQL database; an SQLite file has one server.
    pub async fn replica(&self) -> TestServer {
        assert!(
            matches!(self.config.database, DatabaseUrl::Postgres(_)),
            "replicas share a PostgreSQL database"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let pki = dir.path().join("pki");
        std::fs::create_dir_all(&pki).expect("pki directory");
        for entry in std::fs::read_dir(self.config.pki_dir()).expect("read pki") {
            let entry = entry.expect("pki entry");
            std::fs::copy(entry.path(), pki.join(entry.file_name())).expect("copy PKI file");
        }
        let mut config = self.config.clone();
        config.data_dir = dir.path().to_owned();
        config.api_listen = "127.0.0.1:0".parse().expect("address");
        config.edge_listen = "127.0.0.1:0".parse().expect("address");
        let mut replica = TestServer::start_with(config).await;
        replica._dir = Some(dir);
        replica
    }

    /// Ends the server as a crash would ([`RunningServer::abort`]): nothing is
    /// handed over, its leader lease runs out on its own.
    pub fn kill(mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// The CA the server signs with, read from its data directory.
fn server_ca(config: &ServerConfig) -> BuiltinCa {
    let pki = |name: &str| {
        std::fs::read_to_string(config.pki_dir().join(name)).expect("PKI file readable")
    };
    BuiltinCa::from_pem(&pki(pki_files::CA_CERT), &pki(pki_files::CA_KEY)).expect("the server's CA")
}

/// A reqwest client whose only trust anchor is `ca_pem`.
pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    identity::tls_client(ca_pem, None)
}
