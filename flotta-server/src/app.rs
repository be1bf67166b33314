//! The composition root: [`start`] wires the data directory, PKI files, store, admin
//! token, both APIs, background tasks and graceful shutdown together; each step
//! lives in its own module (`server_pki`, `listener`, `shutdown`, `fs`).
//!
//! [`start`] returns a [`RunningServer`] once both listeners are bound, so tests can
//! run the whole server in-process on port 0 and read the ports back.

use flotta_core::pki::CertificateAuthority;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, ApiState};
use crate::config::{DatabaseUrl, ServerConfig};
use crate::edge::{self, EdgeOptions, EdgeState, SharedCa};
use crate::listener::{bind, serve_tls, server_tls_config};
use crate::metrics::Metrics;
use crate::shutdown::{stopping, wait_for_signal};
use crate::store::{SealedStore, SealingKeys, SqliteStore, Store, StoreError};
use crate::tokens::{
    ADMIN_CONFIG_KIND, AdminConfig, ensure_admin_token, load_admin_config, save_admin_config,
};

// The start-up steps live in their own modules; their public paths under `app` stay.
pub use crate::fs::write_private_file;
pub use crate::listener::{HEADER_READ_TIMEOUT, SHUTDOWN_GRACE, TLS_HANDSHAKE_TIMEOUT};
pub use crate::server_pki::{
    REGISTRATION_CERT_LIFETIME, RotationReport, SERVER_CERT_LIFETIME, SERVER_CERT_RENEW_BEFORE,
    ServerPki, ca_status, load_or_create_pki, pki_files, retire_ca, rotate_ca,
};
pub use crate::start_error::StartError;

/// How long start-up waits for PostgreSQL.
pub const DATABASE_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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

/// The Edge API: its state, router and TLS configuration (client certificates
/// checked for their chain at the handshake, identity per request).
pub async fn edge_service(
    store: Arc<dyn Store>,
    pki: &ServerPki,
    config: &ServerConfig,
) -> Result<(EdgeState, Router, rustls::ServerConfig), StartError> {
    let lifetime = time::Duration::try_from(config.cert_lifetime)
        .unwrap_or(flotta_core::pki::DEFAULT_DEVICE_LIFETIME);
    let mut options = EdgeOptions::default()
        .with_auto_approve(config.auto_approve)
        .with_certificate_lifetime(lifetime)
        .with_superseded_grace(config.superseded_certificate_grace)
        .with_event_retention(config.event_retention)
        .with_status_sweep_period(config.status_sweep_period)
        .with_ca_bundle(pki.ca_pem.clone());
    if let Some(previous) = &pki.previous_ca {
        options = options.with_retiring_cas(CertificateAuthority::chain_der(previous.as_ref()));
    }
    let ca: SharedCa = pki.ca.clone();
    let state = EdgeState::new(store, ca, options).await?;
    let tls = edge::tls_server_config_with(
        state.verifier().clone(),
        &pki.server_certificate_pem,
        &pki.server_key_pem,
    )?;
    Ok((state.clone(), edge::router(state), tls))
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
    leadership: crate::leader::Leadership,
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

    /// The Edge API's state: its signals (devices waiting in a long-poll, the
    /// config view's counters) let tests wait for the server instead of sleeping.
    pub fn edge(&self) -> &EdgeState {
        &self.edge
    }

    /// The server's store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// This replica's view of the leader lease ([`crate::leader`]).
    pub fn leadership(&self) -> &crate::leader::Leadership {
        &self.leadership
    }

    /// Ends every task of the server at once, as a crash would: open requests are
    /// cut, and nothing is handed over (the leader lease runs out on its own).
    /// For tests of what other replicas do when one dies.
    pub fn abort(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.edge_background.abort();
        self.edge.shutdown();
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

/// Wraps `store` so that secrets are sealed at rest with the configured key (created
/// at first start when it is the default one), and re-seals under it any secret
/// sealed with a previous key.
async fn sealed_store(
    store: Arc<dyn Store>,
    config: &ServerConfig,
) -> Result<Arc<dyn Store>, StartError> {
    let path = config.secret_key_path();
    let keys = if config.secret_key_file.is_some() {
        SealingKeys::load(&path, &config.previous_secret_key_files)?
    } else {
        SealingKeys::load_or_create(&path)?;
        SealingKeys::load(&path, &config.previous_secret_key_files)?
    };
    tracing::info!(key = %path.display(), key_id = keys.current_id(), "secrets sealed at rest");
    let sealed = SealedStore::new(store, keys);
    let resealed = sealed.reseal_all().await.map_err(StartError::Reseal)?;
    if resealed > 0 {
        tracing::info!(
            secrets = resealed,
            "secrets re-sealed under the current key"
        );
    }
    Ok(Arc::new(sealed))
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
    )
    .await?;
    let store = sealed_store(open_store(&config.database).await?, &config).await?;
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
    let existing = load_admin_config(&admin_config_path);
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
        oidc: None,
    };
    if existing.as_ref() != Some(&admin_config) {
        save_admin_config(&admin_config, &admin_config_path)?;
    }

    let (shutdown, shutdown_watch) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let (edge_state, edge_router, edge_tls) = edge_service(store.clone(), &pki, &config).await?;
    let mut api_state = ApiState::new(store.clone(), metrics.clone(), shutdown_watch.clone())
        .with_event_recorder(edge_state.events().clone())
        .with_open_metrics(config.metrics_open);
    if let Some(audit) = &config.audit {
        let log = crate::api::audit::AuditLog::open(audit.clone()).map_err(|source| {
            StartError::AuditLog {
                sink: format!("{:?}", audit.sink),
                source,
            }
        })?;
        api_state = api_state.with_audit(Arc::new(log));
    }
    if !config.oidc.is_empty() {
        let oidc = crate::oidc::OidcAuthenticator::new(&config.oidc)?;
        for issuer in &config.oidc {
            tracing::info!(issuer = %issuer.policy.issuer, client_id = %issuer.policy.client_id, "trusting OIDC issuer");
        }
        api_state = api_state.with_oidc(Arc::new(oidc));
    }
    let api_router = api::router(api_state);
    let api_tls = server_tls_config(&pki, "management API")?;
    let event_pruning = edge_state.events().spawn_pruning(shutdown_watch.clone());
    let edge_background = edge_state.spawn_background().await?;
    let (leadership, leader_lease) = crate::leader::Leadership::spawn(
        store.clone(),
        config.leader_lease,
        shutdown_watch.clone(),
    );
    metrics.set_leadership(leadership.clone());
    let workload_status = crate::workload_status::spawn(
        store.clone(),
        edge_state.events().clone(),
        leadership.clone(),
        shutdown_watch.clone(),
    )
    .await
    .map_err(|source| StartError::Database {
        database: config.database.to_string(),
        source,
    })?;
    let gitops = crate::gitops::spawn(
        store.clone(),
        crate::gitops::GitOpsConfig {
            mirrors: config.data_dir.join(crate::gitops::MIRRORS_DIR),
            allow_file_repositories: config.gitops_file_repositories,
        },
        leadership.clone(),
        shutdown_watch.clone(),
    )
    .await
    .map_err(|source| StartError::Database {
        database: config.database.to_string(),
        source,
    })?;
    let member_metadata = crate::member_metadata::spawn(store.clone(), shutdown_watch.clone())
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
        gitops,
        event_pruning,
        member_metadata,
        leader_lease,
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
        leadership,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
