//! Handlers of the resource paths: list, watch, get, create, replace, patch,
//! delete (each write with `dryRun=All`), the status subresource ([`list`]: list
//! and watch; [`namespaces`]: derived namespaces; [`tokens`]: API tokens).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use flotta_core::enrolment::DeviceRecord;
use flotta_core::events::{InvolvedObject, ServerEvent};
use flotta_core::model::{GROUP, VERSION};
use serde_json::Value;

use super::apply::{self, Writer};
use super::auth::{Caller, Identity};
use super::last_seen::overlay_last_seen;
use super::object::{
    BodyFormat, Target, admit, body_format, check_kind_name, check_namespace_name,
    check_object_name, decode_body, expected_resource_version,
};
use super::patch::{Patch, PatchError};
use super::status::ApiError;
use super::table::{IncludeObject, table, wants_table};
use super::{API_PREFIX, ApiState, kind_of_plural};
use crate::edge::enrolment_decision;
use crate::store::{DryRunWrite, ResourceKind, Store, StoreError, StoredObject, dry_run};

mod access_review;
mod approval;
mod list;
mod namespaces;
mod revisions;
mod server_side_apply;
mod tokens;

use list::{list_all, list_namespaced};
use namespaces::{create_namespace, delete_namespace, list_namespaces, read_namespace};
use tokens::{create_token, delete_token, list_tokens};

/// How many times a merge patch without a resource version is retried when a
/// concurrent writer wins.
const PATCH_ATTEMPTS: usize = 5;
/// Objects fetched per store page while filtering a list by selectors.
const FILTER_PAGE: usize = 200;

pub(super) fn routes() -> Router<ApiState> {
    let core = flotta_core::paths::CORE_PREFIX;
    let mut router = super::discovery::routes()
        .route(
            &format!("{core}/namespaces"),
            get(list_namespaces).post(create_namespace),
        )
        .route(
            &format!("{core}/namespaces/{{namespace}}"),
            get(read_namespace).delete(delete_namespace),
        )
        .route(
            "/apis/authorization.k8s.io/v1",
            get(access_review::discovery),
        )
        .route(
            flotta_core::paths::SELF_SUBJECT_ACCESS_REVIEWS,
            axum::routing::post(access_review::self_subject_access_review),
        )
        .route(
            &format!("{API_PREFIX}/tokens"),
            get(list_tokens).post(create_token),
        )
        .route(&format!("{API_PREFIX}/tokens/{{id}}"), delete(delete_token));
    for prefix in flotta_core::paths::KIND_PREFIXES {
        router = router
            // A list across namespaces, or a cluster-scoped kind's collection.
            .route(&format!("{prefix}/{{plural}}"), get(list_all).post(create))
            .route(
                &format!("{prefix}/{{plural}}/{{name}}"),
                get(read).put(replace).patch(patch).delete(remove),
            )
            .route(
                &format!("{prefix}/namespaces/{{namespace}}/{{plural}}"),
                get(list_namespaced).post(create),
            )
            .route(
                &format!("{prefix}/namespaces/{{namespace}}/{{plural}}/{{name}}"),
                get(read).put(replace).patch(patch).delete(remove),
            );
    }
    router
        .route(
            &format!("{API_PREFIX}/namespaces/{{namespace}}/{{plural}}/{{name}}/status"),
            get(read_status).put(replace_status).patch(patch_status),
        )
        .route(
            &format!("{API_PREFIX}/namespaces/{{namespace}}/{{plural}}/{{name}}/approval"),
            axum::routing::post(approval::approve_or_deny),
        )
        .route(
            &format!("{API_PREFIX}/namespaces/{{namespace}}/{{plural}}/{{name}}/revisions"),
            get(revisions::list_revisions),
        )
        .route_layer(axum::middleware::from_fn(kind_in_its_group))
}

/// Refuses (404) a kind named under another group's prefix, e.g. `secrets` under
/// the flotta group or `edgedevices` under `/api/v1`: each kind lives at its
/// [`ResourceKind::api_prefix`] only.
async fn kind_in_its_group(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    for prefix in flotta_core::paths::KIND_PREFIXES {
        let Some(rest) = path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let plural = match segments.as_slice() {
            ["namespaces", _, plural, ..] => plural,
            [plural, ..] => plural,
            [] => break,
        };
        if let Some(kind) = kind_of_plural(plural)
            && kind.api_prefix() != prefix
        {
            return ApiError::not_found(format!(
                "the server could not find the requested resource: {plural} live under {}",
                kind.api_prefix()
            ))
            .into_response();
        }
        break;
    }
    next.run(request).await
}

