//! Bearer-token authentication and role checks of the management API.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::status::ApiError;
use crate::store::{ApiToken, TokenHash, TokenRole};

/// What a request needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Reading resources.
    Read,
    /// Creating, changing and deleting resources.
    Write,
    /// Managing API tokens.
    ManageTokens,
}

impl Permission {
    /// The permission a request needs, from its method and path.
    pub fn required(method: &Method, path: &str) -> Self {
        if path.contains("/v1alpha1/tokens") {
            Permission::ManageTokens
        } else if method == Method::GET || method == Method::HEAD {
            Permission::Read
        } else {
            Permission::Write
        }
    }

    /// Whether `role` grants this permission.
    pub fn granted_to(self, role: TokenRole) -> bool {
        matches!(
            (self, role),
            (_, TokenRole::Admin)
                | (Permission::Read | Permission::Write, TokenRole::Operator)
                | (Permission::Read, TokenRole::Viewer)
        )
    }
}

/// The authenticated caller, available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiToken);

/// Middleware: finds the bearer token, checks its role, and passes the [`Caller`] on.
pub(crate) async fn authorize(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let secret = match bearer_secret(&request) {
        Ok(secret) => secret,
        Err(error) => return error.into_response(),
    };
    let token = match state.store.find_token(&TokenHash::of(secret)).await {
        Ok(Some(token)) => token,
        Ok(None) => {
            return ApiError::unauthorized("the bearer token is not valid").into_response();
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    let needed = Permission::required(request.method(), request.uri().path());
    if !needed.granted_to(token.role) {
        let what = match needed {
            Permission::Read => "read resources",
            Permission::Write => "change resources",
            Permission::ManageTokens => "manage tokens",
        };
        return ApiError::forbidden(format!(
            "token {} has role {} and may not {what}",
            token.id, token.role
        ))
        .into_response();
    }
    request.extensions_mut().insert(Caller(token));
    next.run(request).await
}

fn bearer_secret(request: &Request) -> Result<&str, ApiError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, secret) = text
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || secret.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer TOKEN`",
        ));
    }
    Ok(secret.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        let path = "/apis/management.project-flotta.io/v1alpha1/namespaces/a/edgedevices";
        let tokens = "/apis/management.project-flotta.io/v1alpha1/tokens";
        let read = Permission::required(&Method::GET, path);
        let write = Permission::required(&Method::POST, path);
        let manage = Permission::required(&Method::GET, tokens);
        assert_eq!(
            (read, write, manage),
            (
                Permission::Read,
                Permission::Write,
                Permission::ManageTokens
            )
        );
        assert!(read.granted_to(TokenRole::Viewer));
        assert!(!write.granted_to(TokenRole::Viewer));
        assert!(write.granted_to(TokenRole::Operator));
        assert!(!manage.granted_to(TokenRole::Operator));
        assert!(manage.granted_to(TokenRole::Admin));
    }
}
