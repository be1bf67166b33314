//! Start-up wiring: data directory, PKI files, store, both TLS listeners, and
//! graceful shutdown.
//!
//! [`start`] returns a [`RunningServer`] once both listeners are bound, so tests can
//! run the whole server in-process on port 0 and read the ports back.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use flotta_core::pki::{
    BuiltinCa, PkiError, issue_registration_certificate, issue_server_certificate,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, ApiState};
use crate::config::{DatabaseUrl, ServerConfig};
use crate::edge::{self, EdgeError, EdgeOptions, EdgeState, SharedCa};
use crate::metrics::Metrics;
use crate::store::{SqliteStore, Store, StoreError};
use crate::tokens::{ADMIN_CONFIG_KIND, AdminConfig, TokenError, ensure_admin_token};

/// Lifetime of the server's TLS certificate; it is reissued at start-up when less
/// than [`SERVER_CERT_RENEW_BEFORE`] remains.
pub const SERVER_CERT_LIFETIME: time::Duration = time::Duration::days(365);
/// How long before expiry the server certificate is reissued at start-up.
pub const SERVER_CERT_RENEW_BEFORE: time::Duration = time::Duration::days(30);
/// Lifetime of the fleet-wide registration certificate (baked into device images,
/// so long-lived).
pub const REGISTRATION_CERT_LIFETIME: time::Duration = time::Duration::days(5 * 365);
/// Time a client has to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers, also the idle time after which
/// a kept-alive connection without a new request is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for open requests before closing connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long start-up waits for PostgreSQL.
pub const DATABASE_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory cannot be created or written.
    #[error("data directory {path} is not usable")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PKI file cannot be read or written.
    #[error("cannot access {path}")]
    PkiFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PKI file holds something unusable, or issuing a certificate failed.
    #[error("PKI file {path} is unusable")]
    Pki {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PkiError,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path} holds no usable {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected there.
        what: &'static str,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration of the {listener} listener failed")]
    Tls {
        /// Which listener.
        listener: &'static str,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The database cannot be opened or reached.
    #[error("cannot open database {database}")]
    Database {
        /// The database (password hidden).
        database: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// PostgreSQL did not answer in time.
    #[error("database {database} did not answer within {seconds} s")]
    DatabaseTimeout {
        /// The database (password hidden).
        database: String,
        /// The time waited.
        seconds: u64,
    },
    /// This build has no PostgreSQL support.
    #[error("this build of flotta-server has no PostgreSQL support (feature `postgres`)")]
    PostgresUnsupported,
    /// A listener address cannot be bound (in use, not local, no permission).
    #[error("cannot listen for the {listener} on {addr}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin token or `admin.yaml` could not be set up.
    #[error("cannot set up the admin token")]
    AdminToken(#[from] TokenError),
    /// The Edge API could not be set up.
    #[error("cannot set up the Edge API")]
    Edge(#[from] EdgeError),
}

/// Writes a file readable by its owner only (mode 0600), atomically: a temporary
/// file is written, synced and renamed over the target.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let file_name = path.file_name().map_or_else(
        || "file".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        // Make the rename itself durable; failure here only weakens crash safety.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes a public file (a certificate) atomically with mode 0644.
fn write_public_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_private_file(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// The server's PKI as loaded from (or first written to) `DATA_DIR/pki`.
pub struct ServerPki {
    /// The built-in CA that signs device, registration and server certificates.
    pub ca: Arc<BuiltinCa>,
    /// `pki/ca.crt`, PEM.
    pub ca_pem: String,
    /// `pki/server.crt`, PEM.
    pub server_certificate_pem: String,
    /// `pki/server.key`, PEM.
    pub server_key_pem: String,
    /// `pki/register.crt`, PEM.
    pub registration_certificate_pem: String,
    /// `pki/register.key`, PEM.
    pub registration_key_pem: String,
    /// The `pki` directory.
    pub dir: PathBuf,
}

impl std::fmt::Debug for ServerPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// File names inside `DATA_DIR/pki`.
pub mod pki_files {
    /// CA certificate.
    pub const CA_CERT: &str = "ca.crt";
    /// CA private key.
    pub const CA_KEY: &str = "ca.key";
    /// Server TLS certificate.
    pub const SERVER_CERT: &str = "server.crt";
    /// Server TLS private key.
    pub const SERVER_KEY: &str = "server.key";
    /// Fleet-wide registration certificate.
    pub const REGISTER_CERT: &str = "register.crt";
    /// Registration private key.
    pub const REGISTER_KEY: &str = "register.key";
}

fn read_optional(path: &Path) -> Result<Option<String>, StartError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StartError::PkiFile {
            path: path.to_owned(),
            source,
        }),
    }
}

fn save_pair(
    cert_path: &Path,
    cert_pem: &str,
    key_path: &Path,
    key_pem: &str,
) -> Result<(), StartError> {
    write_private_file(key_path, key_pem.as_bytes()).map_err(|source| StartError::PkiFile {
        path: key_path.to_owned(),
        source,
    })?;
    write_public_file(cert_path, cert_pem.as_bytes()).map_err(|source| StartError::PkiFile {
        path: cert_path.to_owned(),
        source,
    })
}

/// The certificate's end of validity, when the PEM parses.
fn not_after(pem: &str) -> Option<OffsetDateTime> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    OffsetDateTime::from_unix_timestamp(certificate.validity().not_after.timestamp()).ok()
}

/// Loads the CA, server and registration certificates from `dir`, creating what is
/// missing. The server certificate is reissued when it is about to expire.
pub fn load_or_create_pki(
    dir: &Path,
    hostnames: &[String],
    now: OffsetDateTime,
) -> Result<ServerPki, StartError> {
    use pki_files::*;
    std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = |name: &str| dir.join(name);
    let pki_error = |name: &str| {
        let path = dir.join(name);
        move |source| StartError::Pki { path, source }
    };

    let (ca, ca_pem) = match (
        read_optional(&path(CA_CERT))?,
        read_optional(&path(CA_KEY))?,
    ) {
        (Some(cert), Some(key)) => {
            let ca = BuiltinCa::from_pem(&cert, &key).map_err(pki_error(CA_CERT))?;
            (ca, cert)
        }
        _ => {
            let ca = BuiltinCa::generate("flotta fleet CA", now).map_err(pki_error(CA_CERT))?;
            let (cert, key) = ca.to_pem();
            save_pair(&path(CA_CERT), &cert, &path(CA_KEY), &key)?;
            tracing::info!(path = %path(CA_CERT).display(), "created the fleet CA");
            (ca, cert)
        }
    };

    let hosts: Vec<&str> = hostnames.iter().map(String::as_str).collect();
    let (server_certificate_pem, server_key_pem) = match (
        read_optional(&path(SERVER_CERT))?,
        read_optional(&path(SERVER_KEY))?,
    ) {
        (Some(cert), Some(key))
            if not_after(&cert).is_some_and(|end| end - now > SERVER_CERT_RENEW_BEFORE) =>
        {
            (cert, key)
        }
        _ => {
            let issued = issue_server_certificate(&ca, &hosts, now, SERVER_CERT_LIFETIME)
                .map_err(pki_error(SERVER_CERT))?;
            let cert = issued.certificate.pem();
            let key = issued.key_pem().to_owned();
            save_pair(&path(SERVER_CERT), &cert, &path(SERVER_KEY), &key)?;
            tracing::info!(path = %path(SERVER_CERT).display(), hosts = ?hostnames, "issued the server certificate");
            (cert, key)
        }
    };

    let (registration_certificate_pem, registration_key_pem) = match (
        read_optional(&path(REGISTER_CERT))?,
        read_optional(&path(REGISTER_KEY))?,
    ) {
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            let issued = issue_registration_certificate(&ca, now, REGISTRATION_CERT_LIFETIME)
                .map_err(pki_error(REGISTER_CERT))?;
            let cert = issued.certificate.pem();
            let key = issued.key_pem().to_owned();
            save_pair(&path(REGISTER_CERT), &cert, &path(REGISTER_KEY), &key)?;
            tracing::info!(path = %path(REGISTER_CERT).display(), "issued the registration certificate");
            (cert, key)
        }
    };

    Ok(ServerPki {
        ca: Arc::new(ca),
        ca_pem,
        server_certificate_pem,
        server_key_pem,
        registration_certificate_pem,
        registration_key_pem,
        dir: dir.to_owned(),
    })
}

