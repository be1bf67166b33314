//! Backend-independent rules for object bodies: what create, update, status update
//! and delete do to a body, decoding stored bodies, and list continue tokens.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ResourceKind, StoreError, StoreResult, StoredObject, WatchEventType};

/// The change a write makes, before it is given its resource version.
#[derive(Debug)]
pub(crate) enum Change {
    /// Insert or overwrite the row with this body.
    Put(Value, WatchEventType),
    /// Remove the row; the body is the object's last state.
    Remove(Value),
}

impl Change {
    /// Writes the resource version into the body's metadata.
    pub(crate) fn stamp(&mut self, resource_version: u64) {
        let body = match self {
            Change::Put(b, _) | Change::Remove(b) => b,
        };
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                Value::String(resource_version.to_string()),
            );
        }
    }

    pub(crate) fn event_type(&self) -> WatchEventType {
        match self {
            Change::Put(_, t) => *t,
            Change::Remove(_) => WatchEventType::Deleted,
        }
    }

    pub(crate) fn body(&self) -> &Value {
        match self {
            Change::Put(b, _) | Change::Remove(b) => b,
        }
    }
}

/// Identifies the object being written, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ObjectKey<'a> {
    pub kind: ResourceKind,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl ObjectKey<'_> {
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> StoreError {
        StoreError::InvalidObject {
            kind: self.kind,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(&self) -> StoreError {
        StoreError::NotFound {
            kind: self.kind,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        }
    }

    pub(crate) fn already_exists(&self) -> StoreError {
        StoreError::AlreadyExists {
            kind: self.kind,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        }
    }

    fn check_version(&self, expected: Option<u64>, actual: u64) -> StoreResult<()> {
        match expected {
            Some(expected) if expected != actual => Err(StoreError::Conflict {
                kind: self.kind,
                namespace: self.namespace.to_owned(),
                name: self.name.to_owned(),
                expected,
                actual,
            }),
            _ => Ok(()),
        }
    }
}

/// Whole seconds, as Kubernetes writes metadata timestamps.
pub(crate) use flotta_core::timestamp::rfc3339_seconds as format_timestamp;

fn take_metadata<'a>(
    key: &ObjectKey<'_>,
    body: &'a mut Value,
) -> StoreResult<&'a mut Map<String, Value>> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| key.invalid("the body is not a JSON object"))?;
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let meta = meta
        .as_object_mut()
        .ok_or_else(|| key.invalid("metadata is not a JSON object"))?;
    for (field, wanted) in [("name", key.name), ("namespace", key.namespace)] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == wanted => {}
            Some(other) => {
                return Err(key.invalid(format!(
                    "metadata.{field} is {other}, the request is for {wanted:?}"
                )));
            }
        }
    }
    meta.insert("name".into(), Value::String(key.name.to_owned()));
    // Cluster-scoped objects (stored under the empty namespace) have none.
    if key.namespace.is_empty() {
        meta.remove("namespace");
    } else {
        meta.insert("namespace".into(), Value::String(key.namespace.to_owned()));
    }
    if let Some(labels) = meta.get("labels") {
        let ok = match labels {
            Value::Null => true,
            Value::Object(m) => m.values().all(Value::is_string),
            _ => false,
        };
        if !ok {
            return Err(key.invalid("metadata.labels is not a map of strings"));
        }
    }
    Ok(meta)
}

/// The body of a new object.
pub(crate) fn plan_create(
    key: &ObjectKey<'_>,
    mut body: Value,
    now: OffsetDateTime,
) -> StoreResult<Change> {
    let meta = take_metadata(key, &mut body)?;
    meta.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().hyphenated().to_string()),
    );
    meta.insert("generation".into(), Value::from(1u64));
    meta.insert(
        "creationTimestamp".into(),
        Value::String(format_timestamp(now)),
    );
    meta.remove("deletionTimestamp");
    meta.remove("resourceVersion");
    Ok(Change::Put(body, WatchEventType::Added))
}

fn without_metadata_and_status(body: &Value) -> Option<Map<String, Value>> {
    let mut m = body.as_object()?.clone();
    m.remove("metadata");
    m.remove("status");
    Some(m)
}