type ApiResult<T = Response> = Result<T, ApiError>;

fn path_params<T>(path: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))
}

fn query_params<T>(query: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|e| {
        let code = e.status();
        if code == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                code,
                "RequestEntityTooLarge",
                format!(
                    "the request body is larger than {} bytes",
                    super::MAX_BODY_BYTES
                ),
            )
        } else {
            ApiError::new(
                code,
                "BadRequest",
                format!("cannot read the request body: {e}"),
            )
        }
    })
}

fn kind_for(plural: &str) -> ApiResult<ResourceKind> {
    kind_of_plural(plural).ok_or_else(|| {
        ApiError::not_found(format!(
            "the server could not find the requested resource: no resource type {plural:?} in {GROUP}/{VERSION}"
        ))
    })
}

/// Refuses (405) a user's write to a kind only the server writes (`events`).
fn writable(kind: ResourceKind) -> ApiResult<()> {
    if kind.server_written() {
        return Err(ApiError::method_not_allowed(format!(
            "{} are recorded by the server from device heartbeats and its own actions; \
             they are read-only ({})",
            kind.plural(),
            kind.verbs().join(", ")
        )));
    }
    Ok(())
}

fn namespace_ok(namespace: &str) -> ApiResult<()> {
    check_namespace_name(namespace).map_err(|problem| {
        ApiError::bad_request(format!("invalid namespace {namespace:?}: {problem}"))
    })
}

