//! OIDC bearer tokens for the management API: the server's side of
//! [`flotta_core::oidc`].
//!
//! Core decides whether a token is valid and who it names; this module does the IO.
//! For each configured issuer it fetches the discovery document and the signing
//! keys (JWKS) over TLS, caches them, and fetches them again when a token names a
//! key the cache lacks (the issuer rotated its keys; at most once per
//! `keys_min_refresh`), and at least every `keys_max_age` (keys the issuer
//! withdrew stop being accepted).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotta_core::oidc::{
    AuthConfig, AuthProvider, Discovery, IssuerPolicy, KeySet, OidcError, VerifiedToken,
};
use rustls::pki_types::pem::PemObject as _;
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// How often the keys are fetched again at most when a token names an unknown key.
pub const DEFAULT_KEYS_MIN_REFRESH: Duration = Duration::from_secs(10);

/// How long fetched keys are used before they are fetched again.
pub const DEFAULT_KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

/// How long a request to the issuer may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The scopes clients ask for when the configuration names none.
pub const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "email"];

/// One trusted issuer, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIssuerConfig {
    /// What its tokens must be and how they map to users (core's rules).
    pub policy: IssuerPolicy,
    /// PEM file of the CA that signs the issuer's TLS certificate; the system's
    /// trust store when `None`.
    pub certificate_authority: Option<PathBuf>,
    /// The scopes `flotta login` and the console ask for.
    pub scopes: Vec<String>,
    /// See [`DEFAULT_KEYS_MIN_REFRESH`].
    pub keys_min_refresh: Duration,
    /// See [`DEFAULT_KEYS_MAX_AGE`].
    pub keys_max_age: Duration,
}

impl OidcIssuerConfig {
    /// An issuer with the default policy, system trust store and timings.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            policy: IssuerPolicy::new(issuer, client_id),
            certificate_authority: None,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            keys_min_refresh: DEFAULT_KEYS_MIN_REFRESH,
            keys_max_age: DEFAULT_KEYS_MAX_AGE,
        }
    }
}

/// Why the authenticator could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OIDC issuer {issuer}: {message}")]
pub struct OidcSetupError {
    /// The issuer.
    pub issuer: String,
    /// What is wrong.
    pub message: String,
}

/// Verifies OIDC bearer tokens against the configured issuers.
#[derive(Debug)]
pub struct OidcAuthenticator {
    issuers: Vec<Issuer>,
}

#[derive(Debug)]
struct Issuer {
    config: OidcIssuerConfig,
    http: reqwest::Client,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    keys: Arc<KeySet>,
    discovery: Option<Discovery>,
    fetched_at: Option<Instant>,
}