fn finalizers_empty(body: &Value) -> bool {
    match body.pointer("/metadata/finalizers") {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// The body after a spec/metadata update of `current`.
pub(crate) fn plan_update(
    key: &ObjectKey<'_>,
    current: &StoredObject,
    expected: Option<u64>,
    mut body: Value,
) -> StoreResult<Change> {
    key.check_version(expected, current.resource_version)?;
    let spec_changed =
        without_metadata_and_status(&body) != without_metadata_and_status(&current.body);
    let current_meta = current.body.get("metadata");
    let meta = take_metadata(key, &mut body)?;
    for field in ["uid", "creationTimestamp", "deletionTimestamp"] {
        match current_meta.and_then(|m| m.get(field)) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    let generation = if spec_changed {
        current.generation.saturating_add(1)
    } else {
        current.generation
    };
    meta.insert("generation".into(), Value::from(generation));
    if let Some(obj) = body.as_object_mut() {
        match current.body.get("status") {
            Some(status) => obj.insert("status".into(), status.clone()),
            None => obj.remove("status"),
        };
    }
    if current.deletion_timestamp.is_some() && finalizers_empty(&body) {
        return Ok(Change::Remove(body));
    }
    Ok(Change::Put(body, WatchEventType::Modified))
}

/// The body after replacing the status of `current`.
pub(crate) fn plan_status(
    key: &ObjectKey<'_>,
    current: &StoredObject,
    expected: Option<u64>,
    status: Value,
) -> StoreResult<Change> {
    key.check_version(expected, current.resource_version)?;
    let mut body = current.body.clone();
    let obj = body
        .as_object_mut()
        .ok_or_else(|| key.invalid("the stored body is not a JSON object"))?;
    obj.insert("status".into(), status);
    Ok(Change::Put(body, WatchEventType::Modified))
}

/// The effect of deleting `current`.
pub(crate) fn plan_delete(
    key: &ObjectKey<'_>,
    current: &StoredObject,
    expected: Option<u64>,
    now: OffsetDateTime,
) -> StoreResult<Change> {
    key.check_version(expected, current.resource_version)?;
    let mut body = current.body.clone();
    if finalizers_empty(&body) {
        return Ok(Change::Remove(body));
    }
    if current.deletion_timestamp.is_some() {
        // Already marked: deleting again changes nothing but still counts as a write
        // so the caller gets a fresh resource version, as with Kubernetes.
        return Ok(Change::Put(body, WatchEventType::Modified));
    }
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "deletionTimestamp".into(),
            Value::String(format_timestamp(now)),
        );
    }
    Ok(Change::Put(body, WatchEventType::Modified))
}

fn corrupt(kind: ResourceKind, body: &Value, reason: impl Into<String>) -> StoreError {
    let ns = body
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    StoreError::CorruptRecord {
        key: format!("{kind} {ns}/{name}"),
        reason: reason.into(),
    }
}

fn parse_timestamp(
    kind: ResourceKind,
    body: &Value,
    field: &str,
) -> StoreResult<Option<OffsetDateTime>> {
    match body.get("metadata").and_then(|m| m.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
            .map(Some)
            .map_err(|e| corrupt(kind, body, format!("metadata.{field}: {e}"))),
        Some(other) => Err(corrupt(
            kind,
            body,
            format!("metadata.{field} is {other}, not a string"),
        )),
    }
}

/// Decodes a body written by the store back into a [`StoredObject`].
pub(crate) fn decode(kind: ResourceKind, body: Value) -> StoreResult<StoredObject> {
    let meta = body
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or_else(|| corrupt(kind, &body, "no metadata object"))?;
    let text = |field: &str| -> StoreResult<String> {
        meta.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(kind, &body, format!("metadata.{field} missing")))
    };
    let namespace = if meta.contains_key("namespace") {
        text("namespace")?
    } else {
        String::new()
    };
    let name = text("name")?;
    let uid = text("uid")?;
    let resource_version = text("resourceVersion")?
        .parse::<u64>()
        .map_err(|e| corrupt(kind, &body, format!("metadata.resourceVersion: {e}")))?;
    let generation = meta
        .get("generation")
        .and_then(Value::as_u64)
        .ok_or_else(|| corrupt(kind, &body, "metadata.generation missing"))?;
    let labels: BTreeMap<String, String> = match meta.get("labels") {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect(),
        _ => BTreeMap::new(),
    };
    let creation_timestamp = parse_timestamp(kind, &body, "creationTimestamp")?
        .ok_or_else(|| corrupt(kind, &body, "metadata.creationTimestamp missing"))?;
    let deletion_timestamp = parse_timestamp(kind, &body, "deletionTimestamp")?;
    Ok(StoredObject {
        kind,
        namespace,
        name,
        uid,
        resource_version,
        generation,
        labels,
        creation_timestamp,
        deletion_timestamp,
        body,
    })
}

/// Decodes body text read from a row.
pub(crate) fn decode_text(kind: ResourceKind, text: &str) -> StoreResult<StoredObject> {
    let body: Value = serde_json::from_str(text).map_err(|e| StoreError::CorruptRecord {
        key: format!("{kind} body"),
        reason: e.to_string(),
    })?;
    decode(kind, body)
}

/// The position a list page stopped at, carried by the opaque continue token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    /// Resource version of the first page.
    #[serde(rename = "rv")]
    pub resource_version: u64,
    /// Namespace of the last object returned.
    #[serde(rename = "ns")]
    pub namespace: String,
    /// Name of the last object returned.
    pub name: String,
}

impl ContinueToken {
    /// The opaque string form handed to clients.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses a token produced by [`ContinueToken::encode`].
    pub fn decode(token: &str) -> StoreResult<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|e| StoreError::InvalidContinueToken {
                reason: format!("not base64url: {e}"),
            })?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidContinueToken {
            reason: format!("bad content: {e}"),
        })
    }
}

