//! Server configuration: command-line flags and `FLOTTA_*` environment variables,
//! over an optional TOML file (`--config`), over embedded defaults.
//!
//! Precedence, highest first: flag, environment variable, TOML file, default.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use flotta_core::events::EventRetention;

use crate::store::TokenRole;

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "flotta-data";
/// Default address of the agent-facing Edge API listener.
pub const DEFAULT_EDGE_LISTEN: &str = "0.0.0.0:8043";
/// Default address of the management API listener.
pub const DEFAULT_API_LISTEN: &str = "0.0.0.0:8443";
/// Default lifetime of device certificates: 90 days.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// Name of the SQLite database file inside the data directory.
pub const SQLITE_FILE_NAME: &str = "flotta.db";

/// What went wrong while assembling the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read configuration file {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML of the expected shape.
    #[error("invalid configuration file {path}: {message}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (it names the key and line).
        message: String,
    },
    /// A value in the configuration file could not be used.
    #[error("invalid value for `{key}` in {path}: {reason}")]
    InvalidFileValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// The leader lease is too short to be renewed reliably.
    #[error(
        "leader lease of {given:?} is too short: it is renewed every third of it, and must be at least {MIN_LEADER_LEASE:?}"
    )]
    LeaderLeaseTooShort {
        /// The configured time to live.
        given: Duration,
    },
    /// An OIDC issuer's settings could not be used.
    #[error("invalid OIDC issuer settings ({place}): {reason}")]
    Oidc {
        /// Where the settings came from: `--oidc-issuer` or `FILE [[oidc]] #N`.
        place: String,
        /// What is wrong.
        reason: String,
    },
}

/// The shortest leader lease accepted.
pub const MIN_LEADER_LEASE: Duration = Duration::from_secs(1);

/// A database location: `sqlite://PATH` or `postgres://...`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseUrl {
    /// An embedded SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

/// A database URL that is neither `sqlite://` nor `postgres://`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database URL must start with sqlite:// or postgres:// (got {shown:?})")]
pub struct InvalidDatabaseUrl {
    /// The URL's scheme part, for the message (never the credentials).
    pub shown: String,
}

impl FromStr for DatabaseUrl {
    type Err = InvalidDatabaseUrl;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(InvalidDatabaseUrl {
                    shown: "sqlite://".into(),
                });
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(s.to_owned()));
        }
        let scheme = s.split_once("://").map_or(s, |(scheme, _)| scheme);
        Err(InvalidDatabaseUrl {
            shown: scheme.chars().take(40).collect(),
        })
    }
}

impl fmt::Display for DatabaseUrl {
    /// Shows the location without any password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// A certificate lifetime written as a number and a unit: `90d`, `12h`, `30m`, `3600s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub Duration);

/// A lifetime that is not `<number><s|m|h|d>` or is zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lifetime {0:?}: expected a positive number followed by s, m, h or d (e.g. 90d)")]
pub struct InvalidLifetime(pub String);

impl FromStr for Lifetime {
    type Err = InvalidLifetime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidLifetime(s.to_owned());
        let trimmed = s.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let (number, unit) = trimmed.split_at(split);
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let seconds_per_unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(invalid()),
        };
        let seconds = number.checked_mul(seconds_per_unit).ok_or_else(invalid)?;
        // Certificates end in 9999 at the latest; keep well below.
        if seconds == 0 || seconds > 100 * 365 * 86_400 {
            return Err(invalid());
        }
        Ok(Lifetime(Duration::from_secs(seconds)))
    }
}