impl OidcAuthenticator {
    /// An authenticator for `issuers`; fails on an unusable policy or CA file. Nothing
    /// is fetched yet: an issuer that is down at start-up does not stop the server.
    pub fn new(issuers: &[OidcIssuerConfig]) -> Result<Self, OidcSetupError> {
        let issuers = issuers
            .iter()
            .map(|config| {
                let fail = |message: String| OidcSetupError {
                    issuer: config.policy.issuer.clone(),
                    message,
                };
                config.policy.validate().map_err(fail)?;
                let http = http_client(config).map_err(fail)?;
                Ok(Issuer {
                    config: config.clone(),
                    http,
                    cache: Mutex::new(Cache::default()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { issuers })
    }

    /// An authenticator trusting no issuer: only the server's own tokens are used.
    pub fn empty() -> Self {
        Self {
            issuers: Vec::new(),
        }
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// What clients are told about signing in; each issuer's endpoints when its
    /// discovery document could be read.
    pub async fn auth_config(&self) -> AuthConfig {
        let mut providers = Vec::new();
        for issuer in &self.issuers {
            let discovery = match issuer.keys(false).await {
                Ok(_) => issuer.cache.lock().await.discovery.clone(),
                Err(error) => {
                    tracing::warn!(issuer = %issuer.config.policy.issuer, %error, "cannot read the OIDC issuer's discovery document");
                    None
                }
            };
            providers.push(AuthProvider {
                issuer: issuer.config.policy.issuer.clone(),
                client_id: issuer.config.policy.client_id.clone(),
                scopes: issuer.config.scopes.clone(),
                authorization_endpoint: discovery
                    .as_ref()
                    .and_then(|d| d.authorization_endpoint.clone()),
                token_endpoint: discovery.and_then(|d| d.token_endpoint),
            });
        }
        AuthConfig { providers }
    }

    /// The origins (`https://host[:port]`) of the issuers' endpoints the console's
    /// scripts call (the token endpoint), for its Content-Security-Policy.
    pub fn issuer_origins(&self) -> Vec<String> {
        self.issuers
            .iter()
            .filter_map(|issuer| reqwest::Url::parse(&issuer.config.policy.issuer).ok())
            .map(|url| url.origin().ascii_serialization())
            .collect()
    }

    /// The user a JWT names, if one of the issuers vouches for it now.
    pub async fn authenticate(&self, token: &str) -> Result<VerifiedToken, OidcError> {
        let claimed = flotta_core::oidc::claimed_issuer(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.policy.issuer == claimed)
            .ok_or(OidcError::UntrustedIssuer(claimed))?;
        let keys = issuer.keys(false).await?;
        let now = OffsetDateTime::now_utc();
        match flotta_core::oidc::verify(token, &issuer.config.policy, &keys, now) {
            Err(OidcError::UnknownKey(kid)) => {
                // The issuer may have rotated its keys since the last fetch.
                let fresh = issuer.keys(true).await?;
                if Arc::ptr_eq(&fresh, &keys) {
                    return Err(OidcError::UnknownKey(kid));
                }
                flotta_core::oidc::verify(token, &issuer.config.policy, &fresh, now)
            }
            other => other,
        }
    }
}

impl Issuer {
    /// The cached keys, fetched again when too old, or when `unknown_key` and the last
    /// fetch is older than the minimum refresh interval.
    async fn keys(&self, unknown_key: bool) -> Result<Arc<KeySet>, OidcError> {
        let mut cache = self.cache.lock().await;
        let age = cache.fetched_at.map(|at| at.elapsed());
        let stale = match age {
            None => true,
            Some(age) if age >= self.config.keys_max_age => true,
            Some(age) => unknown_key && age >= self.config.keys_min_refresh,
        };
        if stale {
            match self.fetch_keys().await {
                Ok((discovery, keys)) => {
                    cache.discovery = Some(discovery);
                    tracing::info!(
                        issuer = %self.config.policy.issuer,
                        keys = keys.len(),
                        "fetched the OIDC issuer's signing keys"
                    );
                    cache.keys = Arc::new(keys);
                    cache.fetched_at = Some(Instant::now());
                }
                // Keys already held stay usable while the issuer cannot be reached.
                Err(error) if cache.fetched_at.is_some() => {
                    tracing::warn!(issuer = %self.config.policy.issuer, %error, "cannot refresh the OIDC signing keys; using the cached ones");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(cache.keys.clone())
    }

    async fn fetch_keys(&self) -> Result<(Discovery, KeySet), OidcError> {
        let issuer = &self.config.policy.issuer;
        let discovery_url = flotta_core::oidc::discovery_url(issuer);
        let body = self
            .get(&discovery_url)
            .await
            .map_err(OidcError::Discovery)?;
        let discovery = Discovery::parse(&body, issuer)?;
        let body = self
            .get(&discovery.jwks_uri)
            .await
            .map_err(OidcError::Keys)?;
        let keys = KeySet::parse(&body)?;
        if keys.is_empty() {
            return Err(OidcError::Keys(format!(
                "the JWKS of {issuer} ({}) has no signing key",
                discovery.jwks_uri
            )));
        }
        Ok((discovery, keys))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self.http.get(url).send().await.map_err(|e| {
            format!(
                "cannot fetch {url}: {}",
                flotta_core::error_chain::error_chain(&e)
            )
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("fetching {url} answered {status}"));
        }
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("cannot read {url}: {e}"))
    }
}

/// An HTTPS client trusting the issuer's CA file, or the system's trust store.
fn http_client(config: &OidcIssuerConfig) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.certificate_authority {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("certificate-authority {}: {e}", path.display()))?;
            let mut found = 0;
            for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let certificate = certificate.map_err(|e| {
                    format!("certificate-authority {}: not PEM: {e}", path.display())
                })?;
                roots
                    .add(certificate)
                    .map_err(|e| format!("certificate-authority {}: {e}", path.display()))?;
                found += 1;
            }
            if found == 0 {
                return Err(format!(
                    "certificate-authority {}: no CERTIFICATE block",
                    path.display()
                ));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for certificate in native.certs {
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err("the system trust store has no certificate; name the issuer's CA with certificate-authority".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(FETCH_TIMEOUT)
        .https_only(true)
        .build()
        .map_err(|e| e.to_string())
}
