//! Why the server could not start: the error of every start-up step.

use std::net::SocketAddr;
use std::path::PathBuf;

use flotta_core::pki::PkiError;

use crate::edge::EdgeError;
use crate::store::StoreError;
use crate::tokens::TokenError;

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
    /// The audit log cannot be opened.
    #[error("audit log {sink} cannot be opened")]
    AuditLog {
        /// Where the log was to go.
        sink: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An OIDC issuer cannot be trusted as configured (its CA file, its policy).
    #[error(transparent)]
    Oidc(#[from] crate::oidc::OidcSetupError),
    /// A CA rotation step cannot be done.
    #[error("CA rotation: {reason}")]
    CaRotation {
        /// Why.
        reason: String,
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
    /// The key sealing secrets could not be loaded or created.
    #[error("cannot set up the secret key")]
    SecretKey(#[from] crate::store::SealingKeyError),
    /// Secrets could not be re-sealed under the current key.
    #[error("cannot re-seal secrets under the current key")]
    Reseal(#[source] crate::store::StoreError),
    /// The admin token or `admin.yaml` could not be set up.
    #[error("cannot set up the admin token")]
    AdminToken(#[from] TokenError),
    /// The Edge API could not be set up.
    #[error("cannot set up the Edge API")]
    Edge(#[from] EdgeError),
}