/// A name in a path that cannot exist is simply not found.
fn existing_name(kind: ResourceKind, namespace: &str, name: &str) -> ApiResult<()> {
    check_kind_name(kind, name).map_err(|_| {
        ApiError::from(StoreError::NotFound {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    })
}

fn object_response(code: StatusCode, object: &StoredObject) -> Response {
    (code, Json(&object.body)).into_response()
}

// ---------------------------------------------------------------- single objects

type ObjectPath = (String, String, String);

fn resolve(
    path: Result<Path<ObjectPath>, PathRejection>,
) -> ApiResult<(ResourceKind, String, String)> {
    let (namespace, plural, name) = path_params(path)?;
    let kind = kind_for(&plural)?;
    namespace_ok(&namespace)?;
    scope_ok(kind, &namespace)?;
    Ok((kind, namespace, name))
}

/// Refuses (404) a namespaced kind addressed without a namespace, or a
/// cluster-scoped one with a namespace.
fn scope_ok(kind: ResourceKind, namespace: &str) -> ApiResult<()> {
    match (kind.namespaced(), namespace.is_empty()) {
        (true, true) => Err(ApiError::not_found(format!(
            "{} are namespaced: use {}/namespaces/{{namespace}}/{}",
            kind.plural(),
            kind.api_prefix(),
            kind.plural()
        ))),
        (false, false) => Err(ApiError::not_found(format!(
            "{} are cluster-scoped: use {}/{}",
            kind.plural(),
            kind.api_prefix(),
            kind.plural()
        ))),
        _ => Ok(()),
    }
}

/// An object's place, from a namespaced path (`.../namespaces/{namespace}/{plural}/{name}`)
/// or a cluster-scoped one (`.../{plural}/{name}`, namespace empty).
pub(super) struct ObjectAt {
    kind: ResourceKind,
    namespace: String,
    name: String,
}

/// A collection's place: a namespaced kind in a namespace, or a cluster-scoped
/// kind (namespace empty).
pub(super) struct CollectionAt {
    kind: ResourceKind,
    namespace: String,
}

async fn path_map(
    parts: &mut axum::http::request::Parts,
) -> ApiResult<std::collections::HashMap<String, String>> {
    use axum::extract::FromRequestParts as _;
    let path =
        Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, &()).await;
    path_params(path)
}

fn collection_at(params: &std::collections::HashMap<String, String>) -> ApiResult<CollectionAt> {
    let plural = params.get("plural").map(String::as_str).unwrap_or_default();
    let kind = kind_for(plural)?;
    let namespace = params.get("namespace").cloned().unwrap_or_default();
    if !namespace.is_empty() {
        namespace_ok(&namespace)?;
    }
    scope_ok(kind, &namespace)?;
    Ok(CollectionAt { kind, namespace })
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ObjectAt {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let params = path_map(parts).await?;
        let CollectionAt { kind, namespace } = collection_at(&params)?;
        let name = params.get("name").cloned().unwrap_or_default();
        Ok(Self {
            kind,
            namespace,
            name,
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CollectionAt {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        collection_at(&path_map(parts).await?)
    }
}

/// Refuses (405) writes to the built-in ClusterRoles and ClusterRoleBindings.
fn not_builtin(kind: ResourceKind, name: &str) -> ApiResult<()> {
    if super::rbac::builtin_object(kind, name).is_some() {
        return Err(ApiError::method_not_allowed(format!(
            "{} {name:?} is built in and read-only",
            kind.as_str()
        )));
    }
    Ok(())
}

/// After a write to an RBAC kind, the next request is authorized against it.
fn after_write(state: &ApiState, kind: ResourceKind) {
    if kind.is_rbac() {
        state.authorizer.invalidate();
    }
}

/// The stored object, if there is one.
async fn fetch_optional(
    state: &ApiState,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
) -> ApiResult<Option<StoredObject>> {
    Ok(state.store.get(kind, namespace, name).await?)
}

async fn fetch(
    state: &ApiState,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
) -> ApiResult<StoredObject> {
    existing_name(kind, namespace, name)?;
    state
        .store
        .get(kind, namespace, name)
        .await?
        .ok_or_else(|| {
            ApiError::from(StoreError::NotFound {
                kind,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        })
}

/// Query parameters of a single-object read.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadParams {
    include_object: Option<String>,
}

/// Query parameters of a write: `dryRun=All` validates and answers without
/// storing; `fieldManager` names who writes (the owner of the fields in
/// `managedFields`); `force` lets a server-side apply take fields other managers
/// own. kubectl's `fieldValidation` is accepted and ignored (bodies are always
/// checked strictly against the model).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WriteParams {
    dry_run: Option<String>,
    field_manager: Option<String>,
    force: Option<bool>,
}

impl WriteParams {
    /// Reads and checks the parameters.
    fn read(query: Result<Query<WriteParams>, QueryRejection>) -> ApiResult<WriteParams> {
        let params = query_params(query)?;
        params.is_dry_run()?;
        if let Some(manager) = &params.field_manager {
            apply::check_field_manager(manager).map_err(ApiError::bad_request)?;
        }
        Ok(params)
    }

    /// Whether the write is a dry run; any value other than `All` is refused.
    fn is_dry_run(&self) -> ApiResult<bool> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid dryRun {other:?}: the only supported value is All"
            ))),
        }
    }

    /// Whether the write is a dry run, from the raw query.
    fn dry_run(query: Result<Query<WriteParams>, QueryRejection>) -> ApiResult<bool> {
        WriteParams::read(query)?.is_dry_run()
    }

    /// The field manager of an update (not an apply): `fieldManager`, else the
    /// client's `User-Agent` product.
    fn update_manager(&self, headers: &HeaderMap) -> String {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        apply::update_manager(self.field_manager.as_deref(), agent)
    }
}

/// Records who changed which fields of `current` (none: a creation) into
/// `updated`'s `managedFields`.
fn record_update(kind: ResourceKind, current: Option<&Value>, updated: &mut Value, manager: &str) {
    let now = flotta_core::timestamp::rfc3339_seconds(time::OffsetDateTime::now_utc());
    let writer = Writer {
        manager,
        api_version: kind.info().api_version(),
        now: &now,
    };
    apply::record_update(current, updated, writer);
}

async fn read(
    State(state): State<ApiState>,
    ObjectAt {
        kind,
        namespace,
        name,
    }: ObjectAt,
    query: Result<Query<ReadParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let include = IncludeObject::parse(query_params(query)?.include_object.as_deref())?;
    if let Some(builtin) = super::rbac::builtin_object(kind, &name) {
        return Ok(object_response(StatusCode::OK, &builtin));
    }
    let mut object = fetch(&state, kind, &namespace, &name).await?;
    with_last_seen(&state.store, &mut object).await?;
    if wants_table(&headers) {
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "resourceVersion".into(),
            Value::String(object.resource_version.to_string()),
        );
        let now = time::OffsetDateTime::now_utc();
        return Ok(Json(table(kind, [&object.body], include, metadata, now)).into_response());
    }
    Ok(object_response(StatusCode::OK, &object))
}

