//! The device side: the agent-facing Edge API over mutual TLS.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flotta_core::wire::{
    self, EnrolmentInfo, Heartbeat, Message, MessageResponse, RegistrationInfo,
    RegistrationResponse,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::{ClientError, ClientResult};
use crate::management::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, api_error, decode, normalize_base_url,
};
use crate::retry::RetryPolicy;
use crate::tls::{Identity, client_config};

/// How long a pooled connection may go without a request finishing before the
/// client closes it: longer than the longest long-poll (300 s) plus a request's
/// timeout, so that the connection carrying a parked long-poll is never retired
/// under it (a retired one would cost a new TLS handshake per poll).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The same for a client kept on HTTP/1.1, whose idle connections the server
/// closes after 90 s.
const HTTP1_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Base path of every Edge API route.
pub use flotta_core::paths::EDGE_BASE_PATH;

/// What the server said to an enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolmentOutcome {
    /// The request is recorded and waits for approval (200).
    Pending,
    /// The device is already approved (208): register now.
    AlreadyApproved,
}

/// What the server said to a registration.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationOutcome {
    /// The device is not approved yet (404): try again later.
    NotApproved,
    /// The device is registered; this is its new certificate (PEM).
    Registered {
        /// The issued device certificate, PEM.
        certificate_pem: String,
        /// The whole response message, for fields beyond the certificate.
        response: MessageResponse,
    },
}

/// The answer to a configuration poll.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigPoll {
    /// The configuration still has the version the device named (304).
    NotModified,
    /// A configuration the device does not have yet.
    Config {
        /// Its version, to pass back in the next poll.
        etag: String,
        /// The message carrying it (directive `device`), in Flotta's wire shape;
        /// [`Message::content_as`] reads the
        /// [`DeviceConfigurationMessage`](flotta_core::wire::DeviceConfigurationMessage).
        message: Box<Message>,
    },
}

/// Builds an [`EdgeClient`].
#[derive(Debug, Clone)]
pub struct EdgeClientBuilder {
    server: String,
    ca_pem: Option<String>,
    identity: Option<Identity>,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
    local_address: Option<IpAddr>,
    http1_only: bool,
}

impl EdgeClientBuilder {
    /// PEM of the CA that signs the server's certificate (required).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The TLS client identity: the registration certificate before registration,
    /// the device certificate after.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// How idempotent requests (configuration and control polls) are retried.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Timeout of one request, on top of any long-poll wait.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout of establishing a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Binds every outgoing connection to this local (source) address, e.g. one of
    /// several loopback addresses, so that many clients on one host do not share
    /// one address's ephemeral ports. Default: chosen by the operating system.
    pub fn local_address(mut self, address: IpAddr) -> Self {
        self.local_address = Some(address);
        self
    }

    /// Speaks HTTP/1.1 only, one request per connection at a time, as Flotta's
    /// agents do. By default the client offers HTTP/2 (ALPN `h2`) and uses it when
    /// the server agrees, so its long-poll, heartbeats and other calls share one
    /// connection; it falls back to HTTP/1.1 with a server that does not.
    pub fn http1_only(mut self) -> Self {
        self.http1_only = true;
        self
    }

    /// Builds the client.
    pub fn build(self) -> ClientResult<EdgeClient> {
        let base = normalize_base_url(&self.server)?;
        let ca_pem = self
            .ca_pem
            .ok_or_else(|| ClientError::invalid_config("no CA certificate for the Edge API"))?;
        let settings = HttpSettings {
            ca_pem: RwLock::new(ca_pem),
            identity: RwLock::new(self.identity),
            connect_timeout: self.connect_timeout,
            local_address: self.local_address,
            http1_only: self.http1_only,
        };
        let http = settings.client()?;
        Ok(EdgeClient {
            inner: Arc::new(EdgeInner {
                base,
                settings,
                http: RwLock::new(http),
                retry: self.retry,
                timeout: self.timeout,
                control_pending: AtomicBool::new(false),
                report_wanted: AtomicBool::new(false),
            }),
        })
    }
}

#[derive(Debug)]
struct HttpSettings {
    /// The CAs trusted for the server.
    ca_pem: RwLock<String>,
    /// The client certificate presented, if any.
    identity: RwLock<Option<Identity>>,
    connect_timeout: Duration,
    local_address: Option<IpAddr>,
    http1_only: bool,
}

impl HttpSettings {
    /// A client with the current trust and identity.
    fn client(&self) -> ClientResult<reqwest::Client> {
        let ca_pem = read_lock(&self.ca_pem).clone();
        let identity = read_lock(&self.identity).clone();
        self.client_with(&ca_pem, identity.as_ref())
    }

