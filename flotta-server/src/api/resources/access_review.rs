//! `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may the caller do
//! this? The Kubernetes body (`spec.resourceAttributes` or
//! `spec.nonResourceAttributes`) and answer (`status.allowed`, `status.reason`), so
//! `kubectl auth can-i` works. The decision is the one every request gets.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use flotta_core::rbac::{RequestAttributes, ResourceAttributes};
use serde_json::{Map, Value, json};

use super::super::ApiState;
use super::super::auth::{Caller, rbac_decision};
use super::super::status::{ApiError, StatusCause};
use super::{ApiResult, request_object};

const KIND: &str = "SelfSubjectAccessReview";
const API_VERSION: &str = "authorization.k8s.io/v1";

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError {
        code: StatusCode::UNPROCESSABLE_ENTITY,
        reason: "Invalid",
        message: format!("{KIND} is invalid: {field}: {message}"),
        object: None,
        causes: vec![StatusCause::invalid(field, message)],
    }
}

fn text(object: &Map<String, Value>, field: &str, path: &str) -> Result<String, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(invalid(
            &format!("{path}.{field}"),
            format!("must be a string, not {other}"),
        )),
    }
}

/// The request a review's `spec` describes.
fn reviewed(spec: &Value) -> Result<RequestAttributes, ApiError> {
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    match (resource, non_resource) {
        (Some(Value::Object(r)), None) => {
            let path = "spec.resourceAttributes";
            let verb = text(r, "verb", path)?;
            if verb.is_empty() {
                return Err(invalid(&format!("{path}.verb"), "required"));
            }
            Ok(RequestAttributes::Resource(ResourceAttributes {
                verb,
                api_group: text(r, "group", path)?,
                resource: text(r, "resource", path)?,
                subresource: text(r, "subresource", path)?,
                namespace: text(r, "namespace", path)?,
                name: text(r, "name", path)?,
            }))
        }
        (None, Some(Value::Object(n))) => {
            let path = "spec.nonResourceAttributes";
            let (url, verb) = (text(n, "path", path)?, text(n, "verb", path)?);
            if url.is_empty() || verb.is_empty() {
                return Err(invalid(path, "path and verb are required"));
            }
            Ok(RequestAttributes::NonResource { path: url, verb })
        }
        (Some(_), Some(_)) => Err(invalid(
            "spec",
            "exactly one of resourceAttributes and nonResourceAttributes",
        )),
        (Some(_), None) => Err(invalid("spec.resourceAttributes", "must be an object")),
        (None, Some(_)) => Err(invalid("spec.nonResourceAttributes", "must be an object")),
        (None, None) => Err(invalid(
            "spec.resourceAttributes",
            "one of resourceAttributes and nonResourceAttributes is required",
        )),
    }
}

pub(super) async fn self_subject_access_review(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Some(Extension(caller)) = caller else {
        return Err(ApiError::unauthorized("a bearer token is required"));
    };
    let review = request_object(&headers, body)?;
    for (field, wanted) in [("kind", KIND), ("apiVersion", API_VERSION)] {
        match review.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == wanted => {}
            Some(other) => return Err(invalid(field, format!("must be {wanted:?}, not {other}"))),
        }
    }
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let request = reviewed(&spec)?;
    let decision = rbac_decision(&state, &caller, &request).await?;
    let mut status = json!({"allowed": decision.allowed, "reason": decision.reason});
    if !decision.allowed
        && let Some(map) = status.as_object_mut()
    {
        map.insert("denied".into(), json!(true));
    }
    let answer = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `/apis/authorization.k8s.io/v1`: discovery of the review kind.
pub(super) async fn discovery() -> Json<Value> {
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [{
            "name": "selfsubjectaccessreviews",
            "singularName": "selfsubjectaccessreview",
            "namespaced": false,
            "kind": KIND,
            "verbs": ["create"],
        }],
    }))
}
