//! Signing in with OpenID Connect: what `flotta login` does, for any program.
//!
//! The server says which issuers it trusts at
//! [`AUTH_CONFIG_PATH`](flotta_core::oidc::AUTH_CONFIG_PATH) ([`fetch_auth_config`]).
//! [`Issuer::discover`] reads an issuer's discovery document; then either
//! - the authorization-code flow with PKCE (RFC 7636) and a loopback redirect
//!   (RFC 8252): [`LoopbackRedirect`] listens on `127.0.0.1`, the user opens
//!   [`Issuer::authorization_url`] in a browser, [`LoopbackRedirect::wait`]
//!   receives the code and [`Issuer::exchange_code`] turns it into tokens;
//! - or the device-authorization grant (RFC 8628) where no browser runs on the same
//!   machine: [`Issuer::start_device`], then [`Issuer::poll_device`] (with PKCE too).
//!
//! [`Issuer::refresh`] renews the tokens with the refresh token. The server is sent
//! the ID token, whose audience is the client id (as kubectl's OIDC support does).

use std::time::Duration;

use flotta_core::oidc::{AuthConfig, Discovery};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// What went wrong while signing in; the message says what and where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoginError(pub String);

type Result<T> = std::result::Result<T, LoginError>;

fn fail(message: impl Into<String>) -> LoginError {
    LoginError(message.into())
}

/// How long one request to the server or the issuer may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTPS client trusting `ca_pem`, or the system's trust store when empty.
pub fn https_client(ca_pem: &str) -> Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_pem.trim().is_empty() {
        for certificate in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(certificate);
        }
    } else {
        for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let certificate = certificate.map_err(|e| fail(format!("CA certificate PEM: {e}")))?;
            roots
                .add(certificate)
                .map_err(|e| fail(format!("CA certificate: {e}")))?;
        }
    }
    if roots.is_empty() {
        return Err(fail("no trusted CA certificate"));
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| fail(e.to_string()))
}

/// The issuers the server at `server` trusts (its management API's base URL; its CA
/// in `ca_pem`).
pub async fn fetch_auth_config(server: &str, ca_pem: &str) -> Result<AuthConfig> {
    let url = format!(
        "{}{}",
        server.trim_end_matches('/'),
        flotta_core::oidc::AUTH_CONFIG_PATH
    );
    let response = https_client(ca_pem)?.get(&url).send().await.map_err(|e| {
        fail(format!(
            "GET {url}: {}",
            flotta_core::error_chain::error_chain(&e)
        ))
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("GET {url} answered {status}")));
    }
    response.json().await.map_err(|e| {
        fail(format!(
            "GET {url}: the answer is not an auth configuration: {e}"
        ))
    })
}

/// The tokens an issuer returned.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// The ID token: what the management API is sent.
    pub id_token: String,
    /// The access token.
    #[serde(default)]
    pub access_token: String,
    /// The refresh token, when the issuer gave one.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A device authorization in progress (RFC 8628 §3.2).
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    /// The code the poll sends.
    pub device_code: String,
    /// The code the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the user code in it, when the issuer gives one.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

/// An OAuth error answer (RFC 6749 §5.2).
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// An issuer, discovered.
#[derive(Debug, Clone)]
pub struct Issuer {
    discovery: Discovery,
    client_id: String,
    http: reqwest::Client,
}

