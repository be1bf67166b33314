//! Authentication and authorization of the management API.
//!
//! Authentication establishes who the caller is: today a bearer token found in the
//! store (refused with 401 when unknown or expired), which yields the token's
//! [`UserInfo`] (its name, its groups, its role's group, `system:authenticated`).
//! Another authenticator (OIDC) only has to yield a `UserInfo` too.
//!
//! Authorization is RBAC: the request's Kubernetes attributes
//! ([`flotta_core::rbac::request::attributes`]) are checked against the current
//! [`RbacSnapshot`](flotta_core::rbac::RbacSnapshot) by core's
//! [`authorize`](flotta_core::rbac::authorize); a denial is 403 with Kubernetes'
//! message.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flotta_core::rbac::{Attributes, RequestAttributes, UserInfo, authorize as decide, request};
use time::OffsetDateTime;

use super::ApiState;
use super::status::ApiError;
use crate::store::{ApiToken, ResourceKind, TokenHash};

/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = flotta_core::rbac::builtin::METRICS_PATH;

/// The authenticated caller, available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiToken);

impl Caller {
    /// The user RBAC sees.
    pub fn user(&self) -> UserInfo {
        self.0.user_info()
    }
}

/// What a check needs of a request, read before any await (a request is not
/// shared across threads): its RBAC attributes and its token's hash.
fn credentials(request: &Request) -> (RequestAttributes, Result<TokenHash, ApiError>) {
    (
        request::attributes(
            request.method().as_str(),
            request.uri().path(),
            request.uri().query(),
        ),
        bearer_secret(request).map(TokenHash::of),
    )
}

/// The token a bearer secret names, if it is known and has not expired.
async fn authenticate(state: &ApiState, hash: TokenHash) -> Result<ApiToken, ApiError> {
    match state.store.find_token(&hash).await {
        Ok(Some(token)) if token.expired_at(OffsetDateTime::now_utc()) => {
            let at = token
                .expires_at
                .map(flotta_core::timestamp::rfc3339)
                .unwrap_or_default();
            Err(ApiError::unauthorized(format!(
                "the bearer token {:?} expired at {at}",
                token.name
            )))
        }
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(ApiError::unauthorized("the bearer token is not valid")),
        Err(error) => Err(ApiError::from(error)),
    }
}

/// The token if RBAC allows its user the request; the refusal otherwise, with the
/// refused token when there is one.
async fn check(
    state: &ApiState,
    (attributes, hash): (RequestAttributes, Result<TokenHash, ApiError>),
) -> Result<ApiToken, (ApiError, Option<ApiToken>)> {
    let hash = hash.map_err(|error| (error, None))?;
    let token = authenticate(state, hash)
        .await
        .map_err(|error| (error, None))?;
    if !names_served_resource(&attributes) {
        // Nothing to protect: routing answers 404, as it does for anyone.
        return Ok(token);
    }
    let user = token.user_info();
    let snapshot = match state.authorizer.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(error) => return Err((ApiError::from(error), Some(token))),
    };
    let decision = decide(
        &Attributes {
            user: &user,
            request: &attributes,
        },
        &snapshot,
    );
    if decision.allowed {
        Ok(token)
    } else {
        Err((ApiError::forbidden(decision.reason), Some(token)))
    }
}

/// Whether a resource request names a resource this server serves (a kind of the
/// table, `tokens`, `selfsubjectaccessreviews`); non-resource requests always do.
fn names_served_resource(attributes: &RequestAttributes) -> bool {
    match attributes {
        RequestAttributes::NonResource { .. } => true,
        RequestAttributes::Resource(r) => {
            ResourceKind::from_plural(&r.resource).is_some_and(|k| k.info().group == r.api_group)
                || r.resource == flotta_core::rbac::builtin::TOKENS_RESOURCE
                || r.resource == "selfsubjectaccessreviews"
        }
    }
}

/// Middleware for `/metrics`: RBAC's `get` on the path unless the server was told
/// to serve them openly.
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

/// Middleware: authenticates the bearer token, authorizes the request, and passes
/// the [`Caller`] on.
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
