//! API tokens: list, create (the secret is shown once) and delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::ApiState;
use super::super::status::ApiError;
use super::{ApiResult, path_params, request_object};
use time::OffsetDateTime;

use crate::store::{ApiToken, TokenRole, TokenSpec};

fn token_json(token: &ApiToken) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "role": token.role.map(TokenRole::as_str),
        "groups": token.groups,
        "description": token.description,
        "createdAt": flotta_core::timestamp::rfc3339(token.created_at),
        "expiresAt": token.expires_at.map(flotta_core::timestamp::rfc3339),
    })
}

pub(super) async fn list_tokens(State(state): State<ApiState>) -> ApiResult {
    let tokens = state.store.list_tokens().await?;
    let items: Vec<Value> = tokens.iter().map(token_json).collect();
    Ok(Json(json!({"kind": "TokenList", "items": items})).into_response())
}

/// The body of `POST .../tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewToken {
    /// The user name; generated from the id when absent.
    #[serde(default)]
    name: Option<String>,
    /// A built-in role, if any.
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    description: String,
    /// Lifetime from now, e.g. `30d`, `12h`.
    #[serde(default)]
    expires_in: Option<String>,
    /// Expiry as an RFC 3339 time.
    #[serde(default)]
    expires_at: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError {
        code: StatusCode::UNPROCESSABLE_ENTITY,
        reason: "Invalid",
        message: format!("token is invalid: {field}: {message}"),
        object: None,
        causes: vec![super::super::StatusCause::invalid(field, message)],
    }
}

fn token_spec(request: NewToken, now: OffsetDateTime) -> ApiResult<TokenSpec> {
    let role = request
        .role
        .filter(|r| !r.is_empty())
        .map(|r| r.parse::<TokenRole>())
        .transpose()
        .map_err(|e| invalid("role", e.to_string()))?;
    let name = request.name.unwrap_or_default();
    if !name.is_empty() || !request.groups.is_empty() {
        // A generated name (`token-...`) is always acceptable.
        let checked = if name.is_empty() {
            "token"
        } else {
            name.as_str()
        };
        flotta_core::rbac::check_token_subject(checked, &request.groups)
            .map_err(|p| invalid(&p.path, p.message))?;
    }
    let expires_at = match (request.expires_in, request.expires_at) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "expiresIn",
                "give expiresIn or expiresAt, not both",
            ));
        }
        (Some(lifetime), None) => {
            let lifetime = flotta_core::rbac::parse_lifetime(&lifetime)
                .map_err(|e| invalid("expiresIn", e))?;
            Some(now + lifetime)
        }
        (None, Some(at)) => Some(
            OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
                .map_err(|e| invalid("expiresAt", format!("not an RFC 3339 time: {e}")))?,
        ),
        (None, None) => None,
    };
    Ok(TokenSpec {
        name,
        role,
        groups: request.groups,
        description: request.description,
        expires_at,
    })
}

pub(super) async fn create_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let value = request_object(&headers, body)?;
    let request: NewToken = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid token request: {e}")))?;
    let spec = token_spec(request, OffsetDateTime::now_utc())?;
    let issued = state.store.issue_token(&spec).await?;
    let mut body = token_json(&issued.token);
    if let Some(map) = body.as_object_mut() {
        map.insert("secret".into(), json!(issued.secret));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn delete_token(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path_params(path)?;
    if state.store.delete_token(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("token {id:?} not found")))
    }
}