/// Opens (SQLite) or connects to (PostgreSQL) the configured store.
pub async fn open_store(database: &DatabaseUrl) -> Result<Arc<dyn Store>, StartError> {
    let shown = database.to_string();
    match database {
        DatabaseUrl::Sqlite(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| StartError::DataDir {
                    path: parent.to_owned(),
                    source,
                })?;
            }
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
                .await
                .map_err(|e| StartError::Database {
                    database: shown.clone(),
                    source: StoreError::backend("open", false, e.to_string()),
                })?
                .map_err(|source| StartError::Database {
                    database: shown,
                    source,
                })?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        DatabaseUrl::Postgres(url) => {
            let connect = crate::store::PostgresStore::connect(url);
            match tokio::time::timeout(DATABASE_CONNECT_TIMEOUT, connect).await {
                Ok(Ok(store)) => Ok(Arc::new(store)),
                Ok(Err(source)) => Err(StartError::Database {
                    database: shown,
                    source,
                }),
                Err(_) => Err(StartError::DatabaseTimeout {
                    database: shown,
                    seconds: DATABASE_CONNECT_TIMEOUT.as_secs(),
                }),
            }
        }
        #[cfg(not(feature = "postgres"))]
        DatabaseUrl::Postgres(_) => Err(StartError::PostgresUnsupported),
        #[allow(unreachable_patterns)]
        _ => Err(StartError::PostgresUnsupported),
    }
}

