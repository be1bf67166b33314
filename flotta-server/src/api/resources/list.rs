//! Lists and watches: label and field selectors, pages, and the watch stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use flotta_core::selector::{FieldSelector, Selector};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::ApiState;
use super::super::last_seen::{LastSeenIndex, index_last_seen, overlay_last_seen};
use super::super::object::{SelectableObject, parse_field_selector};
use super::super::status::{ApiError, error_chain};
use super::super::table::{IncludeObject, table, wants_table};
use super::{
    ApiResult, FILTER_PAGE, kind_for, namespace_ok, path_params, query_params, scope_ok,
    with_last_seen,
};
use crate::store::{
    ContinueToken, ListOptions, ResourceKind, StoreError, StoredObject, WatchEventType,
};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListParams {
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<String>,
    include_object: Option<String>,
    allow_watch_bookmarks: Option<String>,
    resource_version_match: Option<String>,
}

/// `resourceVersionMatch` of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionMatch {
    /// The list is at least as new as the resource version (the latest always is,
    /// unless the version was never issued).
    NotOlderThan(u64),
    /// The list is exactly at the resource version: served only while it is the
    /// latest (the store keeps no snapshots of the past).
    Exact(u64),
}

/// How often a watch that allows bookmarks sends one while nothing it shows
/// changes (and once more as `timeoutSeconds` ends it).
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

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
    /// Answer `meta.k8s.io/v1` Tables (list) or Table-wrapped events (watch).
    table: Option<IncludeObject>,
    /// `allowWatchBookmarks=true`: the watch sends `BOOKMARK` events.
    bookmarks: bool,
    /// `resourceVersionMatch` of a list.
    version_match: Option<VersionMatch>,
}

