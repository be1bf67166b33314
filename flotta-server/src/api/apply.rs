//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! Every write records which *field manager* set which fields, in Kubernetes'
//! `managedFields` format (`fieldsType: FieldsV1`, `f:` keys). A server-side apply
//! (`PATCH` with `Content-Type: application/apply-patch+yaml`) sends the fields its
//! manager wants, and only those:
//!
//! - a field the applied configuration sets that another manager owns with a
//!   different value is a conflict: the apply fails with 409 naming every such
//!   field and its owner, unless `force=true`, which takes the fields over;
//! - a field the manager applied before and leaves out now is removed, unless
//!   another manager owns it too;
//! - fields nobody applied are left as they are.
//!
//! Other writes (create, replace, merge, JSON or strategic patch) are `Update`
//! operations: the fields they change become their manager's (`fieldManager`, else
//! the client's `User-Agent` product) and stop being anybody else's, so a later
//! apply by the previous owner conflicts, as in Kubernetes.
//!
//! flotta's schemas declare no list merge keys, so every list is one field, owned
//! and replaced whole (Kubernetes' `atomic` lists). Only the object's own fields are
//! managed: `status` and the server's metadata (`uid`, `resourceVersion`, ...) are
//! not.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// One field: the keys from the object's root, e.g. `["spec", "os", "commitID"]`.
pub(crate) type FieldPath = Vec<String>;

/// The `operation` of a managed-fields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// A server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry, read.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    fields: BTreeSet<FieldPath>,
    /// The entry's fields other than the ones above (`subresource`), kept as read.
    rest: Map<String, Value>,
}

impl Entry {
    fn is(&self, manager: &str, operation: Operation) -> bool {
        self.manager == manager && self.operation == operation.as_str()
    }
}

/// A field another manager owns with another value than the applied one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The owner.
    pub manager: String,
    /// The field, dotted as kubectl prints it: `.spec.os.commitID`.
    pub field: String,
}

/// Who writes and when: the manager, the object's `apiVersion`, the time stamp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// `apiVersion` recorded in the entry.
    pub api_version: &'a str,
    /// RFC 3339 time of the write.
    pub now: &'a str,
}

/// Top-level fields that are never managed.
const UNMANAGED_TOP: [&str; 3] = ["apiVersion", "kind", "status"];
/// `metadata` fields that are never managed: identity and the server's bookkeeping.
const UNMANAGED_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The managed fields an object body sets: every leaf (a scalar, a list, an empty
/// map) below the managed top-level fields.
pub(crate) fn leaf_fields(body: &Value) -> BTreeSet<FieldPath> {
    let mut fields = BTreeSet::new();
    let Some(object) = body.as_object() else {
        return fields;
    };
    for (key, value) in object {
        if UNMANAGED_TOP.contains(&key.as_str()) {
            continue;
        }
        if key == "metadata" {
            if let Some(metadata) = value.as_object() {
                for (field, value) in metadata {
                    if !UNMANAGED_METADATA.contains(&field.as_str()) {
                        collect(value, vec![key.clone(), field.clone()], &mut fields);
                    }
                }
            }
            continue;
        }
        collect(value, vec![key.clone()], &mut fields);
    }
    fields
}

fn collect(value: &Value, path: FieldPath, fields: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let mut inner = path.clone();
                inner.push(key.clone());
                collect(value, inner, fields);
            }
        }
        _ => {
            fields.insert(path);
        }
    }
}

/// The value at `path`, if there is one.
fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// Sets the value at `path`, creating maps on the way (a non-map on the way is
/// replaced by one).
fn set(target: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = target;
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            return;
        };
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
    }
}

/// Removes the value at `path`, and the maps below the top level that it leaves
/// empty.
fn remove(target: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents
        .iter()
        .try_fold(&mut *target, |node, key| node.get_mut(key));
    let Some(Value::Object(map)) = parent else {
        return;
    };
    map.remove(last);
    let emptied = map.is_empty();
    if emptied && parents.len() > 1 {
        remove(target, parents);
    }
}

