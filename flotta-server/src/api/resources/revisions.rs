//! `GET .../edgeworkloads/{name}/revisions`: the revisions the server keeps of a
//! workload (the rollout record's history in `status.rollout`), oldest first, each
//! marked current or previous, as a `WorkloadRevisionList`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use flotta_core::model::{API_VERSION, EdgeWorkload};
use flotta_core::reconcile::RolloutRecord;
use serde_json::{Value, json};

use super::{ApiResult, ObjectPath, fetch, resolve};
use crate::api::status::ApiError;
use crate::store::ResourceKind;

/// Kind of the list answered.
pub const REVISION_LIST_KIND: &str = "WorkloadRevisionList";

pub(super) async fn list_revisions(
    State(state): State<super::ApiState>,
    path: Result<Path<ObjectPath>, PathRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    if kind != ResourceKind::EdgeWorkload {
        return Err(ApiError::not_found(format!(
            "{} has no revisions subresource; only edgeworkloads do",
            kind.plural()
        )));
    }
    let stored = fetch(&state, kind, &namespace, &name).await?;
    let workload: EdgeWorkload = stored.to_resource().map_err(ApiError::from)?;
    let record = RolloutRecord::of(&workload).unwrap_or_default();
    let items: Vec<Value> = record
        .revisions
        .iter()
        .map(|revision| {
            let role = if record.current_revision.as_deref() == Some(revision.revision.as_str()) {
                "current"
            } else if record.previous_revision.as_deref() == Some(revision.revision.as_str()) {
                "previous"
            } else {
                "history"
            };
            let mut item = serde_json::to_value(revision).unwrap_or(Value::Null);
            if let Value::Object(fields) = &mut item {
                fields.insert("role".into(), Value::String(role.into()));
            }
            item
        })
        .collect();
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": REVISION_LIST_KIND,
        "metadata": {"resourceVersion": stored.resource_version.to_string()},
        "workload": {"namespace": namespace, "name": name},
        "items": items,
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}