    fn client_with(
        &self,
        ca_pem: &str,
        identity: Option<&Identity>,
    ) -> ClientResult<reqwest::Client> {
        let mut tls = client_config(ca_pem, identity)?;
        let mut builder = reqwest::Client::builder();
        if self.http1_only {
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            // The server closes a kept-alive HTTP/1.1 connection idle for 90 s.
            builder = builder
                .http1_only()
                .pool_idle_timeout(HTTP1_POOL_IDLE_TIMEOUT);
        } else {
            // Offered by ALPN; reqwest speaks whichever the server picks.
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            builder = builder.pool_idle_timeout(POOL_IDLE_TIMEOUT);
        }
        builder
            .use_preconfigured_tls(tls)
            .connect_timeout(self.connect_timeout)
            .local_address(self.local_address)
            .build()
            .map_err(|e| ClientError::Tls {
                what: "HTTP client".into(),
                source: Some(Box::new(e)),
            })
    }
}

#[derive(Debug)]
struct EdgeInner {
    base: String,
    settings: HttpSettings,
    /// Rebuilt on identity swap: a new pool, so no connection made with the old
    /// certificate is reused.
    http: RwLock<reqwest::Client>,
    retry: RetryPolicy,
    timeout: Duration,
    /// Set when an answer said a control command waits
    /// ([`flotta_core::enrolment::CONTROL_PENDING_HEADER`]).
    control_pending: AtomicBool,
    /// Set when an answer asked for a heartbeat now
    /// ([`flotta_core::enrolment::REPORT_WANTED_HEADER`]).
    report_wanted: AtomicBool,
}

/// A client of the Edge API, as a device. Cheap to clone; clones share the
/// identity, so [`EdgeClient::set_identity`] on one is seen by all.
#[derive(Debug, Clone)]
pub struct EdgeClient {
    inner: Arc<EdgeInner>,
}

impl EdgeClient {
    /// Starts building a client for the Edge API at `server` (`https://host:port`).
    pub fn builder(server: impl Into<String>) -> EdgeClientBuilder {
        EdgeClientBuilder {
            server: server.into(),
            ca_pem: None,
            identity: None,
            retry: RetryPolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            local_address: None,
            http1_only: false,
        }
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.inner.base
    }

    /// Replaces the TLS identity (after registration or renewal). Requests started
    /// after this call use the new certificate; connections made with the old one
    /// are not reused.
    pub fn set_identity(&self, identity: Identity) -> ClientResult<()> {
        let settings = &self.inner.settings;
        let ca_pem = read_lock(&settings.ca_pem).clone();
        let http = settings.client_with(&ca_pem, Some(&identity))?;
        *write_lock(&settings.identity) = Some(identity);
        *write_lock(&self.inner.http) = http;
        Ok(())
    }

    /// Replaces the CAs trusted for the server (PEM), as a CA rotation hands them
    /// out with a new certificate. Refused, with the client unchanged, when the PEM
    /// holds no usable certificate.
    pub fn set_trust(&self, ca_pem: &str) -> ClientResult<()> {
        let settings = &self.inner.settings;
        let identity = read_lock(&settings.identity).clone();
        let http = settings.client_with(ca_pem, identity.as_ref())?;
        *write_lock(&settings.ca_pem) = ca_pem.to_owned();
        *write_lock(&self.inner.http) = http;
        Ok(())
    }

    fn http(&self) -> reqwest::Client {
        read_lock(&self.inner.http).clone()
    }

    /// Asks to join the fleet (directive `enrolment`) with Flotta's `enrolment-info`
    /// (target namespace, features, and the labels the device asks for).
    pub async fn enrol(
        &self,
        device_id: &str,
        info: &EnrolmentInfo,
    ) -> ClientResult<EnrolmentOutcome> {
        let (status, _) = self
            .post_data(device_id, wire::directive::ENROLMENT, info)
            .await?;
        Ok(if status == StatusCode::ALREADY_REPORTED {
            EnrolmentOutcome::AlreadyApproved
        } else {
            EnrolmentOutcome::Pending
        })
    }

