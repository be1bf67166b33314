//! Handlers of the resource paths: list, watch, get, create, replace, merge patch,
//! delete, the status subresource, and API tokens.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use flotta_core::model::{API_VERSION, GROUP, VERSION};
use flotta_core::selector::{FieldSelector, Selector};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::last_seen::{LastSeenIndex, index_last_seen, overlay_last_seen};
use super::object::{
    BodyFormat, SelectableObject, Target, admit, body_format, check_namespace_name,
    check_object_name, decode_body, expected_resource_version, merge_patch, parse_field_selector,
};
use super::status::{ApiError, error_chain};
use super::{API_PREFIX, ApiState, kind_of_plural, plural_of};
use crate::store::{
    ApiToken, ContinueToken, ListOptions, ResourceKind, Store, StoreError, StoredObject, TokenRole,
    WatchEventType,
};

/// How many times a merge patch without a resource version is retried when a
/// concurrent writer wins.
const PATCH_ATTEMPTS: usize = 5;
/// Objects fetched per store page while filtering a list by selectors.
const FILTER_PAGE: usize = 200;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route(API_PREFIX, get(discovery))
        .route(
            &format!("{API_PREFIX}/tokens"),
            get(list_tokens).post(create_token),
        )
        .route(&format!("{API_PREFIX}/tokens/{{id}}"), delete(delete_token))
        .route(&format!("{API_PREFIX}/{{plural}}"), get(list_all))
        .route(
            &format!("{API_PREFIX}/namespaces/{{namespace}}/{{plural}}"),
            get(list_namespaced).post(create),
        )
        .route(
            &format!("{API_PREFIX}/namespaces/{{namespace}}/{{plural}}/{{name}}"),
            get(read).put(replace).patch(patch).delete(remove),
        )
        .route(
            &format!("{API_PREFIX}/namespaces/{{namespace}}/{{plural}}/{{name}}/status"),
            get(read_status).put(replace_status).patch(patch_status),
        )
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

fn namespace_ok(namespace: &str) -> ApiResult<()> {
    check_namespace_name(namespace).map_err(|problem| {
        ApiError::bad_request(format!("invalid namespace {namespace:?}: {problem}"))
    })
}

/// A name in a path that cannot exist is simply not found.
fn existing_name(kind: ResourceKind, namespace: &str, name: &str) -> ApiResult<()> {
    check_object_name(name).map_err(|_| {
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

// ---------------------------------------------------------------- discovery

async fn discovery() -> Json<Value> {
    let resources: Vec<Value> = ResourceKind::ALL
        .iter()
        .flat_map(|kind| {
            let plural = plural_of(*kind);
            [
                json!({
                    "name": plural,
                    "singularName": kind.as_str().to_ascii_lowercase(),
                    "namespaced": true,
                    "kind": kind.as_str(),
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }),
                json!({
                    "name": format!("{plural}/status"),
                    "singularName": "",
                    "namespaced": true,
                    "kind": kind.as_str(),
                    "verbs": ["get", "patch", "update"],
                }),
            ]
        })
        .collect();
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": resources,
    }))
}

// ---------------------------------------------------------------- list and watch

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<String>,
}

/// A parsed list or watch request.
struct ListRequest {
    kind: ResourceKind,
    namespace: Option<String>,
    labels: Selector,
    fields: FieldSelector,
    limit: Option<usize>,
    continue_token: Option<String>,
    resource_version: Option<u64>,
    timeout: Option<Duration>,
}