/// Where a list page starts and which resource version it reports.
pub(crate) struct PageStart {
    pub after: Option<(String, String)>,
    pub resource_version: Option<u64>,
}

pub(crate) fn page_start(token: Option<&str>) -> StoreResult<PageStart> {
    match token {
        None | Some("") => Ok(PageStart {
            after: None,
            resource_version: None,
        }),
        Some(t) => {
            let t = ContinueToken::decode(t)?;
            Ok(PageStart {
                after: Some((t.namespace, t.name)),
                resource_version: Some(t.resource_version),
            })
        }
    }
}

/// Cuts a fetched page (fetched with `limit + 1` rows) and builds the token.
pub(crate) fn finish_page(
    mut items: Vec<StoredObject>,
    limit: Option<usize>,
    resource_version: u64,
) -> super::ObjectList {
    let mut continue_token = None;
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.truncate(limit);
        continue_token = items.last().map(|last| {
            ContinueToken {
                resource_version,
                namespace: last.namespace.clone(),
                name: last.name.clone(),
            }
            .encode()
        });
    }
    super::ObjectList {
        items,
        resource_version,
        continue_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ObjectKey<'static> {
        ObjectKey {
            kind: ResourceKind::EdgeWorkload,
            namespace: "ns",
            name: "w",
        }
    }

    fn stored(change: Change, rv: u64) -> StoredObject {
        let mut change = change;
        change.stamp(rv);
        decode(ResourceKind::EdgeWorkload, change.body().clone()).expect("decodes")
    }

    #[test]
    fn create_sets_server_metadata_and_refuses_other_names() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let obj = stored(
            plan_create(
                &key(),
                json!({"metadata": {"labels": {"a": "b"}}, "spec": {}}),
                now,
            )
            .expect("create"),
            7,
        );
        assert_eq!(obj.resource_version, 7);
        assert_eq!(obj.generation, 1);
        assert_eq!(obj.name, "w");
        assert_eq!(obj.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(obj.creation_timestamp, now);
        assert_eq!(
            obj.body.pointer("/metadata/creationTimestamp"),
            Some(&json!("2023-11-14T22:13:20Z"))
        );
        let err = plan_create(&key(), json!({"metadata": {"name": "other"}}), now);
        assert!(matches!(err, Err(StoreError::InvalidObject { .. })));
        let err = plan_create(&key(), json!([1]), now);
        assert!(matches!(err, Err(StoreError::InvalidObject { .. })));
    }

    #[test]
    fn update_bumps_generation_only_for_spec_and_keeps_status() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let created = stored(
            plan_create(
                &key(),
                json!({"spec": {"x": 1}, "status": {"phase": "a"}}),
                now,
            )
            .expect("create"),
            1,
        );
        let relabelled = stored(
            plan_update(
                &key(),
                &created,
                Some(1),
                json!({"metadata": {"labels": {"l": "v"}}, "spec": {"x": 1}, "status": {"phase": "z"}}),
            )
            .expect("update"),
            2,
        );
        assert_eq!(relabelled.generation, 1);
        assert_eq!(relabelled.uid, created.uid);
        assert_eq!(relabelled.body["status"], json!({"phase": "a"}));
        let respecced = stored(
            plan_update(&key(), &relabelled, None, json!({"spec": {"x": 2}})).expect("update"),
            3,
        );
        assert_eq!(respecced.generation, 2);
        assert!(respecced.labels.is_empty());
        let conflict = plan_update(&key(), &respecced, Some(2), json!({}));
        assert!(matches!(
            conflict,
            Err(StoreError::Conflict {
                expected: 2,
                actual: 3,
                ..
            })
        ));
    }

    #[test]
    fn delete_with_finalizers_marks_then_update_removes() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let created = stored(
            plan_create(&key(), json!({"metadata": {"finalizers": ["f"]}}), now).expect("create"),
            1,
        );
        let marked = plan_delete(&key(), &created, None, now).expect("delete");
        assert_eq!(marked.event_type(), WatchEventType::Modified);
        let marked = stored(marked, 2);
        assert_eq!(marked.deletion_timestamp, Some(now));
        let cleared = plan_update(
            &key(),
            &marked,
            Some(2),
            json!({"metadata": {"finalizers": []}}),
        )
        .expect("update");
        assert_eq!(cleared.event_type(), WatchEventType::Deleted);
    }

    #[test]
    fn continue_token_round_trips_and_rejects_garbage() {
        let token = ContinueToken {
            resource_version: 42,
            namespace: "ns".into(),
            name: "n".into(),
        };
        assert_eq!(ContinueToken::decode(&token.encode()).ok(), Some(token));
        assert!(matches!(
            ContinueToken::decode("%%%"),
            Err(StoreError::InvalidContinueToken { .. })
        ));
        assert!(matches!(
            ContinueToken::decode("e30"),
            Err(StoreError::InvalidContinueToken { .. })
        ));
    }
}