/// The `flotta-server` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flotta-server",
    version,
    about = "Reference flotta server: Edge API (mTLS), management API, built-in CA and storage."
)]
pub struct Cli {
    /// Settings of the server.
    #[command(flatten)]
    pub options: ServerOptions,
    /// What to do; without a subcommand the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of `flotta-server`.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Manage management API tokens.
    Token {
        /// The token action.
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Rotate the fleet CA (docs/pki.md, "CA rotation"); each step takes effect at
    /// the server's next start.
    Ca {
        /// The rotation step.
        #[command(subcommand)]
        action: CaCommand,
    },
}

/// `flotta-server ca ...`.
#[derive(Debug, Clone, Copy, Subcommand)]
#[non_exhaustive]
pub enum CaCommand {
    /// Shows the active CA and, during a rotation, the one being retired.
    Status,
    /// Starts a rotation: a new CA signs from the next start, the current one stays
    /// trusted until `retire`, and devices are told to renew.
    Rotate,
    /// Ends a rotation: the previous CA is deleted and no longer trusted.
    Retire,
}

/// `flotta-server token ...`.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum TokenCommand {
    /// Creates a token and prints its secret (shown only once).
    Create {
        /// A built-in role: viewer, operator, admin, or metrics (reads `/metrics`
        /// only). Without one the token may do what RBAC bindings of its name and
        /// groups grant (docs/access-control.md).
        #[arg(long, value_parser = parse_role)]
        role: Option<TokenRole>,
        /// The token's name: the user name RoleBindings name [default: token-ID].
        #[arg(long)]
        name: Option<String>,
        /// A group the token's user is in (repeatable), e.g. `team-a`.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Lifetime, e.g. `30d`, `12h`; the token is refused (401) afterwards.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Who or what the token is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Lists the tokens: id, name, role, groups, expiry.
    List,
}

fn parse_role(s: &str) -> Result<TokenRole, String> {
    s.parse::<TokenRole>().map_err(|e| e.to_string())
}

/// Server settings as given on the command line or in the environment; unset ones
/// come from the TOML file or the defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerOptions {
    /// TOML configuration file with the same settings (kebab-case keys).
    #[arg(long, env = "FLOTTA_SERVER_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the PKI files, admin.yaml and the SQLite database.
    #[arg(long, env = "FLOTTA_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the agent-facing Edge API (mTLS) [default: 0.0.0.0:8043].
    #[arg(long, env = "FLOTTA_EDGE_LISTEN", value_name = "ADDR")]
    pub edge_listen: Option<SocketAddr>,
    /// Address of the management API (HTTPS, bearer tokens) [default: 0.0.0.0:8443].
    #[arg(long, env = "FLOTTA_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
    /// Database: sqlite://PATH or postgres://... [default: sqlite://DATA_DIR/flotta.db].
    #[arg(long, env = "FLOTTA_DATABASE", global = true, value_name = "URL")]
    pub database: Option<DatabaseUrl>,
    /// Approve enrolling devices automatically [default: true].
    #[arg(long, env = "FLOTTA_AUTO_APPROVE", value_name = "true|false")]
    pub auto_approve: Option<bool>,
    /// Host name or IP address the server is reached at (server certificate SAN);
    /// repeatable [default: localhost, 127.0.0.1, ::1].
    #[arg(
        long = "hostname",
        env = "FLOTTA_HOSTNAMES",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub hostnames: Vec<String>,
    /// Lifetime of issued device certificates, e.g. 90d, 12h [default: 90d].
    #[arg(long, env = "FLOTTA_CERT_LIFETIME", value_name = "DURATION")]
    pub cert_lifetime: Option<Lifetime>,
    /// How long a renewed device's previous certificate keeps working, e.g. 10m
    /// [default: 10m].
    #[arg(long, env = "FLOTTA_SUPERSEDED_CERT_GRACE", value_name = "DURATION")]
    pub superseded_cert_grace: Option<Lifetime>,
    /// How long an event is kept after it last happened, e.g. 1h, 7d [default: 1h].
    #[arg(long, env = "FLOTTA_EVENT_TTL", value_name = "DURATION")]
    pub event_ttl: Option<Lifetime>,
    /// Most events kept in all; the least recently seen go first [default: 10000].
    #[arg(long, env = "FLOTTA_EVENT_LIMIT", value_name = "COUNT")]
    pub event_limit: Option<usize>,
    /// Key that seals secrets at rest (64 hex digits); default `DATA_DIR/secret-key`,
    /// created at first start.
    #[arg(long, env = "FLOTTA_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// An earlier secret key, still accepted for opening while start-up re-seals every
    /// secret under the current one (repeat for several).
    #[arg(long, value_name = "FILE")]
    pub previous_secret_key_file: Vec<PathBuf>,
    /// How often device statuses are recomputed as time passes (offline devices,
    /// conditions), e.g. 10s [default: 10s].
    #[arg(long, env = "FLOTTA_STATUS_SWEEP_PERIOD", value_name = "DURATION")]
    pub status_sweep_period: Option<Lifetime>,
    /// Audit log of the management API: a file, rotated by size, or `-` for
    /// standard output [default: none].
    #[arg(long, env = "FLOTTA_AUDIT_LOG", value_name = "FILE|-")]
    pub audit_log: Option<PathBuf>,
    /// Size in MiB at which the audit file is rotated [default: 100].
    #[arg(long, env = "FLOTTA_AUDIT_LOG_MAX_MIB", value_name = "MIB")]
    pub audit_log_max_mib: Option<u64>,
    /// Rotated audit files kept beside the current one [default: 5].
    #[arg(long, env = "FLOTTA_AUDIT_LOG_KEEP", value_name = "N")]
    pub audit_log_keep: Option<u32>,
    /// Record reads of secrets (get, list, watch) in the audit log too.
    #[arg(long, env = "FLOTTA_AUDIT_SECRET_READS", value_name = "true|false")]
    pub audit_secret_reads: Option<bool>,
    /// Serve `/metrics` without a token [default: false: any token, or one with the
    /// `metrics` role].
    #[arg(long, env = "FLOTTA_METRICS_OPEN", value_name = "true|false")]
    pub metrics_open: Option<bool>,
    /// Let `Repository` objects name `file://` URLs: git repositories on the
    /// server's own filesystem [default: false: only https, http, ssh and git].
    #[arg(
        long,
        env = "FLOTTA_GITOPS_FILE_REPOSITORIES",
        value_name = "true|false"
    )]
    pub gitops_file_repositories: Option<bool>,
    /// Time to live of the leader lease replicas on one database elect the
    /// fleet's decision-taker with (rollout steps), e.g. 15s: how long a killed
    /// leader's work waits for another replica [default: 15s].
    #[arg(long, env = "FLOTTA_LEADER_LEASE", value_name = "DURATION")]
    pub leader_lease: Option<Lifetime>,
    /// Trust the JWTs of this OpenID Connect issuer (an https URL, exactly as its
    /// tokens' `iss`); more issuers and settings in the file's `[[oidc]]` tables.
    #[arg(
        long,
        env = "FLOTTA_OIDC_ISSUER",
        value_name = "URL",
        requires = "oidc_client_id"
    )]
    pub oidc_issuer: Option<String>,
    /// The OAuth client id of `--oidc-issuer`: the audience its tokens must carry,
    /// and the client `flotta login` and the console sign in with.
    #[arg(
        long,
        env = "FLOTTA_OIDC_CLIENT_ID",
        value_name = "ID",
        requires = "oidc_issuer"
    )]
    pub oidc_client_id: Option<String>,
    /// The claim naming the user [default: sub].
    #[arg(
        long,
        env = "FLOTTA_OIDC_USERNAME_CLAIM",
        value_name = "CLAIM",
        requires = "oidc_issuer"
    )]
    pub oidc_username_claim: Option<String>,
    /// The claim listing the user's groups [default: groups].
    #[arg(
        long,
        env = "FLOTTA_OIDC_GROUPS_CLAIM",
        value_name = "CLAIM",
        requires = "oidc_issuer"
    )]
    pub oidc_groups_claim: Option<String>,
    /// PEM file of the CA of the issuer's TLS certificate [default: the system's].
    #[arg(
        long,
        env = "FLOTTA_OIDC_CA_FILE",
        value_name = "FILE",
        requires = "oidc_issuer"
    )]
    pub oidc_ca_file: Option<PathBuf>,
}

