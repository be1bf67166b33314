//! One push to the remote-write endpoint, and what its answer means: 2xx took the
//! samples; 429, 5xx and transport failures are worth retrying; any other 4xx
//! refuses these samples for good (retrying would only block the buffer).

use std::sync::Arc;
use std::time::Duration;

use super::plan::ReceiverPlan;
use super::remote_write::{self, WriteRequest};

/// How much of a refusal's body is kept for the event.
const BODY_EXCERPT: usize = 512;

/// A remote-write endpoint.
#[derive(Debug, Clone)]
pub struct Receiver {
    url: String,
    client: reqwest::Client,
}

/// Why a push did not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The receiver's settings cannot be used (the URL, the CA); nothing is sent
    /// until the configuration changes.
    #[error("unusable metrics receiver settings: {reason}")]
    Settings {
        /// What is wrong.
        reason: String,
    },
    /// No answer: connection refused, TLS failure, timeout.
    #[error("metrics receiver {url} unreachable")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The receiver answered with a status other than 2xx.
    #[error("metrics receiver answered HTTP {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
}

impl PushError {
    /// Whether the same samples may succeed later: a transport failure, 429 or 5xx.
    /// Any other answer refuses them for good.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Settings { .. } => false,
        }
    }
}

impl Receiver {
    /// A client for `plan`'s endpoint: `http`, or `https` trusting `plan.ca_pem`.
    pub fn new(plan: &ReceiverPlan) -> Result<Self, PushError> {
        let settings = |reason: String| PushError::Settings { reason };
        let parsed = reqwest::Url::parse(&plan.url)
            .map_err(|e| settings(format!("url {:?}: {e}", plan.url)))?;
        let tls = match (parsed.scheme(), plan.ca_pem.as_deref()) {
            ("https", Some(ca)) => flotta_client::tls_client_config(ca, None)
                .map_err(|e| settings(format!("caCert: {e}")))?,
            ("https", None) => {
                return Err(settings(format!(
                    "url {:?} is https but no caCert is set (receiverConfiguration.caSecretName)",
                    plan.url
                )));
            }
            ("http", _) => {
                // reqwest wants a TLS configuration even for plain HTTP; it trusts
                // nothing.
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| settings(format!("TLS: {e}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
            }
            (other, _) => return Err(settings(format!("url scheme {other:?} is not http(s)"))),
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(plan.timeout)
            .connect_timeout(plan.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| settings(format!("HTTP client: {e}")))?;
        Ok(Self {
            url: plan.url.clone(),
            client,
        })
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `request` as one remote-write 1.0 push.
    pub async fn push(&self, request: &WriteRequest) -> Result<(), PushError> {
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, remote_write::CONTENT_TYPE)
            .header(
                reqwest::header::CONTENT_ENCODING,
                remote_write::CONTENT_ENCODING,
            )
            .header(remote_write::VERSION_HEADER, remote_write::VERSION)
            .header(
                reqwest::header::USER_AGENT,
                concat!("flotta-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(remote_write::encode_body(request))
            .send()
            .await
            .map_err(|source| PushError::Unreachable {
                url: self.url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(PushError::Status {
            status: status.as_u16(),
            body: body.trim().chars().take(BODY_EXCERPT).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(url: &str, ca: Option<&str>) -> ReceiverPlan {
        ReceiverPlan {
            url: url.into(),
            timeout: Duration::from_secs(1),
            batch: 10,
            ca_pem: ca.map(str::to_owned),
        }
    }

    #[test]
    fn answers_say_whether_to_retry() {
        let status = |status| PushError::Status {
            status,
            body: String::new(),
        };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(404).is_retryable());
    }

    #[test]
    fn unusable_settings_are_refused_with_the_reason() {
        let reason = |url, ca| match Receiver::new(&plan(url, ca)) {
            Err(PushError::Settings { reason }) => reason,
            other => panic!("expected Settings, got {other:?}"),
        };
        assert!(reason("not a url", None).contains("url"));
        assert!(reason("https://m.example/write", None).contains("no caCert"));
        assert!(reason("https://m.example/write", Some("garbage")).contains("caCert"));
        assert!(reason("ftp://m.example/write", None).contains("scheme"));
        assert!(Receiver::new(&plan("http://127.0.0.1:9/api/v1/write", None)).is_ok());
    }
}
