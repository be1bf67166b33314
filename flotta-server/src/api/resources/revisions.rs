//! `GET .../edgeworkloads/{name}/revisions` and `.../edgedevicesets/{name}/revisions`:
//! the revisions the server keeps of a workload or a device set (the rollout
//! record's history in `status.rollout`), oldest first, each marked current,
//! previous or history, as a `WorkloadRevisionList` or `DeviceSetRevisionList`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use flotta_core::model::{API_VERSION, EdgeDeviceSet, EdgeWorkload};
use flotta_core::reconcile::{RevisionEntry, RolloutRecord, RolloutSubject};
use serde_json::{Value, json};

use super::{ApiResult, ObjectPath, fetch, resolve};
use crate::api::status::ApiError;
use crate::store::ResourceKind;

/// Kind of the list answered for a workload.
pub const REVISION_LIST_KIND: &str = "WorkloadRevisionList";

/// Kind of the list answered for a device set.
pub const SET_REVISION_LIST_KIND: &str = "DeviceSetRevisionList";

/// The history of `subject`'s rollout record, each entry with its role.
fn items<T: RolloutSubject>(subject: &T) -> Vec<Value> {
    let record = RolloutRecord::of(subject).unwrap_or_default();
    record
        .revisions
        .iter()
        .map(|revision| {
            let id = Some(revision.id());
            let role = if record.current_revision.as_deref() == id {
                "current"
            } else if record.previous_revision.as_deref() == id {
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
        .collect()
}

pub(super) async fn list_revisions(
    State(state): State<super::ApiState>,
    path: Result<Path<ObjectPath>, PathRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    let (list_kind, owner_field) = match kind {
        ResourceKind::EdgeWorkload => (REVISION_LIST_KIND, "workload"),
        ResourceKind::EdgeDeviceSet => (SET_REVISION_LIST_KIND, "deviceSet"),
        _ => {
            return Err(ApiError::not_found(format!(
                "{} has no revisions subresource; only edgeworkloads and edgedevicesets do",
                kind.plural()
            )));
        }
    };
    let stored = fetch(&state, kind, &namespace, &name).await?;
    let items = if kind == ResourceKind::EdgeWorkload {
        items(
            &stored
                .to_resource::<EdgeWorkload>()
                .map_err(ApiError::from)?,
        )
    } else {
        items(
            &stored
                .to_resource::<EdgeDeviceSet>()
                .map_err(ApiError::from)?,
        )
    };
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": list_kind,
        "metadata": {"resourceVersion": stored.resource_version.to_string()},
        owner_field: {"namespace": namespace, "name": name},
        "items": items,
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}