/// One `[[oidc]]` table of the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct OidcFileConfig {
    issuer: String,
    client_id: String,
    #[serde(default)]
    audiences: Vec<String>,
    username_claim: Option<String>,
    #[serde(default)]
    username_prefix: String,
    groups_claim: Option<String>,
    #[serde(default)]
    groups_prefix: String,
    algorithms: Option<Vec<String>>,
    clock_skew: Option<String>,
    certificate_authority: Option<PathBuf>,
    scopes: Option<Vec<String>>,
    keys_min_refresh: Option<String>,
}

impl OidcFileConfig {
    fn resolve(self) -> Result<crate::oidc::OidcIssuerConfig, String> {
        let mut config = crate::oidc::OidcIssuerConfig::new(self.issuer, self.client_id);
        let policy = &mut config.policy;
        policy.extra_audiences = self.audiences;
        if let Some(claim) = self.username_claim {
            policy.username_claim = claim;
        }
        policy.username_prefix = self.username_prefix;
        if let Some(claim) = self.groups_claim {
            policy.groups_claim = claim;
        }
        policy.groups_prefix = self.groups_prefix;
        if let Some(names) = self.algorithms {
            policy.algorithms = names
                .iter()
                .map(|name| flotta_core::oidc::parse_algorithm(name))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("algorithms: {e}"))?;
        }
        if let Some(text) = self.clock_skew {
            let Lifetime(skew) = text
                .parse()
                .map_err(|e: InvalidLifetime| format!("clock-skew: {e}"))?;
            policy.clock_skew = skew;
        }
        if let Some(text) = self.keys_min_refresh {
            let Lifetime(every) = text
                .parse()
                .map_err(|e: InvalidLifetime| format!("keys-min-refresh: {e}"))?;
            config.keys_min_refresh = every;
        }
        config.certificate_authority = self.certificate_authority;
        if let Some(scopes) = self.scopes {
            if !scopes.iter().any(|s| s == "openid") {
                return Err("scopes: must include \"openid\"".into());
            }
            config.scopes = scopes;
        }
        config.policy.validate()?;
        Ok(config)
    }
}

