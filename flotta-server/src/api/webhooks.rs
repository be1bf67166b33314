//! `POST /webhooks/resourcesyncs/{namespace}/{name}`: a git host asks for a sync at
//! once.
//!
//! Open (no bearer token: git hosts cannot send one), authorized by the shared
//! secret in the Secret the sync's `spec.webhookSecretRef` names (key `token`):
//! sent as `X-Flotta-Webhook-Token` or `X-Gitlab-Token`, or as GitHub's and
//! Gitea's HMAC signature `X-Hub-Signature-256` of the body
//! ([`flotta_core::gitops::webhook_authorized`]). The call records a fresh
//! [`SYNC_REQUESTED_ANNOTATION`] on the sync; the replica running syncs
//! ([`crate::gitops`]) sees the change through the store and syncs at once.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use flotta_core::gitops::{SYNC_REQUESTED_ANNOTATION, WEBHOOK_TOKEN_KEY, webhook_authorized};
use flotta_core::model::ResourceSync;
use serde_json::{Value, json};

use super::ApiState;
use super::status::ApiError;
use crate::store::{ResourceKind, StoreError};

/// Route of the webhook.
pub const RESOURCE_SYNC_WEBHOOK_PATH: &str = "/webhooks/resourcesyncs/{namespace}/{name}";

/// Header carrying the shared secret as is.
pub const TOKEN_HEADER: &str = "x-flotta-webhook-token";

/// GitLab's token header.
pub const GITLAB_TOKEN_HEADER: &str = "x-gitlab-token";

/// GitHub's and Gitea's body signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// How often a write of the annotation is retried when it races another write.
const ATTEMPTS: usize = 5;

pub(crate) async fn resource_sync(
    State(state): State<ApiState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match request_sync(&state, &namespace, &name, &headers, &body).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Success",
                "message": format!("sync of ResourceSync {name:?} in namespace {namespace:?} requested"),
                "code": 202,
            })),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn request_sync(
    state: &ApiState,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let missing = || {
        ApiError::not_found(format!(
            "no ResourceSync {name:?} with a webhook (spec.webhookSecretRef) in namespace {namespace:?}"
        ))
    };
    if flotta_core::validation::dns1123_label(namespace).is_err()
        || flotta_core::validation::dns1123_subdomain(name).is_err()
    {
        return Err(missing());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let token = header(TOKEN_HEADER).or_else(|| header(GITLAB_TOKEN_HEADER));
    let signature = header(SIGNATURE_HEADER);
    if token.is_none() && signature.is_none() {
        return Err(ApiError::unauthorized(format!(
            "the webhook needs the shared secret: header {TOKEN_HEADER} (or {GITLAB_TOKEN_HEADER}), \
             or the body's HMAC-SHA256 in {SIGNATURE_HEADER}"
        )));
    }
    for _ in 0..ATTEMPTS {
        let Some(stored) = state
            .store
            .get(ResourceKind::ResourceSync, namespace, name)
            .await?
        else {
            return Err(missing());
        };
        let sync: ResourceSync = stored.to_resource()?;
        let Some(reference) = &sync.spec.webhook_secret_ref else {
            return Err(missing());
        };
        let secret = state
            .store
            .get(ResourceKind::Secret, namespace, &reference.name)
            .await?
            .and_then(|secret| {
                secret
                    .body
                    .pointer(&format!("/data/{WEBHOOK_TOKEN_KEY}"))
                    .and_then(Value::as_str)
                    .and_then(|encoded| {
                        base64::engine::general_purpose::STANDARD
                            .decode(encoded)
                            .ok()
                    })
            });
        let Some(secret) = secret else {
            tracing::warn!(%namespace, %name, secret = %reference.name, "resource sync webhook: the secret or its key \"token\" is missing");
            return Err(ApiError::unauthorized(
                "the webhook's shared secret is not configured on the server",
            ));
        };
        let trimmed = trim_ascii(&secret);
        if !webhook_authorized(trimmed, token, signature, body) {
            return Err(ApiError::unauthorized(
                "the webhook's shared secret does not match",
            ));
        }
        let mut object = stored.body.clone();
        let requested = format!(
            "{}/{}",
            flotta_core::timestamp::rfc3339(time::OffsetDateTime::now_utc()),
            uuid::Uuid::new_v4().simple()
        );
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = metadata
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(map) = annotations.as_object_mut() {
                map.insert(SYNC_REQUESTED_ANNOTATION.into(), Value::String(requested));
            }
        }
        match state
            .store
            .update(
                ResourceKind::ResourceSync,
                namespace,
                name,
                Some(stored.resource_version),
                object,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "Conflict",
        "the ResourceSync kept changing; try again",
    ))
}

/// The secret without the surrounding white space a file written with `echo` has.
fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}
