//! Errors of the management API, answered as Kubernetes `Status` objects.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::store::{ResourceKind, StoreError};

/// One reason a request was refused, tied to a field of the object when possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`, `FieldValueRequired`.
    pub reason: &'static str,
    /// Human-readable description.
    pub message: String,
    /// Dotted path of the offending field, e.g. `spec.approved`.
    pub field: String,
}

impl StatusCause {
    /// A cause for an invalid field value.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueInvalid",
            message: message.into(),
            field: field.into(),
        }
    }

    /// A cause for a missing required field.
    pub fn required(field: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            reason: "FieldValueRequired",
            message: format!("{field} is required"),
            field,
        }
    }
}

/// A failed management API request: HTTP code, Kubernetes reason and message.
///
/// Turned into a `Status` object (`kind: Status`, `apiVersion: v1`,
/// `status: Failure`) when answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: StatusCode,
    /// Kubernetes `StatusReason`, e.g. `NotFound`, `Conflict`, `Invalid`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The object concerned, when there is one: (kind, name).
    pub object: Option<(ResourceKind, String)>,
    /// Field-level causes (for `Invalid`).
    pub causes: Vec<StatusCause>,
}

impl ApiError {
    /// An error with no object and no causes.
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            object: None,
            causes: Vec::new(),
        }
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 `Unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// 403 `Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 405 `MethodNotAllowed`.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    /// 415 `UnsupportedMediaType`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
        )
    }

    /// 422 `Invalid` for `kind`/`name`, naming each offending field.
    pub fn invalid(kind: ResourceKind, name: &str, causes: Vec<StatusCause>) -> Self {
        let fields: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        Self {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: format!("{kind} {name:?} is invalid: {}", fields.join("; ")),
            object: Some((kind, name.to_owned())),
            causes,
        }
    }

    /// 500 `InternalError`; the detail goes to the log, not to the client.
    pub fn internal(detail: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error_chain(detail), "management API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "internal error; see the server log",
        )
    }

    /// The `Status` object body.
    pub fn to_status(&self) -> serde_json::Value {
        let mut details = serde_json::Map::new();
        if let Some((kind, name)) = &self.object {
            details.insert("name".into(), json!(name));
            details.insert("group".into(), json!(kind.info().group));
            details.insert("kind".into(), json!(crate::api::plural_of(*kind)));
        }
        if !self.causes.is_empty() {
            details.insert("causes".into(), json!(self.causes));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if !details.is_empty()
            && let Some(map) = status.as_object_mut()
        {
            map.insert("details".into(), serde_json::Value::Object(details));
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut response = (self.code, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound { kind, name, .. } => Self {
                object: Some((*kind, name.clone())),
                ..Self::not_found(error.to_string())
            },
            StoreError::AlreadyExists { kind, name, .. } => Self {
                object: Some((*kind, name.clone())),
                ..Self::new(StatusCode::CONFLICT, "AlreadyExists", error.to_string())
            },
            StoreError::Conflict { kind, name, .. } => Self {
                object: Some((*kind, name.clone())),
                ..Self::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "{error}: the object has been modified; read it again and apply your change to the latest version"
                    ),
                )
            },
            StoreError::Gone { .. } => Self::new(StatusCode::GONE, "Expired", error.to_string()),
            StoreError::InvalidObject {
                kind, name, reason, ..
            } => Self {
                code: StatusCode::UNPROCESSABLE_ENTITY,
                reason: "Invalid",
                message: error.to_string(),
                object: Some((*kind, name.clone())),
                causes: vec![StatusCause::invalid("metadata", reason.clone())],
            },
            StoreError::InvalidContinueToken { .. } => Self::bad_request(error.to_string()),
            StoreError::Backend {
                retryable: true, ..
            } => {
                tracing::warn!(error = %error_chain(&error), "storage busy");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "storage is busy; retry the request",
                )
            }
            _ => Self::internal(&error),
        }
    }
}

/// An error and its causes on one line: `a: b: c` (core's formatter).
pub use flotta_core::error_chain::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_object_has_the_kubernetes_shape() {
        let error = ApiError::invalid(
            ResourceKind::EdgeDevice,
            "d1",
            vec![StatusCause::invalid("spec.heartbeat.periodSeconds", "bad")],
        );
        let status = error.to_status();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["apiVersion"], "v1");
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["kind"], "edgedevices");
        assert_eq!(
            status["details"]["causes"][0]["field"],
            "spec.heartbeat.periodSeconds"
        );
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("spec.heartbeat.periodSeconds"))
        );
    }

    #[test]
    fn store_errors_map_to_kubernetes_codes() {
        let conflict = ApiError::from(StoreError::Conflict {
            kind: ResourceKind::EdgeWorkload,
            namespace: "ns".into(),
            name: "w".into(),
            expected: 1,
            actual: 2,
        });
        assert_eq!(conflict.code, StatusCode::CONFLICT);
        assert_eq!(conflict.reason, "Conflict");
        let gone = ApiError::from(StoreError::Gone {
            requested: 1,
            compacted: 5,
        });
        assert_eq!(gone.code, StatusCode::GONE);
        assert_eq!(gone.reason, "Expired");
    }
}
