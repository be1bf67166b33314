//! One scrape of a workload's metrics endpoint (plain HTTP on the loopback, where
//! the workload's port is published), parsed with [`super::exposition`].

use std::sync::Arc;
use std::time::Duration;

use super::Point;
use super::exposition;
use super::plan::ScrapeTarget;

/// The largest body read from an endpoint: a scrape never holds more in memory.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// Scrapes workload endpoints.
#[derive(Debug, Clone)]
pub struct Scraper {
    client: reqwest::Client,
}

impl Scraper {
    /// A scraper whose scrapes give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        // reqwest wants a TLS configuration even for plain HTTP; it trusts nothing.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { client })
    }

    /// The points `target` serves, filtered by its allow-list, or why none could be
    /// read.
    pub async fn scrape(&self, target: &ScrapeTarget) -> Result<Vec<Point>, String> {
        let mut response = self
            .client
            .get(&target.url)
            .header(
                reqwest::header::ACCEPT,
                "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5,*/*;q=0.1",
            )
            .send()
            .await
            .map_err(|e| {
                format!(
                    "{}: {}",
                    target.url,
                    flotta_core::error_chain::error_chain(&e)
                )
            })?;
        if !response.status().is_success() {
            return Err(format!("{}: HTTP {}", target.url, response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("{}: {e}", target.url))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!("{}: more than {MAX_BODY_BYTES} bytes", target.url));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        let parsed = exposition::parse(&text);
        if parsed.skipped_lines > 0 {
            tracing::debug!(url = %target.url, skipped = parsed.skipped_lines, "unreadable exposition lines skipped");
        }
        Ok(parsed
            .samples
            .into_iter()
            .filter(|s| target.allow.allows(&s.name))
            .map(|s| Point {
                name: s.name,
                labels: s.labels,
                value: s.value,
                timestamp_ms: s.timestamp_ms,
            })
            .collect())
    }
}
