//! `POST .../edgedevicesignedrequests/{name}/approval`: an operator approves or
//! denies an enrolment request in one call. Core's `record_decision` writes the
//! decision (`spec.approved` and the `approved`/`declined` condition); the handler
//! signs its message with the calling token and stores spec, then status.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use flotta_core::enrolment::{EnrolmentDecision, record_decision};
use flotta_core::model::EdgeDeviceSignedRequest;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::{
    ApiResult, ObjectPath, fetch, object_response, record_decision_event, request_object, resolve,
};
use crate::api::auth::Caller;
use crate::api::status::{ApiError, StatusCause};
use crate::edge::enrolment_decision;
use crate::store::{ResourceKind, StoreError};

/// The body of an approval: the decision and, optionally, the operator's words.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalRequest {
    /// `true` approves, `false` denies.
    approved: bool,
    /// Why, kept in the condition's message before the signature.
    #[serde(default)]
    message: Option<String>,
}

/// Longest operator message kept in a condition.
const MAX_MESSAGE_CHARS: usize = 1024;

/// How many times the two writes are retried when a concurrent writer wins.
const ATTEMPTS: usize = 5;

pub(super) async fn approve_or_deny(
    State(state): State<super::ApiState>,
    caller: Option<Extension<Caller>>,
    path: Result<Path<ObjectPath>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    if kind != ResourceKind::EdgeDeviceSignedRequest {
        return Err(ApiError::not_found(format!(
            "{} has no approval subresource; only edgedevicesignedrequests do",
            kind.plural()
        )));
    }
    let body = request_object(&headers, body)?;
    let approval: ApprovalRequest = serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(
            kind,
            &name,
            vec![StatusCause::invalid(
                "body",
                format!("expected {{\"approved\": true|false, \"message\"?: string}}: {e}"),
            )],
        )
    })?;
    let decision = if approval.approved {
        EnrolmentDecision::Approve
    } else {
        EnrolmentDecision::Deny
    };
    let words = approval
        .message
        .map(|m| m.trim().chars().take(MAX_MESSAGE_CHARS).collect::<String>())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("{} through the management API", decision.verb()));
    let message = match caller.as_deref() {
        Some(caller) => format!("{words} {}", caller.signature()),
        None => words,
    };

    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = fetch(&state, kind, &namespace, &name).await?;
        let before = enrolment_decision(&current);
        let mut request: EdgeDeviceSignedRequest =
            serde_json::from_value(current.body.clone()).map_err(|e| ApiError::internal(&e))?;
        record_decision(
            &mut request,
            decision,
            message.clone(),
            OffsetDateTime::now_utc(),
        );
        let decided = serde_json::to_value(&request).map_err(|e| ApiError::internal(&e))?;
        // Spec first: a denial stops approving before it says "declined", an
        // approval takes effect at once.
        let written = state
            .store
            .update(
                kind,
                &namespace,
                &name,
                Some(current.resource_version),
                decided.clone(),
            )
            .await;
        let written = match written {
            Ok(written) => written,
            Err(StoreError::Conflict { .. }) if attempt < ATTEMPTS => continue,
            Err(error) => return Err(error.into()),
        };
        let status = decided.get("status").cloned().unwrap_or(Value::Null);
        match state
            .store
            .update_status(
                kind,
                &namespace,
                &name,
                Some(written.resource_version),
                status,
            )
            .await
        {
            Ok(updated) => {
                record_decision_event(&state, caller.as_deref(), before, &updated);
                return Ok(object_response(StatusCode::OK, &updated));
            }
            Err(StoreError::Conflict { .. }) if attempt < ATTEMPTS => continue,
            Err(error) => return Err(error.into()),
        }
    }
}