/// Overlays one device's stored last-seen time (a single store read; none for
/// other kinds).
async fn with_last_seen(
    store: &Arc<dyn Store>,
    object: &mut StoredObject,
) -> Result<(), StoreError> {
    if object.kind != ResourceKind::EdgeDevice {
        return Ok(());
    }
    let seen_at = store.last_seen(&object.namespace, &object.name).await?;
    overlay_last_seen(object, seen_at);
    Ok(())
}

async fn read_status(
    State(state): State<ApiState>,
    ObjectAt {
        kind,
        namespace,
        name,
    }: ObjectAt,
) -> ApiResult {
    let mut object = fetch(&state, kind, &namespace, &name).await?;
    with_last_seen(&state.store, &mut object).await?;
    Ok(object_response(StatusCode::OK, &object))
}

fn request_object(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    let format = body_format(headers)?;
    if format.is_patch() {
        return Err(ApiError::unsupported_media_type(
            "the patch content types are only accepted by PATCH",
        ));
    }
    decode_body(format, &body_bytes(body)?)
}

fn request_patch(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Patch> {
    let format = body_format(headers)?;
    if !format.is_patch() {
        return Err(ApiError::unsupported_media_type(
            "PATCH needs Content-Type application/merge-patch+json, \
             application/json-patch+json, application/strategic-merge-patch+json or \
             application/apply-patch+yaml",
        ));
    }
    if format == BodyFormat::Apply {
        return Err(ApiError::unsupported_media_type(
            "server-side apply (application/apply-patch+yaml) is served on the object's path, \
             not on its status subresource",
        ));
    }
    let document = decode_body(format, &body_bytes(body)?)?;
    match (format, document) {
        (BodyFormat::JsonPatch, Value::Array(operations)) => Ok(Patch::Json(operations)),
        (BodyFormat::JsonPatch, _) => Err(ApiError::bad_request(
            "a JSON patch must be a JSON array of operations",
        )),
        (BodyFormat::StrategicMergePatch, patch @ Value::Object(_)) => Ok(Patch::Strategic(patch)),
        (_, patch @ Value::Object(_)) => Ok(Patch::Merge(patch)),
        _ => Err(ApiError::bad_request("a merge patch must be a JSON object")),
    }
}

/// A patch that cannot be applied: 400 for a malformed patch, 422 naming the
/// operation for one that does not fit the object.
fn patch_failed(kind: ResourceKind, name: &str, error: PatchError) -> ApiError {
    match error {
        PatchError::Operation { ref path, .. } => ApiError::invalid(
            kind,
            name,
            vec![super::StatusCause::invalid(path.clone(), error.to_string())],
        ),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Answers a dry run: the body the write would store, with the write's code.
async fn dry_run_response(
    state: &ApiState,
    code: StatusCode,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    write: DryRunWrite,
) -> ApiResult {
    let body = dry_run(state.store.as_ref(), kind, namespace, name, write).await?;
    Ok((code, Json(body)).into_response())
}

/// Server-managed metadata a client may not set on creation.
/// Prepares a write made by the server on a user's behalf (a GitOps sync): the
/// checks and defaults of a `create` or `update` through the API, with `manager`
/// recorded in `managedFields`. `current` is the stored body an update replaces.
/// Returns the object's name, or the error the API would answer with.
pub(crate) fn prepare_write(
    kind: ResourceKind,
    namespace: &str,
    current: Option<&Value>,
    object: &mut Value,
    manager: &str,
) -> ApiResult<String> {
    writable(kind)?;
    strip_server_fields(object);
    let target = Target {
        kind,
        namespace,
        name: None,
    };
    let name = admit(&target, object)?;
    record_update(kind, current, object, manager);
    Ok(name)
}

fn strip_server_fields(body: &mut Value) {
    if let Some(object) = body.as_object_mut() {
        object.remove("status");
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            for field in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "managedFields",
                "selfLink",
            ] {
                metadata.remove(field);
            }
        }
    }
}

async fn create(
    State(state): State<ApiState>,
    CollectionAt { kind, namespace }: CollectionAt,
    query: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    writable(kind)?;
    let params = WriteParams::read(query)?;
    let dry = params.is_dry_run()?;
    let mut object = request_object(&headers, body)?;
    strip_server_fields(&mut object);
    let target = Target {
        kind,
        namespace: &namespace,
        name: None,
    };
    let name = admit(&target, &mut object)?;
    record_update(kind, None, &mut object, &params.update_manager(&headers));
    if dry {
        let write = DryRunWrite::Create(object);
        return dry_run_response(&state, StatusCode::CREATED, kind, &namespace, &name, write).await;
    }
    let created = state.store.create(kind, &namespace, &name, object).await?;
    after_write(&state, kind);
    Ok(object_response(StatusCode::CREATED, &created))
}

/// The enrolment decision (approved, denied, pending) of a signed request before a
/// write: read only for that kind.
async fn decision_before(
    state: &ApiState,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
) -> Option<DeviceRecord> {
    if kind != ResourceKind::EdgeDeviceSignedRequest || check_object_name(name).is_err() {
        return None;
    }
    match state.store.get(kind, namespace, name).await {
        Ok(Some(object)) => enrolment_decision(&object),
        _ => None,
    }
}

/// Records an enrolment decision a write made (a signed request turned approved
/// or denied) as an event naming the token that made it.
fn record_decision_event(
    state: &ApiState,
    caller: Option<&Caller>,
    before: Option<DeviceRecord>,
    after: &StoredObject,
) {
    if after.kind != ResourceKind::EdgeDeviceSignedRequest {
        return;
    }
    let decided = enrolment_decision(after);
    if decided == before {
        return;
    }
    let by = match caller.map(Caller::identity) {
        Some(Identity::Token(token)) if token.description.is_empty() => {
            format!("token {}", token.id)
        }
        Some(Identity::Token(token)) => format!("token {} ({})", token.id, token.description),
        Some(Identity::Oidc(verified)) => format!("user {}", verified.user.name),
        None => "an unknown caller".to_owned(),
    };
    let request = InvolvedObject {
        uid: Some(after.uid.clone()),
        ..InvolvedObject::new(after.kind, after.namespace.as_str(), after.name.as_str())
    };
    let event = match decided {
        Some(DeviceRecord::Approved) => ServerEvent::EnrolmentApproved { request, by: &by },
        Some(DeviceRecord::Denied) => ServerEvent::EnrolmentDenied { request, by: &by },
        _ => return,
    };
    state.events.spawn_server_event(event);
}

async fn replace(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    ObjectAt {
        kind,
        namespace,
        name,
    }: ObjectAt,
    query: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    writable(kind)?;
    not_builtin(kind, &name)?;
    let params = WriteParams::read(query)?;
    let dry = params.is_dry_run()?;
    let before = decision_before(&state, kind, &namespace, &name).await;
    let mut object = request_object(&headers, body)?;
    let target = Target {
        kind,
        namespace: &namespace,
        name: Some(&name),
    };
    admit(&target, &mut object)?;
    let current = fetch_optional(&state, kind, &namespace, &name).await?;
    let current = current.as_ref().map(|c| &c.body);
    record_update(kind, current, &mut object, &params.update_manager(&headers));
    let expected = expected_resource_version(&object);
    if dry {
        existing_name(kind, &namespace, &name)?;
        let write = DryRunWrite::Update(expected, object);
        return dry_run_response(&state, StatusCode::OK, kind, &namespace, &name, write).await;
    }
    let updated = state
        .store
        .update(kind, &namespace, &name, expected, object)
        .await?;
    after_write(&state, kind);
    record_decision_event(&state, caller.as_deref(), before, &updated);
    Ok(object_response(StatusCode::OK, &updated))
}

async fn replace_status(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    ObjectAt {
        kind,
        namespace,
        name,
    }: ObjectAt,
    query: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    writable(kind)?;
    let dry = WriteParams::dry_run(query)?;
    let before = decision_before(&state, kind, &namespace, &name).await;
    let mut object = request_object(&headers, body)?;
    if let Some(status) = object.get_mut("status") {
        sign_enrolment_decisions(kind, status, caller.as_deref());
    }
    let target = Target {
        kind,
        namespace: &namespace,
        name: Some(&name),
    };
    admit(&target, &mut object)?;
    let expected = expected_resource_version(&object);
    let status = object.get("status").cloned().unwrap_or(Value::Null);
    existing_name(kind, &namespace, &name)?;
    if dry {
        let write = DryRunWrite::UpdateStatus(expected, status);
        return dry_run_response(&state, StatusCode::OK, kind, &namespace, &name, write).await;
    }
    let updated = state
        .store
        .update_status(kind, &namespace, &name, expected, status)
        .await?;
    record_decision_event(&state, caller.as_deref(), before, &updated);
    Ok(object_response(StatusCode::OK, &updated))
}

/// Which part of an object a patch writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchTarget {
    Object,
    Status,
}