    /// Sends the CSR (directive `registration`) with Flotta's `registration-info`
    /// (`certificate_request`, `hardware`); the answer's content is a
    /// [`RegistrationResponse`].
    pub async fn register(
        &self,
        device_id: &str,
        info: &RegistrationInfo,
    ) -> ClientResult<RegistrationOutcome> {
        match self
            .post_data(device_id, wire::directive::REGISTRATION, info)
            .await
        {
            Err(error) if error.is_not_found() => Ok(RegistrationOutcome::NotApproved),
            Err(error) => Err(error),
            Ok((_, body)) => {
                let response: MessageResponse = decode(body, "registration response")?;
                let content: RegistrationResponse =
                    response.content_as().map_err(|e| ClientError::Decode {
                        what: "registration response".into(),
                        message: format!("content: {e}"),
                    })?;
                let certificate_pem =
                    content
                        .certificate
                        .filter(|c| !c.is_empty())
                        .ok_or_else(|| ClientError::Decode {
                            what: "registration response".into(),
                            message: "no content.certificate".into(),
                        })?;
                Ok(RegistrationOutcome::Registered {
                    certificate_pem,
                    response,
                })
            }
        }
    }

    /// Reports the device's state (directive `heartbeat`).
    pub async fn heartbeat(&self, device_id: &str, heartbeat: &Heartbeat) -> ClientResult<()> {
        self.post_data(device_id, wire::directive::HEARTBEAT, heartbeat)
            .await?;
        Ok(())
    }

    /// The playbook executions the device should run (directive `ansible`), as
    /// the server decides them. The answer's `content` is a JSON text (Flotta's
    /// shape) or, leniently, a JSON list.
    pub async fn playbook_executions(
        &self,
        device_id: &str,
    ) -> ClientResult<Vec<wire::PlaybookExecution>> {
        let (_, body) = self
            .post_data(device_id, wire::directive::ANSIBLE, &Value::Null)
            .await?;
        let what = "ansible answer content".to_owned();
        let decode = |message: String| ClientError::Decode {
            what: what.clone(),
            message,
        };
        match body.get("content") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(Vec::new()),
            Some(Value::String(text)) => {
                serde_json::from_str(text).map_err(|e| decode(e.to_string()))
            }
            Some(list) => serde_json::from_value(list.clone()).map_err(|e| decode(e.to_string())),
        }
    }

    /// Fetches the device's configuration. With the `etag` of the configuration the
    /// device has, an unchanged one is answered [`ConfigPoll::NotModified`]; with a
    /// `wait`, the server holds the request up to that long until it changes.
    pub async fn get_config(
        &self,
        device_id: &str,
        etag: Option<&str>,
        wait: Option<Duration>,
    ) -> ClientResult<ConfigPoll> {
        let path = format!("{EDGE_BASE_PATH}/data/{}/in", segment(device_id)?);
        let query: Vec<(&str, String)> = wait
            .map(|w| vec![("wait", w.as_secs().to_string())])
            .unwrap_or_default();
        let timeout = self.inner.timeout + wait.unwrap_or_default();
        self.inner
            .retry
            .run(|| async {
                let mut request = self
                    .http()
                    .get(self.url(&path))
                    .query(&query)
                    .timeout(timeout);
                if let Some(etag) = etag {
                    request = request.header(reqwest::header::IF_NONE_MATCH, quoted(etag));
                }
                let response = self.send(Method::GET, &path, request).await?;
                if response.status() == StatusCode::NOT_MODIFIED {
                    return Ok(ConfigPoll::NotModified);
                }
                let etag = response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_start_matches("W/").trim_matches('"').to_owned())
                    .unwrap_or_default();
                let message = decode(self.json_body(&path, response).await?, &path)?;
                Ok(ConfigPoll::Config {
                    etag,
                    message: Box::new(message),
                })
            })
            .await
    }

    /// Whether an answer since the last call said that a control command waits for
    /// the device (the server marks configuration polls so): read it with
    /// [`EdgeClient::control_in`]. Clears the mark.
    pub fn take_control_pending(&self) -> bool {
        self.inner.control_pending.swap(false, Ordering::SeqCst)
    }

    /// Whether an answer since the last call asked for a heartbeat now, whatever
    /// the device's report (the server serves the same version for other reasons,
    /// e.g. a new set revision, and judges the status against it). Clears the mark.
    pub fn take_report_wanted(&self) -> bool {
        self.inner.report_wanted.swap(false, Ordering::SeqCst)
    }

    /// Reads the pending control command; `None` when there is none.
    ///
    /// A deleted device is told `disconnect` in a command, whether its certificate is
    /// still valid or revoked already. A 401 with reason
    /// [`flotta_core::enrolment::Reason::CertificateRevoked`] is an error: the certificate was superseded by
    /// a renewal while its device lives on, which is no reason to remove anything.
    pub async fn control_in(&self, device_id: &str) -> ClientResult<Option<Message>> {
        let path = format!("{EDGE_BASE_PATH}/control/{}/in", segment(device_id)?);
        self.inner
            .retry
            .run(|| async {
                let request = self.http().get(self.url(&path)).timeout(self.inner.timeout);
                let response = self.send(Method::GET, &path, request).await?;
                if response.status() == StatusCode::NO_CONTENT {
                    return Ok(None);
                }
                let body = self.json_body(&path, response).await?;
                if body.is_null() {
                    return Ok(None);
                }
                let message: Message = decode(body, &path)?;
                // The server answers "nothing to do" with an empty command.
                Ok(Some(message).filter(|m| m.directive.as_deref().is_some_and(|d| !d.is_empty())))
            })
            .await
    }

    /// Sends a control message from the device (`POST /control/{id}/out`).
    pub async fn control_out(
        &self,
        device_id: &str,
        directive: &str,
        content: &impl Serialize,
    ) -> ClientResult<Value> {
        let path = format!("{EDGE_BASE_PATH}/control/{}/out", segment(device_id)?);
        let (_, body) = self.post(&path, directive, content).await?;
        Ok(body)
    }

    async fn post_data(
        &self,
        device_id: &str,
        directive: &str,
        content: &impl Serialize,
    ) -> ClientResult<(StatusCode, Value)> {
        let path = format!("{EDGE_BASE_PATH}/data/{}/out", segment(device_id)?);
        self.post(&path, directive, content).await
    }

    /// Posts one message (never retried: not idempotent).
    async fn post(
        &self,
        path: &str,
        directive: &str,
        content: &impl Serialize,
    ) -> ClientResult<(StatusCode, Value)> {
        let content = serde_json::to_value(content).map_err(|source| ClientError::Encode {
            what: format!("{directive} content"),
            source,
        })?;
        let envelope = json!({
            "type": "data",
            "message_id": uuid::Uuid::new_v4().hyphenated().to_string(),
            "version": 1,
            "sent": flotta_core::timestamp::rfc3339(OffsetDateTime::now_utc()),
            "directive": directive,
            "content": content,
        });
        let request = self
            .http()
            .post(self.url(path))
            .json(&envelope)
            .timeout(self.inner.timeout);
        let response = self.send(Method::POST, path, request).await?;
        let status = response.status();
        let body = self.json_body(path, response).await?;
        Ok((status, body))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> ClientResult<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(&self.url(path), e))?;
        let status = response.status();
        if response
            .headers()
            .contains_key(flotta_core::enrolment::CONTROL_PENDING_HEADER)
        {
            self.inner.control_pending.store(true, Ordering::SeqCst);
        }
        if response
            .headers()
            .contains_key(flotta_core::enrolment::REPORT_WANTED_HEADER)
        {
            self.inner.report_wanted.store(true, Ordering::SeqCst);
        }
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            Ok(response)
        } else {
            Err(api_error(method.as_str(), path, response).await)
        }
    }

    async fn json_body(&self, path: &str, response: reqwest::Response) -> ClientResult<Value> {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(&self.url(path), e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            what: path.to_owned(),
            message: e.to_string(),
        })
    }
}