/// The OIDC issuers: the file's `[[oidc]]` tables, then the one the flags name.
fn oidc_config(
    options: &ServerOptions,
    file: &mut FileConfig,
    path: &Path,
) -> Result<Vec<crate::oidc::OidcIssuerConfig>, ConfigError> {
    let mut issuers = Vec::new();
    for (index, table) in std::mem::take(&mut file.oidc).into_iter().enumerate() {
        let place = format!(
            "{} [[oidc]] #{} ({})",
            path.display(),
            index + 1,
            table.issuer
        );
        issuers.push(
            table
                .resolve()
                .map_err(|reason| ConfigError::Oidc { place, reason })?,
        );
    }
    if let (Some(issuer), Some(client_id)) = (&options.oidc_issuer, &options.oidc_client_id) {
        let table = OidcFileConfig {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            username_claim: options.oidc_username_claim.clone(),
            groups_claim: options.oidc_groups_claim.clone(),
            certificate_authority: options.oidc_ca_file.clone(),
            ..OidcFileConfig::default()
        };
        issuers.push(table.resolve().map_err(|reason| ConfigError::Oidc {
            place: "--oidc-issuer".into(),
            reason,
        })?);
    }
    let mut seen = std::collections::BTreeSet::new();
    for issuer in &issuers {
        if !seen.insert(issuer.policy.issuer.clone()) {
            return Err(ConfigError::Oidc {
                place: issuer.policy.issuer.clone(),
                reason: "the issuer is configured twice".into(),
            });
        }
    }
    Ok(issuers)
}

/// The audit log's settings, flags over the file; `None` when no log is named.
fn audit_config(
    options: &ServerOptions,
    file: &FileConfig,
) -> Option<crate::api::audit::AuditConfig> {
    use crate::api::audit::{AuditConfig, AuditSink, DEFAULT_KEEP, DEFAULT_MAX_BYTES};
    let path = options
        .audit_log
        .clone()
        .or_else(|| file.audit_log.clone())?;
    let sink = if path.as_os_str() == "-" {
        AuditSink::Stdout
    } else {
        AuditSink::File {
            path,
            max_bytes: options
                .audit_log_max_mib
                .or(file.audit_log_max_mib)
                .map_or(DEFAULT_MAX_BYTES, |mib| {
                    mib.saturating_mul(1024 * 1024).max(1)
                }),
            keep: options
                .audit_log_keep
                .or(file.audit_log_keep)
                .unwrap_or(DEFAULT_KEEP),
        }
    };
    Some(AuditConfig {
        sink,
        secret_reads: options
            .audit_secret_reads
            .or(file.audit_secret_reads)
            .unwrap_or(false),
    })
}