async fn patch(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    ObjectAt {
        kind,
        namespace,
        name,
    }: ObjectAt,
    query: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    writable(kind)?;
    not_builtin(kind, &name)?;
    let params = WriteParams::read(query)?;
    if body_format(&headers)? == BodyFormat::Apply {
        let config = decode_body(BodyFormat::Apply, &body_bytes(body)?)?;
        let target = Target {
            kind,
            namespace: &namespace,
            name: Some(&name),
        };
        return server_side_apply::server_side_apply(
            &state,
            caller.as_deref(),
            &target,
            &params,
            config,
        )
        .await;
    }
    let patch = request_patch(&headers, body)?;
    let manager = params.update_manager(&headers);
    let request = PatchRequest {
        kind,
        namespace: &namespace,
        name: &name,
        target: PatchTarget::Object,
        dry_run: params.is_dry_run()?,
        manager: &manager,
    };
    apply_patch(&state, caller.as_deref(), &request, &patch).await
}

async fn patch_status(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    ObjectAt {
        kind,
        namespace,
        name,
    }: ObjectAt,
    query: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    writable(kind)?;
    let dry = WriteParams::dry_run(query)?;
    let mut patch = request_patch(&headers, body)?;
    if kind == ResourceKind::EdgeDeviceSignedRequest && matches!(patch, Patch::Json(_)) {
        // A decision written in the status is signed with the calling token, which
        // needs the conditions the patch writes: a merge patch names them.
        return Err(ApiError::unsupported_media_type(
            "the status of an EdgeDeviceSignedRequest takes a merge patch, so that decisions are signed",
        ));
    }
    if let Some(status) = patch.field_mut("status") {
        sign_enrolment_decisions(kind, status, caller.as_deref());
    }
    let request = PatchRequest {
        kind,
        namespace: &namespace,
        name: &name,
        target: PatchTarget::Status,
        dry_run: dry,
        manager: "",
    };
    apply_patch(&state, caller.as_deref(), &request, &patch).await
}

