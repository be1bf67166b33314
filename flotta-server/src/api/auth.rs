//! Authentication and authorization of the management API.
//!
//! Authentication establishes who the caller is, from the bearer token:
//! - a JWT from a configured OIDC issuer ([`crate::oidc`]), verified by core's rules
//!   ([`flotta_core::oidc::verify`]): its username and groups claims are the user;
//! - otherwise one of the server's own tokens, found in the store: its name, its
//!   groups and its role's group are the user.
//!
//! An unknown, expired or unverifiable token is refused with 401, saying why.
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
use flotta_core::oidc::VerifiedToken;
use flotta_core::rbac::{Attributes, RequestAttributes, UserInfo, authorize as decide, request};
use time::OffsetDateTime;

use super::ApiState;
use super::status::ApiError;
use crate::store::{ApiToken, ResourceKind, TokenHash};

/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = flotta_core::rbac::builtin::METRICS_PATH;

/// The authenticated caller, available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct Caller {
    user: UserInfo,
    identity: Identity,
}

/// What vouched for a caller.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Identity {
    /// One of the server's own tokens.
    Token(ApiToken),
    /// A JWT of a configured OIDC issuer.
    Oidc(VerifiedToken),
}

impl Caller {
    /// A caller holding one of the server's own tokens.
    pub fn token(token: ApiToken) -> Self {
        Self {
            user: token.user_info(),
            identity: Identity::Token(token),
        }
    }

    /// A caller an OIDC issuer vouched for.
    pub fn oidc(verified: VerifiedToken) -> Self {
        Self {
            user: verified.user.clone(),
            identity: Identity::Oidc(verified),
        }
    }

    /// The user RBAC sees.
    pub fn user(&self) -> UserInfo {
        self.user.clone()
    }

    /// What vouched for the caller.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The server token, when the caller used one.
    pub fn api_token(&self) -> Option<&ApiToken> {
        match &self.identity {
            Identity::Token(token) => Some(token),
            Identity::Oidc(_) => None,
        }
    }

    /// How a decision names whoever made it: `(by token ID: DESCRIPTION)`,
    /// `(by token ID)` for a token without a description, `(by user NAME)` for an
    /// OIDC user.
    pub fn signature(&self) -> String {
        match &self.identity {
            Identity::Token(token) if token.description.is_empty() => {
                format!("(by token {})", token.id)
            }
            Identity::Token(token) => format!("(by token {}: {})", token.id, token.description),
            Identity::Oidc(_) => format!("(by user {})", self.user.name),
        }
    }
}

/// What a check needs of a request, read before any await (a request is not
/// shared across threads): its RBAC attributes and its bearer secret.
fn credentials(request: &Request) -> (RequestAttributes, Result<String, ApiError>) {
    (
        request::attributes(
            request.method().as_str(),
            request.uri().path(),
            request.uri().query(),
        ),
        bearer_secret(request).map(str::to_owned),
    )
}

/// Who a bearer secret names: an OIDC user for a JWT when issuers are configured,
/// else the server token it is, if known and not expired.
async fn authenticate(state: &ApiState, secret: &str) -> Result<Caller, ApiError> {
    if !state.oidc.is_empty() && flotta_core::oidc::looks_like_jwt(secret) {
        return match state.oidc.authenticate(secret).await {
            Ok(verified) => Ok(Caller::oidc(verified)),
            Err(error) => {
                tracing::debug!(%error, "OIDC token refused");
                Err(ApiError::unauthorized(error.to_string()))
            }
        };
    }
    match state.store.find_token(&TokenHash::of(secret)).await {
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
        Ok(Some(token)) => Ok(Caller::token(token)),
        Ok(None) => Err(ApiError::unauthorized("the bearer token is not valid")),
        Err(error) => Err(ApiError::from(error)),
    }
}

/// The caller if RBAC allows it the request; the refusal otherwise, with the
/// refused caller when it was authenticated.
async fn check(
    state: &ApiState,
    (attributes, secret): (RequestAttributes, Result<String, ApiError>),
) -> Result<Caller, (ApiError, Option<Caller>)> {
    let secret = secret.map_err(|error| (error, None))?;
    let caller = authenticate(state, &secret)
        .await
        .map_err(|error| (error, None))?;
    if !names_served_resource(&attributes) {
        // Nothing to protect: routing answers 404, as it does for anyone.
        return Ok(caller);
    }
    let decision = match rbac_decision(state, &caller, &attributes).await {
        Ok(decision) => decision,
        Err(error) => return Err((ApiError::from(error), Some(caller))),
    };
    if !decision.allowed {
        return Err((ApiError::forbidden(decision.reason), Some(caller)));
    }
    // Writing a GitOps object has the server act for the caller: the caller must
    // be allowed what it would do (core says what that is).
    for delegated in flotta_core::gitops::delegated_requests(&attributes) {
        let delegated = RequestAttributes::Resource(delegated);
        let decision = match rbac_decision(state, &caller, &delegated).await {
            Ok(decision) => decision,
            Err(error) => return Err((ApiError::from(error), Some(caller))),
        };
        if !decision.allowed {
            return Err((
                ApiError::forbidden(format!(
                    "{attributes} would have the server {delegated} on your behalf, \
                     which you may not do yourself"
                )),
                Some(caller),
            ));
        }
    }
    Ok(caller)
}

/// RBAC's decision on `request` for `caller`, from the current snapshot of the
/// roles and bindings (core decides: [`flotta_core::rbac::authorize`]).
pub(crate) async fn rbac_decision(
    state: &ApiState,
    caller: &Caller,
    request: &RequestAttributes,
) -> Result<flotta_core::rbac::Decision, crate::store::StoreError> {
    let snapshot = state.authorizer.snapshot().await?;
    Ok(decide(
        &Attributes {
            user: &caller.user,
            request,
        },
        &snapshot,
    ))
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
    let caller = match check(&state, credentials(&request)).await {
        Ok(caller) => caller,
        Err((refusal, refused)) => {
            let mut response = refusal.into_response();
            // The audit log says who was refused.
            if let Some(caller) = refused {
                response.extensions_mut().insert(caller);
            }
            return response;
        }
    };
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