impl ListRequest {
    fn parse(kind: ResourceKind, namespace: Option<String>, params: ListParams) -> ApiResult<Self> {
        let labels = match params.label_selector.as_deref() {
            None => Selector::everything(),
            Some(text) => text
                .parse::<Selector>()
                .map_err(|e| ApiError::bad_request(format!("invalid labelSelector: {e}")))?,
        };
        let fields = match params.field_selector.as_deref() {
            None => FieldSelector::everything(),
            Some(text) => parse_field_selector(kind, text)?,
        };
        let limit = match params.limit.as_deref() {
            None | Some("") => None,
            Some(text) => match text.parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid limit {text:?}: expected a non-negative integer"
                    )));
                }
            },
        };
        let resource_version =
            match params.resource_version.as_deref() {
                None | Some("") | Some("0") => None,
                Some(text) => Some(text.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {text:?}"))
                })?),
            };
        let timeout = match params.timeout_seconds.as_deref() {
            None | Some("") => None,
            Some(text) => Some(Duration::from_secs(text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds {text:?}"))
            })?)),
        };
        Ok(Self {
            kind,
            namespace,
            labels,
            fields,
            limit,
            continue_token: params.continue_token.filter(|t| !t.is_empty()),
            resource_version,
            timeout,
        })
    }

    fn matches(&self, object: &StoredObject) -> bool {
        self.labels.matches(&object.labels)
            && self.fields.matches(&SelectableObject {
                kind: self.kind,
                body: &object.body,
            })
    }
}

fn is_watch(params: &ListParams) -> ApiResult<bool> {
    match params.watch.as_deref() {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid watch {other:?}: expected true or false"
        ))),
    }
}

async fn list_all(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult {
    let plural = path_params(path)?;
    let kind = kind_for(&plural)?;
    list_or_watch(state, kind, None, query_params(query)?).await
}

async fn list_namespaced(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult {
    let (namespace, plural) = path_params(path)?;
    let kind = kind_for(&plural)?;
    namespace_ok(&namespace)?;
    list_or_watch(state, kind, Some(namespace), query_params(query)?).await
}

async fn list_or_watch(
    state: ApiState,
    kind: ResourceKind,
    namespace: Option<String>,
    params: ListParams,
) -> ApiResult {
    let watch = is_watch(&params)?;
    let request = ListRequest::parse(kind, namespace, params)?;
    if watch {
        watch_response(state, request).await
    } else {
        let (items, resource_version, continue_token) = list_matching(&state, &request).await?;
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "resourceVersion".into(),
            json!(resource_version.to_string()),
        );
        if let Some(token) = continue_token {
            metadata.insert("continue".into(), json!(token));
        }
        let items: Vec<&Value> = items.iter().map(|o| &o.body).collect();
        Ok(Json(json!({
            "apiVersion": API_VERSION,
            "kind": format!("{}List", kind.as_str()),
            "metadata": metadata,
            "items": items,
        }))
        .into_response())
    }
}

/// Reads pages from the store until `limit` matching objects are found; the
/// continue token then points just after the last one returned.
async fn list_matching(
    state: &ApiState,
    request: &ListRequest,
) -> ApiResult<(Vec<StoredObject>, u64, Option<String>)> {
    let filtering = !request.labels.is_everything() || !request.fields.is_everything();
    let page_size = match (filtering, request.limit) {
        (false, limit) => limit,
        (true, Some(limit)) => Some(limit.clamp(1, FILTER_PAGE)),
        (true, None) => Some(FILTER_PAGE),
    };
    // One read of the last-seen table per request, joined by name below.
    let last_seen = if request.kind == ResourceKind::EdgeDevice {
        index_last_seen(
            state
                .store
                .last_seen_all(request.namespace.as_deref())
                .await?,
        )
    } else {
        LastSeenIndex::new()
    };
    let mut cursor = request.continue_token.clone();
    let mut found = Vec::new();
    let mut list_version = None;
    loop {
        let page = state
            .store
            .list(
                request.kind,
                request.namespace.as_deref(),
                &ListOptions {
                    limit: page_size,
                    continue_token: cursor.clone(),
                },
            )
            .await?;
        let resource_version = *list_version.get_or_insert(page.resource_version);
        let scanned = page.items.len();
        for (index, mut object) in page.items.into_iter().enumerate() {
            let seen_at = last_seen
                .get(&(object.namespace.clone(), object.name.clone()))
                .copied();
            overlay_last_seen(&mut object, seen_at);
            if !request.matches(&object) {
                continue;
            }
            found.push(object);
            if request.limit.is_some_and(|limit| found.len() >= limit) {
                let more = index + 1 < scanned || page.continue_token.is_some();
                let token = more.then(|| {
                    found.last().map(|last| {
                        ContinueToken {
                            resource_version,
                            namespace: last.namespace.clone(),
                            name: last.name.clone(),
                        }
                        .encode()
                    })
                });
                return Ok((found, resource_version, token.flatten()));
            }
        }
        match page.continue_token {
            Some(token) => cursor = Some(token),
            None => return Ok((found, resource_version, None)),
        }
    }
}

fn watch_line(event_type: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Streams `{"type", "object"}` JSON lines: without a resource version first the
/// current objects as `ADDED`, then every change; ends on `timeoutSeconds`, client
/// disconnect or server shutdown. A resource version older than the change log
/// gives 410 at once, or an `ERROR` event carrying the 410 `Status` later.
async fn watch_response(state: ApiState, request: ListRequest) -> ApiResult {
    let (initial, from) = match request.resource_version {
        Some(rv) => (Vec::new(), rv),
        None => {
            let unpaged = ListRequest {
                limit: None,
                continue_token: None,
                ..request
            };
            let (items, rv, _) = list_matching(&state, &unpaged).await?;
            return start_watch(state, unpaged, items, rv).await;
        }
    };
    start_watch(state, request, initial, from).await
}

async fn start_watch(
    state: ApiState,
    request: ListRequest,
    initial: Vec<StoredObject>,
    from: u64,
) -> ApiResult {
    let mut events = state
        .store
        .watch(request.kind, request.namespace.as_deref(), from)
        .await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut shutdown = state.shutdown.clone();
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        let _active = metrics.watch_started();
        for object in &initial {
            if sender
                .send(watch_line("ADDED", &object.body))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                () = crate::app::stopping(&mut shutdown) => break,
                _ = sender.closed() => break,
                _ = sleep_until(deadline) => break,
            };
            let line = match next {
                None => break,
                Some(Ok(mut event)) => {
                    if let Err(error) = with_last_seen(&state.store, &mut event.object).await {
                        tracing::warn!(error = %error_chain(&error), "watch: last-seen lookup failed");
                        let status = ApiError::from(error).to_status();
                        let _ = sender.send(watch_line("ERROR", &status)).await;
                        break;
                    }
                    if !request.matches(&event.object) {
                        continue;
                    }
                    let event_type = match event.event_type {
                        WatchEventType::Added => "ADDED",
                        WatchEventType::Modified => "MODIFIED",
                        WatchEventType::Deleted => "DELETED",
                    };
                    watch_line(event_type, &event.object.body)
                }
                Some(Err(error)) => {
                    if !matches!(error, StoreError::Gone { .. }) {
                        tracing::warn!(error = %error_chain(&error), "watch stream failed");
                    }
                    let status = ApiError::from(error).to_status();
                    let _ = sender.send(watch_line("ERROR", &status)).await;
                    break;
                }
            };
            if sender.send(line).await.is_err() {
                break;
            }
        }
    });
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|line| (Ok::<_, Infallible>(line), receiver))
    });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------- single objects