fn server_tls_config(
    pki: &ServerPki,
    listener: &'static str,
) -> Result<rustls::ServerConfig, StartError> {
    let certificate_path = pki.dir.join(pki_files::SERVER_CERT);
    let key_path = pki.dir.join(pki_files::SERVER_KEY);
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_certificate_pem.as_bytes())
            .filter_map(Result::ok)
            .collect();
    if chain.is_empty() {
        return Err(StartError::Pem {
            path: certificate_path,
            what: "certificate",
        });
    }
    chain.push(CertificateDer::from(pki.ca.certificate_der().to_vec()));
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).map_err(|_| {
        StartError::Pem {
            path: key_path,
            what: "private key",
        }
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|source| StartError::Tls { listener, source })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The Edge API: its state, router and TLS configuration (client certificates
/// checked for their chain at the handshake, identity per request).
pub async fn edge_service(
    store: Arc<dyn Store>,
    pki: &ServerPki,
    config: &ServerConfig,
) -> Result<(EdgeState, Router, rustls::ServerConfig), StartError> {
    let lifetime = time::Duration::try_from(config.cert_lifetime)
        .unwrap_or(flotta_core::pki::DEFAULT_DEVICE_LIFETIME);
    let options = EdgeOptions::default()
        .with_auto_approve(config.auto_approve)
        .with_certificate_lifetime(lifetime);
    let ca: SharedCa = pki.ca.clone();
    let state = EdgeState::new(store, ca, options).await?;
    let tls = edge::tls_server_config(
        pki.ca.as_ref(),
        &pki.server_certificate_pem,
        &pki.server_key_pem,
    )?;
    Ok((state.clone(), edge::router(state), tls))
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

/// A started server: both listeners bound and serving.
pub struct RunningServer {
    api_addr: SocketAddr,
    edge_addr: SocketAddr,
    admin_config: AdminConfig,
    admin_config_path: PathBuf,
    store: Arc<dyn Store>,
    edge: EdgeState,
    edge_background: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("api_addr", &self.api_addr)
            .field("edge_addr", &self.edge_addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Address the management API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Address the Edge API listens on.
    pub fn edge_addr(&self) -> SocketAddr {
        self.edge_addr
    }

    /// What was written to `admin.yaml`.
    pub fn admin_config(&self) -> &AdminConfig {
        &self.admin_config
    }

    /// Path of `admin.yaml`.
    pub fn admin_config_path(&self) -> &Path {
        &self.admin_config_path
    }

    /// The server's store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Stops accepting connections, ends watch streams, lets open requests finish
    /// (up to [`SHUTDOWN_GRACE`]) and waits for both listeners to close.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.edge.shutdown();
        let _ = self.edge_background.await;
        // Every acknowledged heartbeat's time is already committed; no flush is needed.
    }

    /// Serves until SIGTERM or SIGINT (Ctrl-C), then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
        tracing::info!("stopped");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The URL host for a listener: the first configured host name when the listener
/// is on a wildcard address, else the listener's own address.
fn url_host(addr: SocketAddr, hostnames: &[String]) -> String {
    let host = if addr.ip().is_unspecified() {
        hostnames
            .first()
            .cloned()
            .unwrap_or_else(|| "localhost".into())
    } else {
        addr.ip().to_string()
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    }
}

/// Starts the server: data directory, PKI, store, admin token, both listeners.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let pki = load_or_create_pki(
        &config.pki_dir(),
        &config.hostnames,
        OffsetDateTime::now_utc(),
    )?;
    let store = open_store(&config.database).await?;
    tracing::info!(database = %config.database, "store open");

    let api_listener = bind("management API", config.api_listen).await?;
    let edge_listener = bind("Edge API", config.edge_listen).await?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            listener: "management API",
            addr: config.api_listen,
            source,
        })?;
    let edge_addr = edge_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            listener: "Edge API",
            addr: config.edge_listen,
            source,
        })?;

    let admin_config_path = config.admin_config_path();
    let existing = AdminConfig::load(&admin_config_path);
    let token = ensure_admin_token(store.as_ref(), existing.as_ref()).await?;
    let admin_config = AdminConfig {
        kind: ADMIN_CONFIG_KIND.into(),
        server: format!(
            "https://{}:{}",
            url_host(api_addr, &config.hostnames),
            api_addr.port()
        ),
        edge_server: format!(
            "https://{}:{}",
            url_host(edge_addr, &config.hostnames),
            edge_addr.port()
        ),
        certificate_authority: pki.ca_pem.clone(),
        token,
    };
    if existing.as_ref() != Some(&admin_config) {
        admin_config.save(&admin_config_path)?;
    }

    let (shutdown, shutdown_watch) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let api_state = ApiState::new(store.clone(), metrics.clone(), shutdown_watch.clone());
    let api_router = api::router(api_state);
    let api_tls = server_tls_config(&pki, "management API")?;
    let (edge_state, edge_router, edge_tls) = edge_service(store.clone(), &pki, &config).await?;
    let edge_background = edge_state.spawn_background().await?;
    let workload_status = crate::workload_status::spawn(store.clone(), shutdown_watch.clone())
        .await
        .map_err(|source| StartError::Database {
            database: config.database.to_string(),
            source,
        })?;
    let edge_router =
        edge_router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let metrics = metrics.clone();
            async move { record_edge_request(&metrics, request, next).await }
        }));

    let tasks = vec![
        tokio::spawn(serve_tls(
            "management API",
            api_listener,
            TlsAcceptor::from(Arc::new(api_tls)),
            api_router,
            shutdown_watch.clone(),
        )),
        tokio::spawn(async move {
            let mut shutdown = shutdown_watch;
            let stop = async move { stopping(&mut shutdown).await };
            if let Err(error) =
                edge::serve(edge_listener, Arc::new(edge_tls), edge_router, stop).await
            {
                tracing::error!(%error, "Edge API listener failed");
            }
        }),
        workload_status,
    ];

    let pki_dir = config.pki_dir();
    tracing::info!(url = %admin_config.server, "management API listening");
    tracing::info!(url = %admin_config.edge_server, "Edge API listening");
    tracing::info!(
        ca = %pki_dir.join(pki_files::CA_CERT).display(),
        registration_certificate = %pki_dir.join(pki_files::REGISTER_CERT).display(),
        registration_key = %pki_dir.join(pki_files::REGISTER_KEY).display(),
        "PKI files"
    );
    tracing::info!(path = %admin_config_path.display(), "admin client configuration (server URL, CA, admin token)");
    tracing::info!(
        auto_approve = config.auto_approve,
        "enrol a device: run `flotta-agent --config agent.toml` with server = {:?}, ca = {:?}, registration_certificate = {:?}, registration_key = {:?} (see docs/agent.md)",
        admin_config.edge_server,
        pki_dir.join(pki_files::CA_CERT).display(),
        pki_dir.join(pki_files::REGISTER_CERT).display(),
        pki_dir.join(pki_files::REGISTER_KEY).display(),
    );

    Ok(RunningServer {
        api_addr,
        edge_addr,
        admin_config,
        admin_config_path,
        store,
        edge: edge_state,
        edge_background,
        shutdown,
        tasks,
    })
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

