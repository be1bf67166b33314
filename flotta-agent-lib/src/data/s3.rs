//! The S3 requests the upload makes, signed with AWS Signature V4 (presigned URLs
//! from `rusty-s3`, sent with reqwest): `PutObject` for small files, and
//! `CreateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload` for large
//! ones. Path-style URLs (`ENDPOINT/BUCKET/KEY`), which every S3-compatible server
//! accepts.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::actions::{CreateMultipartUpload, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::plan::BucketPlan;

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The settings cannot make a client (a bad endpoint or CA bundle).
    #[error("storage settings: {0}")]
    Settings(String),
    /// The endpoint could not be reached or the exchange broke off.
    #[error("{0}")]
    Transport(String),
    /// The multipart upload named is gone (completed, aborted or expired).
    #[error("the multipart upload is gone (NoSuchUpload)")]
    NoSuchUpload,
    /// Any other answer than success.
    #[error("{operation} answered {status}: {body}")]
    Status {
        /// The request.
        operation: &'static str,
        /// Its HTTP status.
        status: StatusCode,
        /// The start of the answer's body.
        body: String,
    },
}

/// A client of one bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    bucket: Arc<Bucket>,
    credentials: Arc<Credentials>,
    http: reqwest::Client,
}

impl S3Client {
    /// A client of `plan`'s bucket.
    pub fn new(plan: &BucketPlan) -> Result<Self, S3Error> {
        let endpoint = plan
            .endpoint
            .parse()
            .map_err(|e| S3Error::Settings(format!("endpoint {:?}: {e}", plan.endpoint)))?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            plan.name.clone(),
            plan.region.clone(),
        )
        .map_err(|e| S3Error::Settings(format!("bucket {:?}: {e}", plan.name)))?;
        let tls = match plan.ca_bundle.as_deref() {
            Some(ca) => flotta_client::tls_client_config(ca, None)
                .map_err(|e| S3Error::Settings(format!("AWS_CA_BUNDLE: {e}")))?,
            // Plain HTTP: reqwest still wants a TLS configuration; it trusts nothing.
            None => rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| S3Error::Settings(format!("TLS: {e}")))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| S3Error::Settings(format!("HTTP client: {e}")))?;
        Ok(Self {
            bucket: Arc::new(bucket),
            credentials: Arc::new(Credentials::new(
                plan.access_key_id.clone(),
                plan.secret_access_key.clone(),
            )),
            http,
        })
    }

    /// Stores `body` as `key` (one request).
    pub async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<(), S3Error> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let response = send("PutObject", self.http.put(url).body(body)).await?;
        checked("PutObject", response).await.map(drop)
    }

    /// Starts a multipart upload of `key`; its upload ID.
    pub async fn create_multipart_upload(&self, key: &str) -> Result<String, S3Error> {
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        // An explicit zero length: servers may refuse a POST without one (411).
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_LENGTH, "0");
        let response = send("CreateMultipartUpload", request).await?;
        let body = checked("CreateMultipartUpload", response)
            .await?
            .text()
            .await
            .map_err(|e| S3Error::Transport(format!("CreateMultipartUpload: {e}")))?;
        CreateMultipartUpload::parse_response(&body)
            .map(|r| r.upload_id().to_owned())
            .map_err(|e| S3Error::Transport(format!("CreateMultipartUpload answer: {e}")))
    }

    /// Uploads part `number` (from 1) of an upload; the part's ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: Vec<u8>,
    ) -> Result<String, S3Error> {
        let url = self
            .bucket
            .upload_part(Some(&self.credentials), key, number, upload_id)
            .sign(SIGNED_FOR);
        let response = send("UploadPart", self.http.put(url).body(body)).await?;
        let response = checked("UploadPart", response).await?;
        response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| S3Error::Transport("UploadPart answered without an ETag".into()))
    }

    /// Completes an upload from its parts' ETags, in part order.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), S3Error> {
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let response = send("CompleteMultipartUpload", self.http.post(url).body(body)).await?;
        let response = checked("CompleteMultipartUpload", response).await?;
        // S3 may answer 200 with an error document once the body has started.
        let text = response
            .text()
            .await
            .map_err(|e| S3Error::Transport(format!("CompleteMultipartUpload: {e}")))?;
        if text.contains("<Error>") {
            return Err(status_error(
                "CompleteMultipartUpload",
                StatusCode::OK,
                &text,
            ));
        }
        Ok(())
    }

    /// Abandons an upload (its parts are deleted); best effort.
    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) {
        let url = self
            .bucket
            .abort_multipart_upload(Some(&self.credentials), key, upload_id)
            .sign(SIGNED_FOR);
        if let Err(error) = self.http.delete(url).send().await {
            tracing::debug!(%error, key, "abort of a stale multipart upload failed");
        }
    }
}

async fn send(
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, S3Error> {
    request.send().await.map_err(|e| {
        S3Error::Transport(format!(
            "{operation}: {}",
            flotta_core::error_chain::error_chain(&e)
        ))
    })
}

async fn checked(
    operation: &'static str,
    response: reqwest::Response,
) -> Result<reqwest::Response, S3Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(status_error(operation, status, &body))
}

fn status_error(operation: &'static str, status: StatusCode, body: &str) -> S3Error {
    if body.contains("<Code>NoSuchUpload</Code>") {
        return S3Error::NoSuchUpload;
    }
    S3Error::Status {
        operation,
        status,
        body: body.chars().take(300).collect(),
    }
}
