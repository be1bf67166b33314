//! Kubernetes `v1` `Namespace`s under `/api/v1/namespaces`, derived from the
//! objects the store holds ([`flotta_core::kind::NAMESPACE`]): a namespace exists
//! while objects a user writes live in it, and `default` always does. Nothing is
//! stored for a namespace, so one cannot be created (405); deleting one that still
//! holds objects is refused (409, naming what it holds) rather than deleting them.
//! Events, which only the server writes, do not keep a namespace alive; retention
//! prunes them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use flotta_core::kind::NAMESPACE;
use serde_json::{Value, json};

use super::super::ApiState;
use super::super::status::ApiError;
use super::super::table::{IncludeObject, table_of_rows, wants_table};
use super::{ApiResult, namespace_ok, path_params, query_params};
use crate::store::{ListOptions, ResourceKind, StoreError};

/// The namespace every client starts in; it always exists.
const DEFAULT_NAMESPACE: &str = "default";
/// Objects read per store page while collecting namespaces.
const PAGE: usize = 500;

/// What one namespace holds: objects per kind, and the oldest creation time
/// (the namespace's own).
#[derive(Debug, Default)]
struct Contents {
    counts: BTreeMap<ResourceKind, usize>,
    created: Option<String>,
}

/// Every namespace holding objects of a kind users write, read page by page.
async fn namespaces(
    state: &ApiState,
    only: Option<&str>,
) -> Result<BTreeMap<String, Contents>, StoreError> {
    let mut found: BTreeMap<String, Contents> = BTreeMap::new();
    for kind in ResourceKind::ALL
        .into_iter()
        .filter(|k| !k.server_written())
    {
        let mut cursor = None;
        loop {
            let page = state
                .store
                .list(
                    kind,
                    only,
                    &ListOptions {
                        limit: Some(PAGE),
                        continue_token: cursor,
                    },
                )
                .await?;
            for object in &page.items {
                let contents = found.entry(object.namespace.clone()).or_default();
                *contents.counts.entry(kind).or_default() += 1;
                let created = object
                    .body
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str);
                // RFC 3339 in UTC: text order is time order.
                if let Some(created) = created
                    && contents.created.as_deref().is_none_or(|c| created < c)
                {
                    contents.created = Some(created.to_owned());
                }
            }
            match page.continue_token {
                Some(token) => cursor = Some(token),
                None => break,
            }
        }
    }
    if only.is_none_or(|ns| ns == DEFAULT_NAMESPACE) {
        found.entry(DEFAULT_NAMESPACE.to_owned()).or_default();
    }
    Ok(found)
}

fn namespace_object(name: &str, contents: &Contents) -> Value {
    let mut metadata = json!({"name": name});
    if let (Some(map), Some(created)) = (metadata.as_object_mut(), &contents.created) {
        map.insert("creationTimestamp".into(), json!(created));
    }
    json!({
        "apiVersion": "v1",
        "kind": NAMESPACE.name,
        "metadata": metadata,
        "spec": {},
        "status": {"phase": "Active"},
    })
}

const COLUMNS: &[(&str, &str)] = &[
    ("NAME", "Name of the namespace"),
    ("STATUS", "Phase of the namespace (always Active)"),
    ("AGE", "Time since the oldest object in it was created"),
];

fn row(object: Value, now: time::OffsetDateTime) -> (Vec<String>, Value) {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let age = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(flotta_core::timestamp::parse_rfc3339)
        .map_or_else(
            || "<unknown>".to_owned(),
            |t| flotta_core::columns::age(t, now),
        );
    (vec![name, "Active".into(), age], object)
}

/// Query parameters of the namespace reads.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::api) struct NamespaceParams {
    include_object: Option<String>,
    watch: Option<String>,
}

fn table_wanted(headers: &HeaderMap, params: &NamespaceParams) -> ApiResult<Option<IncludeObject>> {
    if !wants_table(headers) {
        return Ok(None);
    }
    IncludeObject::parse(params.include_object.as_deref()).map(Some)
}

pub(in crate::api) async fn list_namespaces(
    State(state): State<ApiState>,
    query: Result<Query<NamespaceParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let params = query_params(query)?;
    if matches!(params.watch.as_deref(), Some("true" | "1")) {
        return Err(ApiError::method_not_allowed(
            "namespaces cannot be watched: they are derived from the objects stored",
        ));
    }
    let found = namespaces(&state, None).await?;
    let items: Vec<Value> = found
        .iter()
        .map(|(name, contents)| namespace_object(name, contents))
        .collect();
    if let Some(include) = table_wanted(&headers, &params)? {
        let now = time::OffsetDateTime::now_utc();
        let rows = items.into_iter().map(|o| row(o, now)).collect();
        return Ok(Json(table_of_rows(COLUMNS, rows, include)).into_response());
    }
    Ok(Json(json!({
        "apiVersion": "v1",
        "kind": "NamespaceList",
        "metadata": {},
        "items": items,
    }))
    .into_response())
}

pub(in crate::api) async fn read_namespace(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<NamespaceParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let name = path_params(path)?;
    let params = query_params(query)?;
    let contents = existing(&state, &name).await?;
    let object = namespace_object(&name, &contents);
    if let Some(include) = table_wanted(&headers, &params)? {
        let now = time::OffsetDateTime::now_utc();
        return Ok(Json(table_of_rows(COLUMNS, vec![row(object, now)], include)).into_response());
    }
    Ok(Json(object).into_response())
}

async fn existing(state: &ApiState, name: &str) -> ApiResult<Contents> {
    let not_found = || {
        ApiError::not_found(format!(
            "namespaces {name:?} not found: a namespace exists while objects live in it"
        ))
    };
    if namespace_ok(name).is_err() {
        return Err(not_found());
    }
    namespaces(state, Some(name))
        .await?
        .remove(name)
        .ok_or_else(not_found)
}

pub(in crate::api) async fn create_namespace() -> ApiError {
    ApiError::method_not_allowed(
        "namespaces are not created: a namespace exists as soon as an object is created in it",
    )
}

/// Deleting a namespace: it exists only while it holds objects, so the answer is
/// 404 (it holds none), 405 (`default`) or 409 naming what it still holds.
pub(in crate::api) async fn delete_namespace(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiError {
    let name = match path_params(path) {
        Ok(name) => name,
        Err(error) => return error,
    };
    if name == DEFAULT_NAMESPACE {
        return ApiError::method_not_allowed(
            "the default namespace always exists and cannot be deleted",
        );
    }
    let contents = match existing(&state, &name).await {
        Ok(contents) => contents,
        Err(error) => return error,
    };
    let held: Vec<String> = contents
        .counts
        .iter()
        .map(|(kind, n)| format!("{n} {}", kind.plural()))
        .collect();
    let plurals: Vec<&str> = contents.counts.keys().map(|k| k.plural()).collect();
    ApiError::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "namespace {name:?} still holds {}; flotta does not delete a namespace's \
             objects with it: delete them first (kubectl delete {} --all -n {name})",
            held.join(", "),
            plurals.join(","),
        ),
    )
}