async fn record_edge_request(metrics: &Metrics, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.record_request(
        "edge",
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Accepts TLS connections and serves `router` over HTTP/1.1 until `shutdown`
/// turns true, then lets open connections finish for up to [`SHUTDOWN_GRACE`].
async fn serve_tls(
    listener_name: &'static str,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = listener_name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopping(&mut shutdown) => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(listener = listener_name, %peer_addr, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = listener_name, %peer_addr, "TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(listener = listener_name, %peer_addr, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = listener_name,
            "connections still open after the shutdown grace period; closing them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only_and_replace_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        write_private_file(&path, b"one").expect("first write");
        write_private_file(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.path().join(".secret.key.tmp").exists());
    }

    #[test]
    fn pki_is_created_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = load_or_create_pki(dir.path(), &hosts, now).expect("created");
        let second = load_or_create_pki(dir.path(), &hosts, now).expect("reused");
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.server_certificate_pem, second.server_certificate_pem);
        assert_eq!(first.registration_key_pem, second.registration_key_pem);
        // A server certificate close to expiry is reissued, the CA kept.
        let later = now + SERVER_CERT_LIFETIME - time::Duration::days(1);
        let third = load_or_create_pki(dir.path(), &hosts, later).expect("renewed");
        assert_eq!(first.ca_pem, third.ca_pem);
        assert_ne!(first.server_certificate_pem, third.server_certificate_pem);
    }

    #[test]
    fn url_host_prefers_configured_names_for_wildcards() {
        let hosts = vec!["fleet.example.com".to_owned()];
        assert_eq!(
            url_host("0.0.0.0:8443".parse().expect("addr"), &hosts),
            "fleet.example.com"
        );
        assert_eq!(
            url_host("127.0.0.1:8443".parse().expect("addr"), &hosts),
            "127.0.0.1"
        );
        assert_eq!(
            url_host("[::1]:8443".parse().expect("addr"), &hosts),
            "[::1]"
        );
    }
}