/// The dotted form kubectl prints: `.spec.os.commitID`.
pub(crate) fn dotted(path: &[String]) -> String {
    path.iter().map(|key| format!(".{key}")).collect()
}

/// `fieldsV1` of a set of fields: nested maps of `f:KEY`, `{}` at each leaf.
fn fields_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Value::Object(Map::new());
    for path in fields {
        let keys: Vec<String> = path.iter().map(|key| format!("f:{key}")).collect();
        // A leaf inside another leaf's path cannot happen (leaves are not maps),
        // so `set` never overwrites a leaf here.
        if get(&root, &keys).is_none() {
            set(&mut root, &keys, Value::Object(Map::new()));
        }
    }
    root
}

/// The fields of a `fieldsV1` value: the paths to its leaves (a map with no `f:`
/// keys). A map with list keys (`k:`, `v:`, `i:`, written by Kubernetes for
/// list-maps, which flotta's schemas do not have) is read as one field.
fn read_fields_v1(value: &Value, path: FieldPath, fields: &mut BTreeSet<FieldPath>) {
    let children: Vec<(&String, &Value)> = value
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(key, _)| key.starts_with("f:"))
                .collect()
        })
        .unwrap_or_default();
    if children.is_empty() {
        if !path.is_empty() {
            fields.insert(path);
        }
        return;
    }
    for (key, value) in children {
        let mut inner = path.clone();
        inner.push(key["f:".len()..].to_owned());
        read_fields_v1(value, inner, fields);
    }
}

/// The `managedFields` entries of a stored body (entries that are not maps, or
/// have no manager, are dropped).
fn read_entries(body: &Value) -> Vec<Entry> {
    let Some(entries) = body
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let mut rest = entry.as_object()?.clone();
            let text = |rest: &mut Map<String, Value>, key: &str| match rest.remove(key) {
                Some(Value::String(text)) => Some(text),
                _ => None,
            };
            let manager = text(&mut rest, "manager")?;
            let operation = text(&mut rest, "operation").unwrap_or_default();
            let api_version = text(&mut rest, "apiVersion").unwrap_or_default();
            let time = text(&mut rest, "time");
            rest.remove("fieldsType");
            let mut fields = BTreeSet::new();
            if let Some(v1) = rest.remove("fieldsV1") {
                read_fields_v1(&v1, Vec::new(), &mut fields);
            }
            Some(Entry {
                manager,
                operation,
                api_version,
                time,
                fields,
                rest,
            })
        })
        .collect()
}

/// Writes `entries` into the body's `metadata.managedFields` (removed when none
/// is left).
fn write_entries(body: &mut Value, entries: Vec<Entry>) {
    let entries: Vec<Value> = entries
        .into_iter()
        .filter(|entry| !entry.fields.is_empty())
        .map(|entry| {
            let mut object = Map::new();
            object.insert("manager".into(), Value::String(entry.manager));
            object.insert("operation".into(), Value::String(entry.operation));
            object.insert("apiVersion".into(), Value::String(entry.api_version));
            if let Some(time) = entry.time {
                object.insert("time".into(), Value::String(time));
            }
            object.insert("fieldsType".into(), Value::String("FieldsV1".into()));
            object.insert("fieldsV1".into(), fields_v1(&entry.fields));
            object.extend(entry.rest);
            Value::Object(object)
        })
        .collect();
    let Some(object) = body.as_object_mut() else {
        return;
    };
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), Value::Array(entries));
    }
}

