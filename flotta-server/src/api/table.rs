//! `meta.k8s.io/v1` `Table` answers, what `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. The columns are each
//! kind's [`ResourceKind::columns`], the same `flotta get` prints.

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::status::ApiError;
use crate::store::ResourceKind;

/// What each row of a Table carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum IncludeObject {
    /// Nothing.
    None,
    /// A `PartialObjectMetadata` (Kubernetes' default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Reads the `includeObject` query parameter; absent means `Metadata`.
    pub(crate) fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text {
            None | Some("") | Some("Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid includeObject {other:?}: expected None, Metadata or Object"
            ))),
        }
    }
}

/// Whether the request's `Accept` asks for a `meta.k8s.io/v1` Table before any
/// plain form (kubectl lists the Table first and plain JSON as its fallback).
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|media| {
        let mut parts = media.split(';').map(str::trim);
        let essence = parts.next().unwrap_or_default();
        if !essence.eq_ignore_ascii_case("application/json") {
            return false;
        }
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let has = |key: &str, value: &str| params.iter().any(|(k, v)| k == key && v == value);
        has("as", "Table") && has("g", "meta.k8s.io") && has("v", "v1")
    })
}

/// The `columnDefinitions` of a kind's table.
fn column_definitions(kind: ResourceKind) -> Vec<Value> {
    kind.columns()
        .iter()
        .map(|column| {
            json!({
                "name": column.header,
                "type": "string",
                "format": if column.is_name { "name" } else { "" },
                "description": column.description,
                "priority": u8::from(column.wide_only),
            })
        })
        .collect()
}

/// The `object` of a row.
fn row_object(object: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    }
}

/// A Table of `objects` of `kind`, ages measured to `now`; `list_metadata` is the
/// list's `metadata` (resource version, continue token).
pub(crate) fn table<'a>(
    kind: ResourceKind,
    objects: impl IntoIterator<Item = &'a Value>,
    include: IncludeObject,
    list_metadata: Map<String, Value>,
    now: OffsetDateTime,
) -> Value {
    let columns = kind.columns();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|object| {
            let cells: Vec<String> = columns.iter().map(|c| (c.cell)(object, now)).collect();
            let mut row = json!({"cells": cells});
            if let (Some(map), Some(object)) = (row.as_object_mut(), row_object(object, include)) {
                map.insert("object".into(), object);
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": column_definitions(kind),
        "rows": rows,
    })
}

/// A Table of derived rows: `columns` are (name, description) with the name
/// first, each row its cells and object.
pub(crate) fn table_of_rows(
    columns: &[(&str, &str)],
    rows: Vec<(Vec<String>, Value)>,
    include: IncludeObject,
) -> Value {
    let definitions: Vec<Value> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, description))| {
            json!({
                "name": name,
                "type": "string",
                "format": if i == 0 { "name" } else { "" },
                "description": description,
                "priority": 0,
            })
        })
        .collect();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, object)| {
            let mut row = json!({"cells": cells});
            if let (Some(map), Some(object)) = (row.as_object_mut(), row_object(&object, include)) {
                map.insert("object".into(), object);
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn kubectl_accept_header_asks_for_a_table() {
        let mut headers = HeaderMap::new();
        assert!(!wants_table(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert!(wants_table(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
        );
        assert!(!wants_table(&headers), "only v1 is served");
    }

    #[test]
    fn rows_carry_cells_and_partial_metadata_by_default() {
        let object = json!({"metadata": {"name": "w", "namespace": "ns"}, "spec": {"type": "pod"}});
        let table = table(
            ResourceKind::EdgeWorkload,
            [&object],
            IncludeObject::parse(None).expect("default"),
            Map::new(),
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        assert_eq!(table["rows"][0]["cells"][0], "w");
        assert_eq!(table["rows"][0]["cells"][1], "pod");
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "ns");
        assert!(IncludeObject::parse(Some("Everything")).is_err());
    }
}