/// The TOML configuration file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    edge_listen: Option<SocketAddr>,
    api_listen: Option<SocketAddr>,
    database: Option<String>,
    auto_approve: Option<bool>,
    hostnames: Option<Vec<String>>,
    cert_lifetime: Option<String>,
    superseded_cert_grace: Option<String>,
    event_ttl: Option<String>,
    event_limit: Option<usize>,
    secret_key_file: Option<PathBuf>,
    previous_secret_key_files: Option<Vec<PathBuf>>,
    status_sweep_period: Option<String>,
    audit_log: Option<PathBuf>,
    audit_log_max_mib: Option<u64>,
    audit_log_keep: Option<u32>,
    audit_secret_reads: Option<bool>,
    metrics_open: Option<bool>,
    gitops_file_repositories: Option<bool>,
    leader_lease: Option<String>,
    #[serde(default)]
    oidc: Vec<OidcFileConfig>,
}

/// The complete, resolved server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory holding the PKI files, admin.yaml and the SQLite database.
    pub data_dir: PathBuf,
    /// Address of the Edge API listener.
    pub edge_listen: SocketAddr,
    /// Address of the management API listener.
    pub api_listen: SocketAddr,
    /// Where the state is stored.
    pub database: DatabaseUrl,
    /// Whether enrolling devices are approved without an operator.
    pub auto_approve: bool,
    /// Names and addresses in the server certificate; the first one goes into
    /// `admin.yaml`'s server URL.
    pub hostnames: Vec<String>,
    /// Lifetime of issued device certificates.
    pub cert_lifetime: Duration,
    /// How long a device's previous certificate keeps working after a renewal
    /// ([`crate::edge::DEFAULT_SUPERSEDED_GRACE`] by default).
    pub superseded_certificate_grace: Duration,
    /// How many events are kept and for how long (`event-limit`, `event-ttl`;
    /// 10,000 and one hour by default).
    pub event_retention: EventRetention,
    /// Key sealing secrets at rest; `None`: `DATA_DIR/secret-key`, created at first
    /// start.
    pub secret_key_file: Option<PathBuf>,
    /// Earlier keys, accepted for opening while secrets are re-sealed (rotation).
    pub previous_secret_key_files: Vec<PathBuf>,
    /// How often device statuses are recomputed as time passes
    /// ([`crate::edge::DEFAULT_STATUS_SWEEP_PERIOD`] by default).
    pub status_sweep_period: Duration,
    /// The management API's audit log; `None`: not kept.
    pub audit: Option<crate::api::audit::AuditConfig>,
    /// Whether `/metrics` is served without a token.
    pub metrics_open: bool,
    /// Whether `Repository` objects may name `file://` URLs ([`crate::gitops`]).
    pub gitops_file_repositories: bool,
    /// Time to live of the leader lease ([`crate::leader`]).
    pub leader_lease: Duration,
    /// The OIDC issuers whose JWTs the management API accepts ([`crate::oidc`]).
    pub oidc: Vec<crate::oidc::OidcIssuerConfig>,
}