/// Where a patch goes and whether it is only tried.
struct PatchRequest<'a> {
    kind: ResourceKind,
    namespace: &'a str,
    name: &'a str,
    target: PatchTarget,
    dry_run: bool,
    /// The field manager of an object patch (unused for the status).
    manager: &'a str,
}

/// Says who decided, in each `approved` or `declined` condition a status write to
/// an EdgeDeviceSignedRequest carries: the message ends with `(by token ID:
/// DESCRIPTION)`, the token that made the write. The client's words before it are
/// kept; a signature the client wrote itself is replaced.
fn sign_enrolment_decisions(kind: ResourceKind, status: &mut Value, caller: Option<&Caller>) {
    let Some(caller) = caller else {
        return;
    };
    if kind != ResourceKind::EdgeDeviceSignedRequest {
        return;
    }
    let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    let signature = caller.signature();
    for condition in conditions.iter_mut() {
        let decision = matches!(
            condition.get("type").and_then(Value::as_str),
            Some("approved" | "declined")
        );
        let Some(condition) = condition.as_object_mut().filter(|_| decision) else {
            continue;
        };
        let words = condition
            .get("message")
            .and_then(Value::as_str)
            .map(|m| {
                m.split(" (by token ")
                    .next()
                    .and_then(|m| m.split(" (by user ").next())
                    .unwrap_or(m)
                    .trim()
                    .to_owned()
            })
            .filter(|m| !m.is_empty());
        let message = match words {
            Some(words) => format!("{words} {signature}"),
            None => signature.clone(),
        };
        condition.insert("message".into(), Value::String(message));
    }
}

