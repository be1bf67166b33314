//! The management API: Kubernetes-style REST over the flotta resources and the
//! Kubernetes core kinds served beside them.
//!
//! Paths (group `management.project-flotta.io`, version `v1alpha1`):
//!
//! - `/apis/{group}/{version}/{plural}`: list or watch across namespaces;
//! - `/apis/{group}/{version}/namespaces/{ns}/{plural}`: list, watch, create;
//! - `/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`: get, replace (`PUT`,
//!   409 on a stale `metadata.resourceVersion`), patch, delete;
//! - `.../{name}/status`: the status subresource;
//! - `/apis/{group}/{version}/tokens[/{id}]`: API tokens (admin only);
//! - `/api/v1/events`, `/api/v1/namespaces/{ns}/events[/{name}]`: Kubernetes
//!   `Event`s the server recorded, read-only (list, watch, get);
//! - `/apis/rbac.authorization.k8s.io/v1/...`: `roles` and `rolebindings`
//!   (namespaced), `clusterroles` and `clusterrolebindings` (cluster-scoped), the
//!   built-in ClusterRoles among them;
//! - `/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: "may I?".
//!
//! Discovery as kubectl reads it (`/api`, `/api/v1`, `/apis`, `/apis/{group}[/{version}]`),
//! `Namespace`s derived from the objects stored (`/api/v1/namespaces[/{name}]`),
//! `meta.k8s.io/v1` Tables for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`,
//! JSON, merge and strategic merge patches, and `dryRun=All` on every write.
//!
//! Plus `/healthz`, `/readyz`, `/version`, `/openapi.json`, `/openapi/v2` and
//! `/openapi/v3[/...]`, which need no token, and `/metrics`, which needs one
//! allowed `get` on it unless configured open. Every other request is authorized
//! by RBAC (`auth`, [`rbac`]). Every error is a Kubernetes `Status` object
//! ([`ApiError`]).

mod apply;
pub mod audit;
mod auth;
mod discovery;
mod last_seen;
mod object;
mod openapi;
mod patch;
pub mod rbac;
mod resources;
mod status;
mod table;
mod webhooks;

pub(crate) use resources::prepare_write;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tokio::sync::watch;

pub use auth::Caller;
pub use openapi::{KubeOpenApi, openapi_document};
pub use status::{ApiError, StatusCause, error_chain};

use crate::metrics::Metrics;
use crate::store::{ResourceKind, Store};

/// Largest accepted request body: 8 MiB (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Path prefix of the flotta API group and version.
pub const API_PREFIX: &str = flotta_core::paths::MANAGEMENT_PREFIX;

/// The URL plural of a kind, from core's kind table.
pub fn plural_of(kind: ResourceKind) -> &'static str {
    kind.plural()
}

/// The kind a URL plural names. Flotta's own singular-form plural of signed
/// requests (`edgedevicesignedrequest`, its CRD plural) is accepted too.
pub fn kind_of_plural(plural: &str) -> Option<ResourceKind> {
    ResourceKind::from_plural(plural)
}

/// What the management API handlers share.
#[derive(Clone)]
pub struct ApiState {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    openapi: Arc<Vec<u8>>,
    kube_openapi: Arc<KubeOpenApi>,
    audit: Option<Arc<audit::AuditLog>>,
    events: crate::events::EventRecorder,
    metrics_open: bool,
    authorizer: Arc<rbac::Authorizer>,
    oidc: Arc<crate::oidc::OidcAuthenticator>,
}

impl ApiState {
    /// State over `store`; watch streams end when `shutdown` turns true.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let document = openapi_document();
        let kube_openapi = Arc::new(KubeOpenApi::from_document(&document));
        let openapi = serde_json::to_vec(&document).unwrap_or_default();
        let events = crate::events::EventRecorder::new(
            store.clone(),
            flotta_core::events::EventRetention::default(),
        );
        Self {
            events,
            authorizer: Arc::new(rbac::Authorizer::new(store.clone(), shutdown.clone())),
            store,
            metrics,
            shutdown,
            openapi: Arc::new(openapi),
            kube_openapi,
            audit: None,
            metrics_open: false,
            oidc: Arc::new(crate::oidc::OidcAuthenticator::empty()),
        }
    }

    /// Serves `/metrics` without a token (by default a token with the metrics
    /// permission is needed: any role, the `metrics` role for a scraper).
    pub fn with_open_metrics(mut self, open: bool) -> Self {
        self.metrics_open = open;
        self
    }

    /// Accepts the JWTs of the issuers `oidc` trusts besides the server's own tokens,
    /// and tells clients about them at [`flotta_core::oidc::AUTH_CONFIG_PATH`].
    pub fn with_oidc(mut self, oidc: Arc<crate::oidc::OidcAuthenticator>) -> Self {
        self.oidc = oidc;
        self
    }

    /// Records mutating requests (and, as configured, reads of secrets) in `log`.
    pub fn with_audit(mut self, log: Arc<audit::AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }
}

impl ApiState {
    /// This state recording its server-side events (enrolment decisions, device
    /// deletions) through `events`, the recorder the Edge API shares; by default
    /// the state has one of its own.
    pub fn with_event_recorder(mut self, events: crate::events::EventRecorder) -> Self {
        self.events = events;
        self
    }
}