impl ServerConfig {
    /// The embedded defaults, with the data directory `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            database: DatabaseUrl::Sqlite(data_dir.join(SQLITE_FILE_NAME)),
            data_dir,
            edge_listen: socket(DEFAULT_EDGE_LISTEN),
            api_listen: socket(DEFAULT_API_LISTEN),
            auto_approve: true,
            hostnames: default_hostnames(),
            cert_lifetime: DEFAULT_CERT_LIFETIME,
            superseded_certificate_grace: crate::edge::DEFAULT_SUPERSEDED_GRACE,
            event_retention: EventRetention::default(),
            secret_key_file: None,
            previous_secret_key_files: Vec::new(),
            status_sweep_period: crate::edge::DEFAULT_STATUS_SWEEP_PERIOD,
            audit: None,
            metrics_open: false,
            gitops_file_repositories: false,
            leader_lease: crate::leader::DEFAULT_LEASE_TTL,
            oidc: Vec::new(),
        }
    }

    /// Resolves flags and environment (already in `options`) over the TOML file named
    /// by `options.config`, over the defaults.
    pub fn resolve(options: &ServerOptions) -> Result<Self, ConfigError> {
        let mut file = match &options.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let file_path = options.config.clone().unwrap_or_default();
        let audit = audit_config(options, &file);
        let oidc = oidc_config(options, &mut file, &file_path)?;
        let data_dir = options
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let mut config = Self::with_data_dir(data_dir);
        if let Some(database) = options.database.clone() {
            config.database = database;
        } else if let Some(text) = file.database {
            config.database =
                text.parse()
                    .map_err(|e: InvalidDatabaseUrl| ConfigError::InvalidFileValue {
                        path: file_path.clone(),
                        key: "database",
                        reason: e.to_string(),
                    })?;
        }
        if let Some(addr) = options.edge_listen.or(file.edge_listen) {
            config.edge_listen = addr;
        }
        if let Some(addr) = options.api_listen.or(file.api_listen) {
            config.api_listen = addr;
        }
        if let Some(auto) = options.auto_approve.or(file.auto_approve) {
            config.auto_approve = auto;
        }
        if !options.hostnames.is_empty() {
            config.hostnames = options.hostnames.clone();
        } else if let Some(names) = file.hostnames.filter(|n| !n.is_empty()) {
            config.hostnames = names;
        }
        if let Some(Lifetime(lifetime)) = options.cert_lifetime {
            config.cert_lifetime = lifetime;
        } else if let Some(text) = file.cert_lifetime {
            let Lifetime(lifetime) =
                text.parse()
                    .map_err(|e: InvalidLifetime| ConfigError::InvalidFileValue {
                        path: file_path.clone(),
                        key: "cert-lifetime",
                        reason: e.to_string(),
                    })?;
            config.cert_lifetime = lifetime;
        }
        if let Some(Lifetime(grace)) = options.superseded_cert_grace {
            config.superseded_certificate_grace = grace;
        } else if let Some(text) = file.superseded_cert_grace {
            let Lifetime(grace) =
                text.parse()
                    .map_err(|e: InvalidLifetime| ConfigError::InvalidFileValue {
                        path: file_path.clone(),
                        key: "superseded-cert-grace",
                        reason: e.to_string(),
                    })?;
            config.superseded_certificate_grace = grace;
        }
        if let Some(Lifetime(ttl)) = options.event_ttl {
            config.event_retention.max_age = ttl;
        } else if let Some(text) = file.event_ttl {
            let Lifetime(ttl) =
                text.parse()
                    .map_err(|e: InvalidLifetime| ConfigError::InvalidFileValue {
                        path: file_path.clone(),
                        key: "event-ttl",
                        reason: e.to_string(),
                    })?;
            config.event_retention.max_age = ttl;
        }
        if let Some(limit) = options.event_limit.or(file.event_limit) {
            config.event_retention.max_events = limit;
        }
        config.secret_key_file = options.secret_key_file.clone().or(file.secret_key_file);
        config.previous_secret_key_files = if options.previous_secret_key_file.is_empty() {
            file.previous_secret_key_files.unwrap_or_default()
        } else {
            options.previous_secret_key_file.clone()
        };
        if let Some(Lifetime(period)) = options.status_sweep_period {
            config.status_sweep_period = period;
        } else if let Some(text) = file.status_sweep_period {
            let Lifetime(period) =
                text.parse()
                    .map_err(|e: InvalidLifetime| ConfigError::InvalidFileValue {
                        path: file_path.clone(),
                        key: "status-sweep-period",
                        reason: e.to_string(),
                    })?;
            config.status_sweep_period = period;
        }
        config.audit = audit;
        config.oidc = oidc;
        if let Some(open) = options.metrics_open.or(file.metrics_open) {
            config.metrics_open = open;
        }
        if let Some(allow) = options
            .gitops_file_repositories
            .or(file.gitops_file_repositories)
        {
            config.gitops_file_repositories = allow;
        }
        if let Some(Lifetime(ttl)) = options.leader_lease {
            config.leader_lease = ttl;
        } else if let Some(text) = file.leader_lease {
            let Lifetime(ttl) =
                text.parse()
                    .map_err(|e: InvalidLifetime| ConfigError::InvalidFileValue {
                        path: file_path.clone(),
                        key: "leader-lease",
                        reason: e.to_string(),
                    })?;
            config.leader_lease = ttl;
        }
        if config.leader_lease < MIN_LEADER_LEASE {
            return Err(ConfigError::LeaderLeaseTooShort {
                given: config.leader_lease,
            });
        }
        Ok(config)
    }

    /// `DATA_DIR/pki`.
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    /// The key sealing secrets: the configured file or `DATA_DIR/secret-key`.
    pub fn secret_key_path(&self) -> PathBuf {
        self.secret_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(crate::store::DEFAULT_KEY_FILE))
    }

    /// `DATA_DIR/admin.yaml`.
    pub fn admin_config_path(&self) -> PathBuf {
        self.data_dir.join("admin.yaml")
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_owned(),
        message: e.to_string().trim().replace('\n', " "),
    })
}