impl Issuer {
    /// Reads `issuer`'s discovery document, trusting `ca_pem` (or the system's trust
    /// store when empty); `client_id` is the public client to sign in with.
    pub async fn discover(issuer: &str, client_id: &str, ca_pem: &str) -> Result<Self> {
        let http = https_client(ca_pem)?;
        let url = flotta_core::oidc::discovery_url(issuer);
        let response = http.get(&url).send().await.map_err(|e| {
            fail(format!(
                "cannot read the discovery document {url}: {}",
                flotta_core::error_chain::error_chain(&e)
            ))
        })?;
        if !response.status().is_success() {
            return Err(fail(format!("GET {url} answered {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        let discovery = Discovery::parse(&body, issuer).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            discovery,
            client_id: client_id.to_owned(),
            http,
        })
    }

    /// The discovery document.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    fn token_endpoint(&self) -> Result<&str> {
        self.discovery.token_endpoint.as_deref().ok_or_else(|| {
            fail(format!(
                "the issuer {} publishes no token_endpoint",
                self.discovery.issuer
            ))
        })
    }

    /// The URL a browser opens to sign in: the authorization-code flow with PKCE
    /// (`S256` of `verifier`), back to `redirect_uri` with `state`.
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        scopes: &[String],
        state: &str,
        verifier: &str,
    ) -> Result<String> {
        let endpoint = self
            .discovery
            .authorization_endpoint
            .as_deref()
            .ok_or_else(|| {
                fail(format!(
                    "the issuer {} publishes no authorization_endpoint",
                    self.discovery.issuer
                ))
            })?;
        let challenge = flotta_core::oidc::pkce_challenge(verifier);
        let scope = scopes.join(" ");
        let url = reqwest::Url::parse_with_params(
            endpoint,
            [
                ("response_type", "code"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", redirect_uri),
                ("scope", scope.as_str()),
                ("state", state),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| fail(format!("authorization_endpoint {endpoint:?}: {e}")))?;
        Ok(url.into())
    }

    /// Exchanges an authorization code for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Tokens> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", &self.client_id),
            ("code_verifier", verifier),
        ])
        .await
        .map_err(|e| e.into_error())
    }

    /// Renews the tokens with a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.client_id),
        ])
        .await
        .map_err(|e| e.into_error())
    }

    /// Starts a device authorization, with a PKCE challenge (some issuers, Keycloak
    /// among them, require one of public clients; others ignore it): poll with the
    /// same `verifier`.
    pub async fn start_device(
        &self,
        scopes: &[String],
        verifier: &str,
    ) -> Result<DeviceAuthorization> {
        let endpoint = self
            .discovery
            .device_authorization_endpoint
            .as_deref()
            .ok_or_else(|| {
                fail(format!(
                    "the issuer {} does not offer the device grant (no device_authorization_endpoint); sign in without --device",
                    self.discovery.issuer
                ))
            })?;
        let scope = scopes.join(" ");
        let challenge = flotta_core::oidc::pkce_challenge(verifier);
        let response = self
            .http
            .post(endpoint)
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("scope", &scope),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .map_err(|e| fail(format!("POST {endpoint}: {e}")))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(describe_error(endpoint, status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| fail(format!("POST {endpoint}: not a device authorization: {e}")))
    }

    /// Polls until the user approved the device authorization (or refused it, or it
    /// expired), at the interval the issuer asks for.
    pub async fn poll_device(
        &self,
        authorization: &DeviceAuthorization,
        verifier: &str,
    ) -> Result<Tokens> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(authorization.expires_in);
        let mut interval = Duration::from_secs(authorization.interval.max(1));
        loop {
            tokio::time::sleep(interval).await;
            match self
                .token_request(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &authorization.device_code),
                    ("client_id", &self.client_id),
                    ("code_verifier", verifier),
                ])
                .await
            {
                Ok(tokens) => return Ok(tokens),
                Err(TokenFailure::OAuth { error, .. }) if error == "authorization_pending" => {}
                Err(TokenFailure::OAuth { error, .. }) if error == "slow_down" => {
                    interval += Duration::from_secs(5);
                }
                Err(other) => return Err(other.into_error()),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(fail(
                    "the device code expired before the sign-in was approved",
                ));
            }
        }
    }

    async fn token_request(
        &self,
        form: &[(&str, &str)],
    ) -> std::result::Result<Tokens, TokenFailure> {
        let endpoint = self.token_endpoint().map_err(TokenFailure::Other)?;
        let response = self
            .http
            .post(endpoint)
            .form(form)
            .send()
            .await
            .map_err(|e| TokenFailure::Other(fail(format!("POST {endpoint}: {e}"))))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| TokenFailure::Other(fail(e.to_string())))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                TokenFailure::Other(fail(format!(
                    "POST {endpoint}: the answer has no ID token (is `openid` among the scopes?): {e}"
                )))
            });
        }
        match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(answer) => Err(TokenFailure::OAuth {
                error: answer.error,
                description: answer.error_description,
                endpoint: endpoint.to_owned(),
            }),
            Err(_) => Err(TokenFailure::Other(describe_error(endpoint, status, &body))),
        }
    }
}

enum TokenFailure {
    OAuth {
        error: String,
        description: Option<String>,
        endpoint: String,
    },
    Other(LoginError),
}

impl TokenFailure {
    fn into_error(self) -> LoginError {
        match self {
            TokenFailure::OAuth {
                error,
                description,
                endpoint,
            } => fail(match description {
                Some(description) => format!("{endpoint} refused: {error}: {description}"),
                None => format!("{endpoint} refused: {error}"),
            }),
            TokenFailure::Other(error) => error,
        }
    }
}

fn describe_error(endpoint: &str, status: reqwest::StatusCode, body: &[u8]) -> LoginError {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(300).collect();
    fail(format!("POST {endpoint} answered {status}: {text}"))
}

/// A random URL-safe string of `bytes` random bytes (PKCE verifiers, states).
pub fn random_token(bytes: usize) -> String {
    use base64::Engine as _;
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}

/// The loopback listener the browser is sent back to (RFC 8252 §7.3).
#[derive(Debug)]
pub struct LoopbackRedirect {
    listener: TcpListener,
    redirect_uri: String,
}

impl LoopbackRedirect {
    /// Listens on `127.0.0.1` at `port` (0: any free port).
    pub async fn bind(port: u16) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| fail(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| fail(e.to_string()))?
            .port();
        Ok(Self {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}/callback"),
        })
    }

    /// The redirect URI to register the authorization with.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits for the browser to come back with the code for `state`, answers it
    /// with a page saying how it went, and returns the code. Requests for other
    /// paths (a browser's favicon) are answered 404 and waited past.
    pub async fn wait(&self, state: &str) -> Result<String> {
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| fail(format!("loopback redirect: {e}")))?;
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let target = text
                .lines()
                .next()
                .and_then(|line| line.split_whitespace().nth(1))
                .unwrap_or("/");
            let url = reqwest::Url::parse(&format!("http://127.0.0.1{target}"))
                .map_err(|e| fail(format!("loopback redirect: {e}")))?;
            if url.path() != "/callback" {
                let _ = respond(&mut stream, "404 Not Found", "Not found.").await;
                continue;
            }
            let query: std::collections::HashMap<String, String> =
                url.query_pairs().into_owned().collect();
            let outcome = if let Some(error) = query.get("error") {
                Err(fail(format!(
                    "the issuer refused the sign-in: {error}{}",
                    query
                        .get("error_description")
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )))
            } else if query.get("state").map(String::as_str) != Some(state) {
                Err(fail(
                    "the redirect's state does not match this sign-in; ignored",
                ))
            } else if let Some(code) = query.get("code") {
                Ok(code.clone())
            } else {
                Err(fail("the redirect carries no code"))
            };
            let page = match &outcome {
                Ok(_) => "Signed in to flotta. You can close this window.".to_owned(),
                Err(error) => format!("Sign-in failed: {error}"),
            };
            let _ = respond(&mut stream, "200 OK", &page).await;
            return outcome;
        }
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    text: &str,
) -> std::io::Result<()> {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>flotta</title></head><body><p>{escaped}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