/// Gives `fields` to `writer`'s entry of `operation` (made when missing), stamped
/// with the write's time when they change it.
fn own(
    entries: &mut Vec<Entry>,
    writer: Writer<'_>,
    operation: Operation,
    fields: BTreeSet<FieldPath>,
) {
    match entries.iter_mut().find(|e| e.is(writer.manager, operation)) {
        Some(entry) => {
            if entry.fields != fields || entry.api_version != writer.api_version {
                entry.fields = fields;
                entry.api_version = writer.api_version.to_owned();
                entry.time = Some(writer.now.to_owned());
            }
        }
        None => entries.push(Entry {
            manager: writer.manager.to_owned(),
            operation: operation.as_str().to_owned(),
            api_version: writer.api_version.to_owned(),
            time: Some(writer.now.to_owned()),
            fields,
            rest: Map::new(),
        }),
    }
}

/// The body a server-side apply of `config` by `writer` makes of `current` (`None`:
/// the object does not exist yet), with its `managedFields`; the conflicts when
/// other managers own fields the configuration changes and `force` is not set.
///
/// `config` is the applied configuration with the server's fields already taken
/// out.
pub(crate) fn server_side_apply(
    current: Option<&Value>,
    config: &Value,
    writer: Writer<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let applied = leaf_fields(config);
    let mut entries = current.map(read_entries).unwrap_or_default();
    let mut result = current
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));

    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|e| e.manager != writer.manager) {
        for path in entry.fields.intersection(&applied) {
            if get(&result, path) != get(config, path) {
                conflicts.push(Conflict {
                    manager: entry.manager.clone(),
                    field: dotted(path),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflicts);
        }
        for entry in entries.iter_mut().filter(|e| e.manager != writer.manager) {
            let before = entry.fields.len();
            entry
                .fields
                .retain(|path| !applied.contains(path) || get(&result, path) == get(config, path));
            if entry.fields.len() != before {
                entry.time = Some(writer.now.to_owned());
            }
        }
    }

    // What this manager applied before and leaves out now goes, unless someone
    // else owns it too.
    let previously = entries
        .iter()
        .find(|e| e.is(writer.manager, Operation::Apply))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previously.difference(&applied) {
        let shared = entries
            .iter()
            .any(|e| !e.is(writer.manager, Operation::Apply) && e.fields.contains(path));
        if !shared {
            remove(&mut result, path);
        }
    }
    for path in &applied {
        if let Some(value) = get(config, path) {
            set(&mut result, path, value.clone());
        }
    }
    for top in ["apiVersion", "kind"] {
        if let Some(value) = config.get(top) {
            set(&mut result, &[top.to_owned()], value.clone());
        }
    }
    own(&mut entries, writer, Operation::Apply, applied);
    write_entries(&mut result, entries);
    Ok(result)
}

/// Records an `Update` by `writer` that turned `current` into `updated`: the
/// fields it changed, added or removed stop being anybody else's, and the ones it
/// set become its own. `current` is `None` for a creation. The `managedFields` a
/// client sent are replaced: they are the server's to keep.
pub(crate) fn record_update(current: Option<&Value>, updated: &mut Value, writer: Writer<'_>) {
    let mut entries = current.map(read_entries).unwrap_or_default();
    let after = leaf_fields(updated);
    let before = current.map(leaf_fields).unwrap_or_default();
    let changed: BTreeSet<FieldPath> = after
        .iter()
        .filter(|path| current.and_then(|c| get(c, path)) != get(updated, path))
        .cloned()
        .collect();
    let removed: BTreeSet<&FieldPath> = before.difference(&after).collect();
    for entry in entries.iter_mut() {
        let count = entry.fields.len();
        entry.fields.retain(|path| {
            // A field below or above a changed leaf changed too (a map became a
            // scalar, or the other way round).
            let touched = |other: &FieldPath| other.starts_with(path) || path.starts_with(other);
            !removed.contains(path) && !changed.iter().any(touched)
        });
        if entry.fields.len() != count && !entry.is(writer.manager, Operation::Update) {
            entry.time = Some(writer.now.to_owned());
        }
    }
    let mut mine = entries
        .iter()
        .find(|e| e.is(writer.manager, Operation::Update))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    mine.retain(|path| after.contains(path));
    mine.extend(changed);
    own(&mut entries, writer, Operation::Update, mine);
    write_entries(updated, entries);
}

/// The field manager of an `Update`: the request's `fieldManager`, else the
/// product of its `User-Agent` (`kubectl` of `kubectl/v1.33.0 (linux/amd64)`),
/// else `unknown`.
pub(crate) fn update_manager(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(manager) = field_manager.filter(|m| !m.is_empty()) {
        return manager.to_owned();
    }
    user_agent
        .and_then(|agent| agent.split(['/', ' ']).next())
        .filter(|product| !product.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

/// Checks a `fieldManager` value: Kubernetes allows at most 128 printable
/// characters.
pub(crate) fn check_field_manager(manager: &str) -> Result<(), String> {
    if manager.chars().count() > 128 {
        return Err(format!(
            "fieldManager is {} characters long; at most 128 are allowed",
            manager.chars().count()
        ));
    }
    if manager.chars().any(|c| c.is_control()) {
        return Err(format!(
            "fieldManager {manager:?} contains control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const API: &str = "management.project-flotta.io/v1alpha1";

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: API,
            now: "2026-12-03T10:00:00Z",
        }
    }

    fn managers(body: &Value) -> Vec<(String, String)> {
        read_entries(body)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    fn workload(replicas: u64, labels: Value) -> Value {
        json!({
            "apiVersion": API,
            "kind": "EdgeWorkload",
            "metadata": {"name": "w", "labels": labels},
            "spec": {"type": "pod", "replicas": replicas, "pod": {"spec": {"containers": [{"name": "c"}]}}},
        })
    }

    #[test]
    fn leaves_are_scalars_lists_and_empty_maps_below_the_managed_fields() {
        let body = json!({
            "apiVersion": API, "kind": "K", "status": {"a": 1},
            "metadata": {"name": "n", "uid": "u", "labels": {"a": "b"}, "annotations": {}},
            "spec": {"x": [1, 2], "y": {"z": null}},
        });
        let fields: Vec<String> = leaf_fields(&body).iter().map(|p| dotted(p)).collect();
        assert_eq!(
            fields,
            [
                ".metadata.annotations",
                ".metadata.labels.a",
                ".spec.x",
                ".spec.y.z"
            ]
        );
    }

    #[test]
    fn an_apply_without_metadata_fields_still_records_its_manager() {
        let config = json!({"apiVersion": API, "kind": "EdgeWorkload", "metadata": {"name": "w"}, "spec": {"type": "pod"}});
        let created = server_side_apply(None, &config, writer("ci"), false).expect("no conflict");
        assert_eq!(managers(&created), [("ci".to_owned(), "Apply".to_owned())]);
    }

    #[test]
    fn fields_v1_round_trips() {
        let body = workload(2, json!({"app": "a"}));
        let fields = leaf_fields(&body);
        let v1 = fields_v1(&fields);
        assert_eq!(v1["f:metadata"]["f:labels"]["f:app"], json!({}));
        let mut read = BTreeSet::new();
        read_fields_v1(&v1, Vec::new(), &mut read);
        assert_eq!(read, fields);
    }

    #[test]
    fn apply_creates_then_applying_the_same_changes_nothing() {
        let config = workload(2, json!({"app": "a"}));
        let created = server_side_apply(None, &config, writer("ci"), false).expect("no conflict");
        assert_eq!(created["spec"]["replicas"], 2);
        assert_eq!(managers(&created), [("ci".to_owned(), "Apply".to_owned())]);
        let mut later = writer("ci");
        later.now = "2026-12-03T11:00:00Z";
        let again = server_side_apply(Some(&created), &config, later, false).expect("no conflict");
        assert_eq!(
            again, created,
            "the same configuration changes nothing, not even the time"
        );
    }

    #[test]
    fn another_manager_changing_an_owned_field_conflicts_unless_forced() {
        let mine = server_side_apply(None, &workload(2, json!({"app": "a"})), writer("ci"), false)
            .expect("no conflict");
        let theirs = workload(3, json!({"app": "a"}));
        let conflicts = server_side_apply(Some(&mine), &theirs, writer("ops"), false)
            .expect_err("replicas belongs to ci");
        assert_eq!(
            conflicts,
            [Conflict {
                manager: "ci".into(),
                field: ".spec.replicas".into()
            }]
        );
        let forced = server_side_apply(Some(&mine), &theirs, writer("ops"), true).expect("forced");
        assert_eq!(forced["spec"]["replicas"], 3);
        let entries = read_entries(&forced);
        let ci = entries
            .iter()
            .find(|e| e.manager == "ci")
            .expect("ci keeps the rest");
        assert!(
            !ci.fields
                .contains(&vec!["spec".to_owned(), "replicas".to_owned()])
        );
        // The same value is shared ownership, not a conflict.
        assert!(
            ci.fields
                .contains(&vec!["spec".to_owned(), "type".to_owned()])
        );
    }

    #[test]
    fn a_field_left_out_of_the_next_apply_is_removed_unless_someone_else_owns_it() {
        let first = server_side_apply(
            None,
            &workload(2, json!({"app": "a", "tier": "edge"})),
            writer("ci"),
            false,
        )
        .expect("no conflict");
        let second = server_side_apply(
            Some(&first),
            &workload(2, json!({"app": "a"})),
            writer("ci"),
            false,
        )
        .expect("no conflict");
        assert_eq!(second["metadata"]["labels"], json!({"app": "a"}));

        // A label set by a plain update is not the applier's to remove.
        let mut labelled = second.clone();
        labelled["metadata"]["labels"]["owner"] = json!("ops");
        record_update(Some(&second), &mut labelled, writer("kubectl-label"));
        let third = server_side_apply(
            Some(&labelled),
            &workload(2, json!({"app": "a"})),
            writer("ci"),
            false,
        )
        .expect("no conflict");
        assert_eq!(
            third["metadata"]["labels"],
            json!({"app": "a", "owner": "ops"})
        );
    }

    #[test]
    fn an_update_takes_the_fields_it_changes_so_the_next_apply_conflicts() {
        let applied = server_side_apply(None, &workload(2, json!({})), writer("ci"), false)
            .expect("no conflict");
        let mut edited = applied.clone();
        edited["spec"]["replicas"] = json!(5);
        edited["metadata"]["managedFields"] = json!("the client's, ignored");
        record_update(Some(&applied), &mut edited, writer("kubectl-edit"));
        assert_eq!(
            managers(&edited),
            [
                ("ci".to_owned(), "Apply".to_owned()),
                ("kubectl-edit".to_owned(), "Update".to_owned())
            ]
        );
        let conflicts =
            server_side_apply(Some(&edited), &workload(2, json!({})), writer("ci"), false)
                .expect_err("kubectl-edit owns replicas now");
        assert_eq!(conflicts[0].manager, "kubectl-edit");
        assert_eq!(conflicts[0].field, ".spec.replicas");
    }

    #[test]
    fn removing_a_map_leaf_and_its_empty_parents() {
        let mut body = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"x": {"y": 1}, "z": 2}});
        remove(&mut body, &["spec".into(), "x".into(), "y".into()]);
        assert_eq!(
            body,
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"z": 2}})
        );
        remove(&mut body, &["metadata".into(), "labels".into(), "a".into()]);
        assert_eq!(body["metadata"], json!({}));
    }

    #[test]
    fn update_manager_comes_from_the_query_or_the_user_agent() {
        assert_eq!(
            update_manager(Some("kubectl-edit"), Some("x/1")),
            "kubectl-edit"
        );
        assert_eq!(
            update_manager(None, Some("kubectl/v1.33.0 (linux/amd64)")),
            "kubectl"
        );
        assert_eq!(update_manager(Some(""), None), "unknown");
        assert!(check_field_manager(&"m".repeat(129)).is_err());
        assert!(check_field_manager("kubectl").is_ok());
    }
}