fn default_hostnames() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

fn socket(text: &str) -> SocketAddr {
    // The defaults are literals known to parse; the fallback only satisfies the type.
    text.parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = ServerConfig::resolve(&ServerOptions::default()).expect("defaults");
        assert_eq!(config.data_dir, PathBuf::from("flotta-data"));
        assert_eq!(config.edge_listen.to_string(), "0.0.0.0:8043");
        assert_eq!(config.api_listen.to_string(), "0.0.0.0:8443");
        assert_eq!(
            config.database,
            DatabaseUrl::Sqlite(PathBuf::from("flotta-data/flotta.db"))
        );
        assert!(config.auto_approve);
        assert_eq!(config.cert_lifetime, DEFAULT_CERT_LIFETIME);
        assert_eq!(
            config.superseded_certificate_grace,
            Duration::from_secs(600)
        );
        assert_eq!(config.event_retention.max_age, Duration::from_secs(3600));
        assert_eq!(config.event_retention.max_events, 10_000);
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("server.toml");
        std::fs::write(
            &file,
            "data-dir = \"/srv/flotta\"\napi-listen = \"127.0.0.1:9000\"\nauto-approve = false\ncert-lifetime = \"12h\"\nsuperseded-cert-grace = \"5m\"\nhostnames = [\"fleet.example.com\"]\nevent-ttl = \"2h\"\nevent-limit = 50\n",
        )
        .expect("write");
        let cli = Cli::try_parse_from([
            "flotta-server",
            "--config",
            file.to_str().expect("utf-8 path"),
            "--api-listen",
            "127.0.0.1:9001",
            "--event-limit",
            "70",
        ])
        .expect("parses");
        let config = ServerConfig::resolve(&cli.options).expect("resolves");
        assert_eq!(config.data_dir, PathBuf::from("/srv/flotta"));
        assert_eq!(
            config.database,
            DatabaseUrl::Sqlite(PathBuf::from("/srv/flotta/flotta.db"))
        );
        assert_eq!(config.api_listen.to_string(), "127.0.0.1:9001");
        assert!(!config.auto_approve);
        assert_eq!(config.cert_lifetime, Duration::from_secs(12 * 3600));
        assert_eq!(
            config.superseded_certificate_grace,
            Duration::from_secs(300)
        );
        assert_eq!(config.hostnames, vec!["fleet.example.com".to_owned()]);
        assert_eq!(config.event_retention.max_age, Duration::from_secs(7200));
        assert_eq!(config.event_retention.max_events, 70);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("server.toml");
        std::fs::write(&file, "datadir = \"x\"\n").expect("write");
        let options = ServerOptions {
            config: Some(file.clone()),
            ..Default::default()
        };
        let err = ServerConfig::resolve(&options).expect_err("unknown key");
        assert!(err.to_string().contains("datadir"), "{err}");
        std::fs::write(&file, "database = \"mysql://x\"\n").expect("write");
        let err = ServerConfig::resolve(&options).expect_err("bad database");
        assert!(err.to_string().contains("`database`"), "{err}");
    }

    #[test]
    fn oidc_issuers_come_from_file_tables_and_flags_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("server.toml");
        std::fs::write(
            &file,
            "[[oidc]]\nissuer = \"https://id.example.com/realms/a\"\nclient-id = \"flotta\"\n\
             username-claim = \"email\"\ngroups-prefix = \"oidc:\"\nalgorithms = [\"ES256\"]\n\
             clock-skew = \"5s\"\n",
        )
        .expect("write");
        let options = ServerOptions {
            config: Some(file.clone()),
            oidc_issuer: Some("https://other.example.com".into()),
            oidc_client_id: Some("fleet".into()),
            ..Default::default()
        };
        let config = ServerConfig::resolve(&options).expect("resolved");
        assert_eq!(config.oidc.len(), 2);
        let first = &config.oidc[0].policy;
        assert_eq!(first.username_claim, "email");
        assert_eq!(first.groups_prefix, "oidc:");
        assert_eq!(first.algorithms, vec![flotta_core::oidc::Algorithm::ES256]);
        assert_eq!(first.clock_skew, Duration::from_secs(5));
        assert_eq!(config.oidc[1].policy.client_id, "fleet");
        assert_eq!(config.oidc[1].policy.username_claim, "sub");

        for (table, expected) in [
            (
                "issuer = \"http://id.example.com\"\nclient-id = \"f\"",
                "https",
            ),
            (
                "issuer = \"https://id.example.com\"\nclient-id = \"f\"\nalgorithms = [\"HS256\"]",
                "HS256",
            ),
            (
                "issuer = \"https://id.example.com\"\nclient-id = \"f\"\nscopes = [\"profile\"]",
                "openid",
            ),
            ("issuer = \"https://id.example.com\"", "client-id"),
        ] {
            std::fs::write(&file, format!("[[oidc]]\n{table}\n")).expect("write");
            let options = ServerOptions {
                config: Some(file.clone()),
                ..Default::default()
            };
            let error = ServerConfig::resolve(&options)
                .expect_err(table)
                .to_string();
            assert!(error.contains(expected), "{table}: {error}");
        }
    }

    #[test]
    fn the_secret_key_comes_from_the_flag_the_file_or_the_data_dir() {
        let defaults = ServerConfig::resolve(&ServerOptions::default()).expect("defaults");
        assert_eq!(
            defaults.secret_key_path(),
            PathBuf::from("flotta-data/secret-key")
        );
        assert!(defaults.previous_secret_key_files.is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("server.toml");
        std::fs::write(
            &file,
            "secret-key-file = \"/etc/flotta/key\"\nprevious-secret-key-files = [\"/etc/flotta/old\"]\n",
        )
        .expect("write");
        let from_file = ServerConfig::resolve(&ServerOptions {
            config: Some(file.clone()),
            ..Default::default()
        })
        .expect("file");
        assert_eq!(
            from_file.secret_key_path(),
            PathBuf::from("/etc/flotta/key")
        );
        assert_eq!(
            from_file.previous_secret_key_files,
            vec![PathBuf::from("/etc/flotta/old")]
        );
        let from_flag = ServerConfig::resolve(&ServerOptions {
            config: Some(file),
            secret_key_file: Some("/run/key".into()),
            previous_secret_key_file: vec!["/run/old".into()],
            ..Default::default()
        })
        .expect("flags");
        assert_eq!(from_flag.secret_key_path(), PathBuf::from("/run/key"));
        assert_eq!(
            from_flag.previous_secret_key_files,
            vec![PathBuf::from("/run/old")]
        );
    }

    #[test]
    fn database_urls_parse_and_hide_passwords() {
        assert_eq!(
            "sqlite:///var/lib/f.db".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Sqlite(PathBuf::from("/var/lib/f.db")))
        );
        let pg: DatabaseUrl = "postgres://flotta:hunter2@db:5432/flotta"
            .parse()
            .expect("postgres");
        assert_eq!(pg.to_string(), "postgres://flotta:***@db:5432/flotta");
        assert!(!format!("{pg:?}").contains("hunter2"));
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn lifetimes_need_a_unit_and_a_positive_number() {
        assert_eq!(
            "90d".parse::<Lifetime>(),
            Ok(Lifetime(Duration::from_secs(90 * 86_400)))
        );
        assert_eq!(
            "30m".parse::<Lifetime>(),
            Ok(Lifetime(Duration::from_secs(1800)))
        );
        for bad in ["90", "d", "0h", "-1d", "5w", "99999999999999999999d"] {
            assert!(bad.parse::<Lifetime>().is_err(), "{bad}");
        }
    }

    #[test]
    fn token_subcommand_takes_a_role() {
        let cli = Cli::try_parse_from([
            "flotta-server",
            "token",
            "create",
            "--role",
            "viewer",
            "--data-dir",
            "/tmp/x",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Token {
                action: TokenCommand::Create {
                    role: Some(TokenRole::Viewer),
                    ..
                }
            })
        ));
        assert_eq!(cli.options.data_dir, Some(PathBuf::from("/tmp/x")));
        assert!(
            Cli::try_parse_from(["flotta-server", "token", "create", "--role", "root"]).is_err()
        );
        assert!(Cli::try_parse_from(["flotta-server", "--auto-approve", "maybe"]).is_err());
    }
}