impl ListRequest {
    fn parse(
        kind: ResourceKind,
        namespace: Option<String>,
        params: ListParams,
        headers: &HeaderMap,
        watch: bool,
    ) -> ApiResult<Self> {
        let table = if wants_table(headers) {
            Some(IncludeObject::parse(params.include_object.as_deref())?)
        } else {
            None
        };
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
        let bookmarks = match params.allow_watch_bookmarks.as_deref() {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid allowWatchBookmarks {other:?}: expected true or false"
                )));
            }
        };
        let continue_token = params.continue_token.filter(|t| !t.is_empty());
        let version_match = match params.resource_version_match.as_deref() {
            None | Some("") => None,
            Some(_) if watch => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is for lists, not watches",
                ));
            }
            Some(_) if continue_token.is_some() => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch cannot be given with continue: the token carries its version",
                ));
            }
            Some(wanted) => {
                let Some(text) = params.resource_version.as_deref().filter(|t| !t.is_empty())
                else {
                    return Err(ApiError::bad_request(
                        "resourceVersionMatch needs a resourceVersion",
                    ));
                };
                let version = text.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {text:?}"))
                })?;
                match wanted {
                    "NotOlderThan" => Some(VersionMatch::NotOlderThan(version)),
                    "Exact" if version == 0 => {
                        return Err(ApiError::bad_request(
                            "resourceVersionMatch=Exact needs a resourceVersion other than 0",
                        ));
                    }
                    "Exact" => Some(VersionMatch::Exact(version)),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "invalid resourceVersionMatch {other:?}: expected NotOlderThan or Exact"
                        )));
                    }
                }
            }
        };
        Ok(Self {
            kind,
            namespace,
            labels,
            fields,
            limit,
            continue_token,
            resource_version,
            timeout,
            table,
            bookmarks,
            version_match,
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

pub(super) async fn list_all(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ListParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let plural = path_params(path)?;
    let kind = kind_for(&plural)?;
    list_or_watch(state, kind, None, query_params(query)?, &headers).await
}

pub(super) async fn list_namespaced(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<ListParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (namespace, plural) = path_params(path)?;
    let kind = kind_for(&plural)?;
    namespace_ok(&namespace)?;
    scope_ok(kind, &namespace)?;
    list_or_watch(state, kind, Some(namespace), query_params(query)?, &headers).await
}

async fn list_or_watch(
    state: ApiState,
    kind: ResourceKind,
    namespace: Option<String>,
    params: ListParams,
    headers: &HeaderMap,
) -> ApiResult {
    let watch = is_watch(&params)?;
    let request = ListRequest::parse(kind, namespace, params, headers, watch)?;
    if watch {
        watch_response(state, request).await
    } else {
        let (items, resource_version, continue_token) = list_matching(&state, &request).await?;
        check_version_match(request.version_match, resource_version)?;
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "resourceVersion".into(),
            json!(resource_version.to_string()),
        );
        if let Some(token) = continue_token {
            metadata.insert("continue".into(), json!(token));
        }
        if let Some(include) = request.table {
            let now = time::OffsetDateTime::now_utc();
            let rows = items.iter().map(|o| &o.body);
            return Ok(Json(table(kind, rows, include, metadata, now)).into_response());
        }
        let items: Vec<&Value> = items.iter().map(|o| &o.body).collect();
        Ok(Json(json!({
            "apiVersion": kind.api_version(),
            "kind": format!("{}List", kind.as_str()),
            "metadata": metadata,
            "items": items,
        }))
        .into_response())
    }
}

/// Checks a list read at `listed` against its `resourceVersionMatch`.
fn check_version_match(wanted: Option<VersionMatch>, listed: u64) -> ApiResult<()> {
    match wanted {
        Some(VersionMatch::NotOlderThan(version)) if version > listed => Err(ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("Too large resource version: {version}, current: {listed}"),
        )),
        Some(VersionMatch::Exact(version)) if version != listed => Err(ApiError::new(
            axum::http::StatusCode::GONE,
            "Expired",
            format!(
                "resource version {version} cannot be listed exactly: the latest is {listed}, \
                 and only the latest is kept; list without resourceVersionMatch=Exact"
            ),
        )),
        _ => Ok(()),
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
    // The built-in ClusterRoles and bindings lead the first page.
    let mut found: Vec<StoredObject> = if cursor.is_none() {
        super::super::rbac::builtin_objects(request.kind)
            .into_iter()
            .filter(|o| request.matches(o))
            .collect()
    } else {
        Vec::new()
    };
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

/// One line of a watch stream; with `table`, the object is a one-row Table, as
/// kubectl's `get --watch` asks.
fn watch_line(
    event_type: &str,
    object: &Value,
    table_of: Option<(ResourceKind, IncludeObject)>,
) -> Bytes {
    let object = match table_of {
        Some((kind, include)) if event_type != "ERROR" => {
            let mut metadata = serde_json::Map::new();
            if let Some(rv) = object.pointer("/metadata/resourceVersion") {
                metadata.insert("resourceVersion".into(), rv.clone());
            }
            let now = time::OffsetDateTime::now_utc();
            table(kind, [object], include, metadata, now)
        }
        _ => object.clone(),
    };
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
    let table_of = request.table.map(|include| (request.kind, include));
    tokio::spawn(async move {
        let _active = metrics.watch_started();
        for object in &initial {
            if sender
                .send(watch_line("ADDED", &object.body, table_of))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
        // The newest version the watch has passed, shown or filtered out: what a
        // bookmark tells the client it may resume from.
        let mut passed = from;
        let mut bookmark_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                () = crate::shutdown::stopping(&mut shutdown) => break,
                _ = sender.closed() => break,
                _ = sleep_until(deadline) => {
                    if request.bookmarks {
                        let _ = sender.send(bookmark(request.kind, passed)).await;
                    }
                    break;
                }
                _ = bookmark_timer.tick(), if request.bookmarks => {
                    if sender.send(bookmark(request.kind, passed)).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let line = match next {
                None => break,
                Some(Ok(mut event)) => {
                    passed = passed.max(event.object.resource_version);
                    if let Err(error) = with_last_seen(&state.store, &mut event.object).await {
                        tracing::warn!(error = %error_chain(&error), "watch: last-seen lookup failed");
                        let status = ApiError::from(error).to_status();
                        let _ = sender.send(watch_line("ERROR", &status, None)).await;
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
                    watch_line(event_type, &event.object.body, table_of)
                }
                Some(Err(error)) => {
                    if !matches!(error, StoreError::Gone { .. }) {
                        tracing::warn!(error = %error_chain(&error), "watch stream failed");
                    }
                    let status = ApiError::from(error).to_status();
                    let _ = sender.send(watch_line("ERROR", &status, None)).await;
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

/// A `BOOKMARK` event: an object of the kind carrying only the resource version.
fn bookmark(kind: ResourceKind, resource_version: u64) -> Bytes {
    let object = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.as_str(),
        "metadata": {"resourceVersion": resource_version.to_string()},
    });
    watch_line("BOOKMARK", &object, None)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