/// Applies a patch to the stored object. A merge patch naming
/// `metadata.resourceVersion` is a precondition (409 when stale), as is a JSON
/// patch that `test`s it; without one the patch is re-applied on the newest
/// version when a concurrent writer wins.
async fn apply_patch(
    state: &ApiState,
    caller: Option<&Caller>,
    request: &PatchRequest<'_>,
    patch: &Patch,
) -> ApiResult {
    let PatchRequest {
        kind,
        namespace,
        name,
        target,
        dry_run: dry,
        manager,
    } = *request;
    let precondition = match patch.resource_version() {
        None | Some(Value::Null) => None,
        Some(Value::String(rv)) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                kind,
                name,
                vec![super::StatusCause::invalid(
                    "metadata.resourceVersion",
                    format!("{rv:?} is not a resource version issued by this server"),
                )],
            )
        })?),
        Some(other) => {
            return Err(ApiError::invalid(
                kind,
                name,
                vec![super::StatusCause::invalid(
                    "metadata.resourceVersion",
                    format!("must be a string, not {other}"),
                )],
            ));
        }
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = fetch(state, kind, namespace, name).await?;
        let before = if kind == ResourceKind::EdgeDeviceSignedRequest {
            enrolment_decision(&current)
        } else {
            None
        };
        let mut merged = current.body.clone();
        patch
            .apply(&mut merged)
            .map_err(|error| patch_failed(kind, name, error))?;
        if target == PatchTarget::Object {
            record_update(kind, Some(&current.body), &mut merged, manager);
        }
        let admission = Target {
            kind,
            namespace,
            name: Some(name),
        };
        admit(&admission, &mut merged)?;
        // A JSON patch that changes `metadata.resourceVersion` states the version it
        // was made from; one that leaves it alone has no precondition.
        let carried = match patch {
            Patch::Json(_) => {
                expected_resource_version(&merged).filter(|rv| *rv != current.resource_version)
            }
            _ => None,
        };
        let expected = precondition.or(carried).unwrap_or(current.resource_version);
        if dry {
            let write = match target {
                PatchTarget::Object => DryRunWrite::Update(Some(expected), merged),
                PatchTarget::Status => DryRunWrite::UpdateStatus(
                    Some(expected),
                    merged.get("status").cloned().unwrap_or(Value::Null),
                ),
            };
            return dry_run_response(state, StatusCode::OK, kind, namespace, name, write).await;
        }
        let result = match target {
            PatchTarget::Object => {
                state
                    .store
                    .update(kind, namespace, name, Some(expected), merged)
                    .await
            }
            PatchTarget::Status => {
                let status = merged.get("status").cloned().unwrap_or(Value::Null);
                state
                    .store
                    .update_status(kind, namespace, name, Some(expected), status)
                    .await
            }
        };
        match result {
            Ok(updated) => {
                after_write(state, kind);
                record_decision_event(state, caller, before, &updated);
                return Ok(object_response(StatusCode::OK, &updated));
            }
            Err(StoreError::Conflict { .. })
                if precondition.is_none() && carried.is_none() && attempt < PATCH_ATTEMPTS =>
            {
                continue;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

async fn remove(
    State(state): State<ApiState>,
    ObjectAt {
        kind,
        namespace,
        name,
    }: ObjectAt,
    query: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    writable(kind)?;
    not_builtin(kind, &name)?;
    existing_name(kind, &namespace, &name)?;
    let mut dry = WriteParams::dry_run(query)?;
    // Optional DeleteOptions: `preconditions.resourceVersion`, `dryRun: ["All"]`.
    let bytes = body_bytes(body)?;
    let expected = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let options = request_object(&headers, Ok(bytes))?;
        match options.get("dryRun") {
            None | Some(Value::Null) => {}
            Some(Value::Array(values)) if values.iter().all(|v| v == "All") => {
                dry |= !values.is_empty();
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid dryRun {other}: the only supported value is [\"All\"]"
                )));
            }
        }
        match options.pointer("/preconditions/resourceVersion") {
            None | Some(Value::Null) => None,
            Some(Value::String(rv)) => Some(rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid preconditions.resourceVersion {rv:?}"))
            })?),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "preconditions.resourceVersion must be a string, not {other}"
                )));
            }
        }
    };
    if dry {
        let write = DryRunWrite::Delete(expected);
        return dry_run_response(&state, StatusCode::OK, kind, &namespace, &name, write).await;
    }
    let deletion = state
        .store
        .delete(kind, &namespace, &name, expected)
        .await?;
    after_write(&state, kind);
    let deleted = deletion.object();
    if kind == ResourceKind::EdgeDevice {
        state.events.spawn_server_event(ServerEvent::Deleted {
            device: InvolvedObject {
                uid: Some(deleted.uid.clone()),
                ..InvolvedObject::new(kind, namespace.as_str(), name.as_str())
            },
        });
    }
    Ok(object_response(StatusCode::OK, deletion.object()))
}
