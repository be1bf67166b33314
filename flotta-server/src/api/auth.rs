//! Bearer-token authentication and role checks of the management API.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::status::ApiError;
use crate::store::{ApiToken, ResourceKind, TokenHash, TokenRole};

/// What a request needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Reading resources.
    Read,
    /// Reading secrets, whose data viewers may not see.
    ReadSecrets,
    /// Creating, changing and deleting resources.
    Write,
    /// Managing API tokens.
    ManageTokens,
    /// Reading `/metrics`.
    Metrics,
}

impl Permission {
    /// The permission a request needs, from its method and path.
    pub fn required(method: &Method, path: &str) -> Self {
        if path == METRICS_PATH {
            Permission::Metrics
        } else if path.contains("/v1alpha1/tokens") {
            Permission::ManageTokens
        } else if method == Method::GET || method == Method::HEAD {
            if names_secrets(path) {
                Permission::ReadSecrets
            } else {
                Permission::Read
            }
        } else {
            Permission::Write
        }
    }

    /// Whether `role` grants this permission.
    pub fn granted_to(self, role: TokenRole) -> bool {
        matches!(
            (self, role),
            (_, TokenRole::Admin)
                | (
                    Permission::Metrics,
                    TokenRole::Operator | TokenRole::Viewer | TokenRole::Metrics
                )
                | (
                    Permission::Read | Permission::ReadSecrets | Permission::Write,
                    TokenRole::Operator
                )
                | (Permission::Read, TokenRole::Viewer)
        )
    }
}

/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// Whether a path reads secrets: `/api/v1/secrets` or
/// `/api/v1/namespaces/{ns}/secrets[/...]`.
fn names_secrets(path: &str) -> bool {
    let plural = ResourceKind::Secret.plural();
    let Some(rest) = path
        .strip_prefix(ResourceKind::Secret.api_prefix())
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    matches!(segments.as_slice(), [p, ..] if *p == plural)
        || matches!(segments.as_slice(), ["namespaces", _, p, ..] if *p == plural)
}

/// The authenticated caller, available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiToken);

/// What [`check`] needs of a request, read before any await (a request is not
/// shared across threads): the permission it needs and its token's hash.
fn credentials(request: &Request) -> (Permission, Result<TokenHash, ApiError>) {
    (
        Permission::required(request.method(), request.uri().path()),
        bearer_secret(request).map(TokenHash::of),
    )
}

/// The token if it grants `needed`; the refusal otherwise, with the refused token
/// when there is one.
async fn check(
    state: &ApiState,
    (needed, hash): (Permission, Result<TokenHash, ApiError>),
) -> Result<ApiToken, (ApiError, Option<ApiToken>)> {
    let hash = hash.map_err(|error| (error, None))?;
    let token = match state.store.find_token(&hash).await {
        Ok(Some(token)) => token,
        Ok(None) => {
            return Err((
                ApiError::unauthorized("the bearer token is not valid"),
                None,
            ));
        }
        Err(error) => return Err((ApiError::from(error), None)),
    };
    if !needed.granted_to(token.role) {
        let what = match needed {
            Permission::Read => "read resources",
            Permission::ReadSecrets => "read secrets",
            Permission::Write => "change resources",
            Permission::ManageTokens => "manage tokens",
            Permission::Metrics => "read metrics",
        };
        let refusal = ApiError::forbidden(format!(
            "token {} has role {} and may not {what}",
            token.id, token.role
        ));
        return Err((refusal, Some(token)));
    }
    Ok(token)
}

/// Middleware for `/metrics`: a token with the metrics permission unless the
/// server was told to serve them openly.
pub(crate) async fn authorize_metrics(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    if state.metrics_open {
        return next.run(request).await;
    }
    match check(&state, credentials(&request)).await {
        Ok(_) => next.run(request).await,
        Err((refusal, _)) => refusal.into_response(),
    }
}

/// Middleware: finds the bearer token, checks its role, and passes the [`Caller`] on.
pub(crate) async fn authorize(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = match check(&state, credentials(&request)).await {
        Ok(token) => token,
        Err((refusal, refused)) => {
            let mut response = refusal.into_response();
            // The audit log says who was refused.
            if let Some(token) = refused {
                response.extensions_mut().insert(Caller(token));
            }
            return response;
        }
    };
    let caller = Caller(token);
    request.extensions_mut().insert(caller.clone());
    let mut response = next.run(request).await;
    // The audit log, outside this layer, reads the caller from the answer.
    response.extensions_mut().insert(caller);
    response
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
        let secret = Permission::required(&Method::GET, "/api/v1/namespaces/a/secrets/db");
        assert_eq!(secret, Permission::ReadSecrets);
        assert_eq!(
            Permission::required(&Method::GET, "/api/v1/secrets"),
            Permission::ReadSecrets
        );
        assert_eq!(
            Permission::required(&Method::GET, "/api/v1/namespaces/a/configmaps"),
            Permission::Read
        );
        assert!(!secret.granted_to(TokenRole::Viewer));
        assert!(secret.granted_to(TokenRole::Operator));
        let metrics = Permission::required(&Method::GET, METRICS_PATH);
        assert_eq!(metrics, Permission::Metrics);
        assert!(metrics.granted_to(TokenRole::Metrics));
        assert!(metrics.granted_to(TokenRole::Viewer));
        assert!(
            !read.granted_to(TokenRole::Metrics),
            "a scraper reads nothing else"
        );
    }
}