/// The management API router (serve it over TLS).
pub fn router(state: ApiState) -> Router {
    let resources = resources::routes()
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            auth::METRICS_PATH,
            get(metrics).route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::authorize_metrics,
            )),
        )
        .route("/openapi.json", get(openapi_json))
        .route(flotta_core::oidc::AUTH_CONFIG_PATH, get(auth_config))
        .route(discovery::VERSION_PATH, get(discovery::version))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_index))
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .route(
            webhooks::RESOURCE_SYNC_WEBHOOK_PATH,
            axum::routing::post(webhooks::resource_sync),
        )
        .with_state(state.clone())
        .merge(resources)
        .merge(console_routes().route_layer(middleware::from_fn_with_state(
            state.clone(),
            console_connects_to_issuers,
        )))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(read_body_within_limits))
        .layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .layer(middleware::from_fn_with_state(state, record_metrics))
}

/// How clients sign in: the OIDC issuers and their client ids (no secret; open, so
/// that `flotta login` and the console can ask before they hold a token).
async fn auth_config(State(state): State<ApiState>) -> Response {
    axum::Json(state.oidc.auth_config().await).into_response()
}

/// Lets the console's scripts reach the OIDC issuers' token endpoints (the
/// authorization-code exchange and refreshes): their origins join `connect-src` in
/// the console's Content-Security-Policy. Nothing else is widened.
async fn console_connects_to_issuers(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let origins = state.oidc.issuer_origins();
    if origins.is_empty() {
        return response;
    }
    let policy = crate::ui::CONTENT_SECURITY_POLICY.replace(
        "connect-src 'self'",
        &format!("connect-src 'self' {}", origins.join(" ")),
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// The console's routes: `/ui` (redirects to `/ui/`), `/ui/` and `/ui/{file}`; a
/// file the console does not have is a `404` Status like any other.
fn console_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    fn serve(name: &str, headers: &HeaderMap) -> Response {
        crate::ui::serve(name, headers).unwrap_or_else(|| {
            ApiError::not_found(format!("the console has no file {name:?}")).into_response()
        })
    }
    Router::new()
        .route(
            crate::ui::UI_PATH,
            get(|| async { Redirect::permanent("/ui/") }),
        )
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/ui/{file}",
            get(
                |axum::extract::Path(file): axum::extract::Path<String>, headers: HeaderMap| async move {
                    serve(&file, &headers)
                },
            ),
        )
}

/// Time a client has to send a whole request body (manifests can be large).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Buffers the body within [`MAX_BODY_BYTES`] and [`BODY_READ_TIMEOUT`] before any
/// handler runs, so that a slow or oversized upload is refused early.
async fn read_body_within_limits(request: Request, next: Next) -> Response {
    match crate::limits::buffer_body(request, MAX_BODY_BYTES, BODY_READ_TIMEOUT).await {
        Ok(request) => next.run(request).await,
        Err(problem) => {
            let reason = match problem {
                crate::limits::BodyProblem::TooLarge { .. } => "RequestEntityTooLarge",
                crate::limits::BodyProblem::TooSlow { .. } => "Timeout",
                _ => "BadRequest",
            };
            ApiError::new(problem.status(), reason, problem.to_string()).into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ApiState>) -> Response {
    match state.store.current_resource_version().await {
        Ok(_) => "ok".into_response(),
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "readiness check: store unreachable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the store is not reachable",
            )
            .into_response()
        }
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let mut text = state.metrics.render();
    match crate::metrics::FleetGauges::read(state.store.as_ref()).await {
        Ok(fleet) => fleet.render(&mut text),
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "metrics: fleet gauges unavailable");
        }
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn openapi_json(State(state): State<ApiState>) -> Response {
    let mut response = state.openapi.as_ref().clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `/openapi/v2`: gnostic's protobuf when the client asks for it (kubectl does,
/// and reads no other form), JSON otherwise.
async fn openapi_v2(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept.contains(openapi::V2_PROTOBUF) || accept.contains(openapi::V2_PROTOBUF_OLD)
        });
    let (body, content_type) = if protobuf {
        (state.kube_openapi.v2_protobuf(), openapi::V2_PROTOBUF)
    } else {
        (state.kube_openapi.v2_json(), "application/json")
    };
    let mut response = body.to_vec().into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// `/openapi/v3`: the index of the group-version documents.
async fn openapi_v3_index(State(state): State<ApiState>) -> Response {
    axum::Json(state.kube_openapi.v3_index()).into_response()
}

/// `/openapi/v3/{group-version path}`: one group-version's OpenAPI 3.0 document.
async fn openapi_v3(
    State(state): State<ApiState>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    match state.kube_openapi.v3_document(&path) {
        Some(document) => {
            let mut response = document.to_vec().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        None => ApiError::not_found(format!("no OpenAPI v3 document for {path:?}")).into_response(),
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "the server could not find the requested resource ({})",
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::method_not_allowed(format!(
        "method {} is not supported on {}",
        request.method(),
        request.uri().path()
    ))
}

async fn record_metrics(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    state.metrics.record_request(
        "api",
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn console_redirects_and_refuses_unknown_files_with_a_status() {
        let get = |path: &str| {
            console_routes::<()>().oneshot(Request::get(path).body(Body::empty()).expect("request"))
        };
        let redirect = get("/ui").await.expect("response");
        assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(redirect.headers()[header::LOCATION], "/ui/");
        assert_eq!(
            get("/ui/").await.expect("response").status(),
            StatusCode::OK
        );
        let missing = get("/ui/missing.js").await.expect("response");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(missing.into_body(), 64 * 1024)
            .await
            .expect("body");
        let status: serde_json::Value = serde_json::from_slice(&body).expect("a Status object");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "NotFound");
    }

    #[test]
    fn plurals_round_trip() {
        for kind in ResourceKind::ALL {
            assert_eq!(kind_of_plural(plural_of(kind)), Some(kind));
        }
        assert_eq!(
            kind_of_plural("edgedevicesignedrequest"),
            Some(ResourceKind::EdgeDeviceSignedRequest)
        );
        assert_eq!(kind_of_plural("pods"), None);
    }
}
