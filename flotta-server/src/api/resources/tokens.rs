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
use crate::store::{ApiToken, TokenRole};

fn token_json(token: &ApiToken) -> Value {
    json!({
        "id": token.id,
        "role": token.role.as_str(),
        "description": token.description,
        "createdAt": flotta_core::timestamp::rfc3339(token.created_at),
    })
}

pub(super) async fn list_tokens(State(state): State<ApiState>) -> ApiResult {
    let tokens = state.store.list_tokens().await?;
    let items: Vec<Value> = tokens.iter().map(token_json).collect();
    Ok(Json(json!({"kind": "TokenList", "items": items})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    role: String,
    #[serde(default)]
    description: String,
}

pub(super) async fn create_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let value = request_object(&headers, body)?;
    let request: NewToken = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid token request: {e}")))?;
    let role: TokenRole = request
        .role
        .parse()
        .map_err(|e: crate::store::UnknownTokenRole| ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: e.to_string(),
            object: None,
            causes: vec![super::super::StatusCause::invalid("role", e.to_string())],
        })?;
    let issued = state.store.create_token(role, &request.description).await?;
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