fn quoted(etag: &str) -> String {
    if etag.starts_with('"') || etag.starts_with("W/") {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

fn segment(device_id: &str) -> ClientResult<&str> {
    if device_id.is_empty() || device_id.contains(['/', '?', '#', '%']) {
        return Err(ClientError::InvalidName {
            what: "device id",
            value: device_id.to_owned(),
        });
    }
    Ok(device_id)
}

// A poisoned lock only means another thread panicked mid-swap; the value is
// still whole.
fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_outlives_the_longest_long_poll() {
        // A connection retired under a parked long-poll costs a TLS handshake per
        // poll (it did, at 90 s against 150 s polls).
        let longest =
            Duration::from_secs(flotta_core::reconcile::MAX_LONG_POLL_SECONDS.unsigned_abs())
                + DEFAULT_TIMEOUT;
        assert!(
            POOL_IDLE_TIMEOUT > longest,
            "{POOL_IDLE_TIMEOUT:?} vs {longest:?}"
        );
    }

    #[test]
    fn etags_are_sent_quoted_once() {
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
        assert_eq!(quoted("W/\"abc\""), "W/\"abc\"");
    }

    #[test]
    fn device_ids_that_would_change_the_path_are_refused() {
        assert!(segment("edge-01").is_ok());
        for bad in ["", "a/b", "a?b", "a%b"] {
            assert!(segment(bad).is_err(), "{bad}");
        }
    }
}