type ObjectPath = (String, String, String);

fn resolve(
    path: Result<Path<ObjectPath>, PathRejection>,
) -> ApiResult<(ResourceKind, String, String)> {
    let (namespace, plural, name) = path_params(path)?;
    let kind = kind_for(&plural)?;
    namespace_ok(&namespace)?;
    Ok((kind, namespace, name))
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

async fn read(
    State(state): State<ApiState>,
    path: Result<Path<ObjectPath>, PathRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    let mut object = fetch(&state, kind, &namespace, &name).await?;
    with_last_seen(&state.store, &mut object).await?;
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
    state: State<ApiState>,
    path: Result<Path<ObjectPath>, PathRejection>,
) -> ApiResult {
    read(state, path).await
}

fn request_object(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    let format = body_format(headers)?;
    if format == BodyFormat::MergePatch {
        return Err(ApiError::unsupported_media_type(
            "application/merge-patch+json is only accepted by PATCH",
        ));
    }
    decode_body(format, &body_bytes(body)?)
}

fn request_patch(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    match body_format(headers)? {
        BodyFormat::MergePatch => {
            let patch = decode_body(BodyFormat::MergePatch, &body_bytes(body)?)?;
            if patch.is_object() {
                Ok(patch)
            } else {
                Err(ApiError::bad_request("a merge patch must be a JSON object"))
            }
        }
        _ => Err(ApiError::unsupported_media_type(
            "PATCH needs Content-Type application/merge-patch+json",
        )),
    }
}

/// Server-managed metadata a client may not set on creation.
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
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (namespace, plural) = path_params(path)?;
    let kind = kind_for(&plural)?;
    namespace_ok(&namespace)?;
    let mut object = request_object(&headers, body)?;
    strip_server_fields(&mut object);
    let target = Target {
        kind,
        namespace: &namespace,
        name: None,
    };
    let name = admit(&target, &mut object)?;
    let created = state.store.create(kind, &namespace, &name, object).await?;
    Ok(object_response(StatusCode::CREATED, &created))
}

async fn replace(
    State(state): State<ApiState>,
    path: Result<Path<ObjectPath>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    let mut object = request_object(&headers, body)?;
    let target = Target {
        kind,
        namespace: &namespace,
        name: Some(&name),
    };
    admit(&target, &mut object)?;
    let expected = expected_resource_version(&object);
    let updated = state
        .store
        .update(kind, &namespace, &name, expected, object)
        .await?;
    Ok(object_response(StatusCode::OK, &updated))
}

async fn replace_status(
    State(state): State<ApiState>,
    path: Result<Path<ObjectPath>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    let mut object = request_object(&headers, body)?;
    let target = Target {
        kind,
        namespace: &namespace,
        name: Some(&name),
    };
    admit(&target, &mut object)?;
    let expected = expected_resource_version(&object);
    let status = object.get("status").cloned().unwrap_or(Value::Null);
    existing_name(kind, &namespace, &name)?;
    let updated = state
        .store
        .update_status(kind, &namespace, &name, expected, status)
        .await?;
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
    path: Result<Path<ObjectPath>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    let patch = request_patch(&headers, body)?;
    apply_patch(&state, kind, &namespace, &name, &patch, PatchTarget::Object).await
}

async fn patch_status(
    State(state): State<ApiState>,
    path: Result<Path<ObjectPath>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    let patch = request_patch(&headers, body)?;
    apply_patch(&state, kind, &namespace, &name, &patch, PatchTarget::Status).await
}

/// Applies a merge patch to the stored object. A patch naming
/// `metadata.resourceVersion` is a precondition (409 when stale); without one the
/// patch is re-applied on the newest version when a concurrent writer wins.
async fn apply_patch(
    state: &ApiState,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    patch: &Value,
    target: PatchTarget,
) -> ApiResult {
    let precondition = match patch.pointer("/metadata/resourceVersion") {
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
        let mut merged = current.body.clone();
        merge_patch(&mut merged, patch);
        let admission = Target {
            kind,
            namespace,
            name: Some(name),
        };
        admit(&admission, &mut merged)?;
        let expected = precondition.unwrap_or(current.resource_version);
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
            Ok(updated) => return Ok(object_response(StatusCode::OK, &updated)),
            Err(StoreError::Conflict { .. })
                if precondition.is_none() && attempt < PATCH_ATTEMPTS =>
            {
                continue;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

async fn remove(
    State(state): State<ApiState>,
    path: Result<Path<ObjectPath>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (kind, namespace, name) = resolve(path)?;
    existing_name(kind, &namespace, &name)?;
    // Optional DeleteOptions: `preconditions.resourceVersion`.
    let bytes = body_bytes(body)?;
    let expected = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let options = request_object(&headers, Ok(bytes))?;
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
    let deletion = state
        .store
        .delete(kind, &namespace, &name, expected)
        .await?;
    Ok(object_response(StatusCode::OK, deletion.object()))
}

// ---------------------------------------------------------------- tokens

fn token_json(token: &ApiToken) -> Value {
    json!({
        "id": token.id,
        "role": token.role.as_str(),
        "description": token.description,
        "createdAt": crate::tokens::format_time(token.created_at),
    })
}

async fn list_tokens(State(state): State<ApiState>) -> ApiResult {
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

async fn create_token(
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
            causes: vec![super::StatusCause::invalid("role", e.to_string())],
        })?;
    let issued = state.store.create_token(role, &request.description).await?;
    let mut body = token_json(&issued.token);
    if let Some(map) = body.as_object_mut() {
        map.insert("secret".into(), json!(issued.secret));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn delete_token(
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
