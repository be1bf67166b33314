//! The three patch formats PATCH accepts, applied to a stored object's JSON:
//!
//! - `application/merge-patch+json`: RFC 7386 JSON merge patch;
//! - `application/json-patch+json`: RFC 6902 JSON patch (`add`, `remove`,
//!   `replace`, `move`, `copy`, `test`), all or nothing; a bad operation is named
//!   by its index;
//! - `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.
//!   flotta's schemas declare no list merge keys (`x-kubernetes-patch-merge-key`),
//!   so every list is replaced whole and a strategic merge patch is a JSON merge
//!   patch plus the map directives `$patch: replace` (the map becomes the patch's
//!   other fields), `$patch: delete` (the map is removed) and `$patch: merge` (the
//!   default), and `$retainKeys` (keys not listed are dropped). The list directives
//!   (`$setElementOrder/...`, `$deleteFromPrimitiveList/...`) only arise from merge
//!   keys; they are refused.

use serde_json::{Map, Value};

/// A patch in one of the accepted formats.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Patch {
    /// RFC 7386 JSON merge patch (an object).
    Merge(Value),
    /// RFC 6902 JSON patch: the operations, in order.
    Json(Vec<Value>),
    /// Kubernetes strategic merge patch (an object).
    Strategic(Value),
}

/// Why a patch cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PatchError {
    /// The patch document itself is malformed (400).
    #[error("{0}")]
    Malformed(String),
    /// An RFC 6902 operation cannot be carried out on this object (422): a path
    /// that does not exist, a failed `test`.
    #[error("JSON patch operation {index} ({op} {path}): {reason}")]
    Operation {
        /// Index of the operation in the patch.
        index: usize,
        /// Its `op`.
        op: String,
        /// Its `path`.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl Patch {
    /// Applies the patch to `target`.
    pub(crate) fn apply(&self, target: &mut Value) -> Result<(), PatchError> {
        match self {
            Patch::Merge(patch) => {
                merge_patch(target, patch);
                Ok(())
            }
            Patch::Json(operations) => json_patch(target, operations),
            Patch::Strategic(patch) => strategic_merge_patch(target, patch),
        }
    }

    /// The `metadata.resourceVersion` the patch sets or tests, if any: a
    /// precondition on the stored object.
    pub(crate) fn resource_version(&self) -> Option<&Value> {
        match self {
            Patch::Merge(patch) | Patch::Strategic(patch) => {
                patch.pointer("/metadata/resourceVersion")
            }
            Patch::Json(_) => None,
        }
    }

    /// The top-level field `field` a map patch writes (a merge or strategic
    /// patch), to adjust before it is applied; none for a JSON patch.
    pub(crate) fn field_mut(&mut self, field: &str) -> Option<&mut Value> {
        match self {
            Patch::Merge(patch) | Patch::Strategic(patch) => patch.get_mut(field),
            Patch::Json(_) => None,
        }
    }
}

/// Applies an RFC 7386 JSON merge patch to `target`.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target_fields) = target {
        for (key, value) in patch_fields {
            if value.is_null() {
                target_fields.remove(key);
            } else {
                merge_patch(
                    target_fields.entry(key.clone()).or_insert(Value::Null),
                    value,
                );
            }
        }
    }
}

/// Applies RFC 6902 operations in order; on any failure `target` is unchanged.
pub(crate) fn json_patch(target: &mut Value, operations: &[Value]) -> Result<(), PatchError> {
    let mut work = target.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(&mut work, index, operation)?;
    }
    *target = work;
    Ok(())
}

fn apply_operation(target: &mut Value, index: usize, operation: &Value) -> Result<(), PatchError> {
    let malformed =
        |why: &str| PatchError::Malformed(format!("JSON patch operation {index}: {why}"));
    let Some(fields) = operation.as_object() else {
        return Err(malformed("must be an object"));
    };
    let op = fields
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("needs a string \"op\""))?;
    let path = fields
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("needs a string \"path\""))?;
    let failed = |reason: String| PatchError::Operation {
        index,
        op: op.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let tokens = parse_pointer(path).map_err(|why| malformed(&why))?;
    let value = || {
        fields
            .get("value")
            .cloned()
            .ok_or_else(|| malformed(&format!("{op} needs a \"value\"")))
    };
    let from = || -> Result<Vec<String>, PatchError> {
        let from = fields
            .get("from")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(&format!("{op} needs a string \"from\"")))?;
        parse_pointer(from).map_err(|why| malformed(&why))
    };
    match op {
        "add" => add(target, &tokens, value()?).map_err(failed),
        "remove" => remove(target, &tokens).map(drop).map_err(failed),
        "replace" => {
            let value = value()?;
            let slot = resolve_mut(target, &tokens).map_err(failed)?;
            *slot = value;
            Ok(())
        }
        "move" => {
            let from = from()?;
            if tokens.len() > from.len() && tokens[..from.len()] == from[..] {
                return Err(failed("cannot move a value into itself".into()));
            }
            let moved = remove(target, &from).map_err(failed)?;
            add(target, &tokens, moved).map_err(failed)
        }
        "copy" => {
            let copied = resolve(target, &from()?).map_err(failed)?.clone();
            add(target, &tokens, copied).map_err(failed)
        }
        "test" => {
            let expected = value()?;
            let actual = resolve(target, &tokens).map_err(failed)?;
            if *actual == expected {
                Ok(())
            } else {
                Err(failed(format!("the value is {actual}, not {expected}")))
            }
        }
        other => Err(malformed(&format!(
            "unknown op {other:?} (add, remove, replace, move, copy, test)"
        ))),
    }
}

/// The reference tokens of an RFC 6901 JSON pointer.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "{pointer:?} is not a JSON pointer (it must start with /)"
        ));
    };
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn array_index(array: &[Value], token: &str, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(array.len());
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let index = token
        .parse::<usize>()
        .ok()
        .filter(|_| valid)
        .ok_or_else(|| format!("{token:?} is not an array index"))?;
    let limit = if allow_end {
        array.len()
    } else {
        array.len().saturating_sub(1)
    };
    if index > limit || (!allow_end && array.is_empty()) {
        return Err(format!(
            "index {index} is out of bounds (length {})",
            array.len()
        ));
    }
    Ok(index)
}

fn resolve<'a>(target: &'a Value, tokens: &[String]) -> Result<&'a Value, String> {
    let mut current = target;
    for token in tokens {
        current = match current {
            Value::Object(map) => map
                .get(token)
                .ok_or_else(|| format!("no field {token:?}"))?,
            Value::Array(items) => &items[array_index(items, token, false)?],
            _ => return Err(format!("cannot descend into a scalar at {token:?}")),
        };
    }
    Ok(current)
}

fn resolve_mut<'a>(target: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut current = target;
    for token in tokens {
        current = match current {
            Value::Object(map) => map
                .get_mut(token)
                .ok_or_else(|| format!("no field {token:?}"))?,
            Value::Array(items) => {
                let index = array_index(items, token, false)?;
                &mut items[index]
            }
            _ => return Err(format!("cannot descend into a scalar at {token:?}")),
        };
    }
    Ok(current)
}

fn add(target: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = tokens.split_last() else {
        *target = value;
        return Ok(());
    };
    match resolve_mut(target, parent)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = array_index(items, last, true)?;
            items.insert(index, value);
            Ok(())
        }
        _ => Err("the parent is not an object or an array".into()),
    }
}

fn remove(target: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    match resolve_mut(target, parent)? {
        Value::Object(map) => map
            .shift_remove(last)
            .ok_or_else(|| format!("no field {last:?}")),
        Value::Array(items) => {
            let index = array_index(items, last, false)?;
            Ok(items.remove(index))
        }
        _ => Err("the parent is not an object or an array".into()),
    }
}

/// Applies a strategic merge patch without list merge keys (see the module doc).
pub(crate) fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    let directive = match fields.get("$patch") {
        None => None,
        Some(Value::String(d)) if matches!(d.as_str(), "replace" | "merge" | "delete") => {
            Some(d.as_str())
        }
        Some(other) => {
            return Err(PatchError::Malformed(format!(
                "unknown $patch directive {other} (replace, merge or delete)"
            )));
        }
    };
    if let Some(key) = fields
        .keys()
        .find(|k| k.starts_with('$') && !matches!(k.as_str(), "$patch" | "$retainKeys"))
    {
        return Err(PatchError::Malformed(format!(
            "strategic merge patch directive {key:?} is not supported: flotta's schemas have no list merge keys, so lists are replaced whole"
        )));
    }
    if directive == Some("replace") || !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_fields) = target else {
        return Ok(());
    };
    if let Some(retain) = fields.get("$retainKeys") {
        let keys: Vec<&str> = retain
            .as_array()
            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
            .ok_or_else(|| PatchError::Malformed("$retainKeys must be a list of keys".into()))?;
        target_fields.retain(|key, _| keys.contains(&key.as_str()));
    }
    for (key, value) in fields {
        if key.starts_with('$') {
            continue;
        }
        let deletes =
            value.is_null() || value.get("$patch").and_then(Value::as_str) == Some("delete");
        if deletes {
            target_fields.shift_remove(key);
            continue;
        }
        let slot = target_fields.entry(key.clone()).or_insert(Value::Null);
        strategic_merge_patch(slot, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386_examples() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
        let mut target = json!({"a": [{"b": "c"}]});
        merge_patch(&mut target, &json!({"a": [1]}));
        assert_eq!(target, json!({"a": [1]}));
        let mut target = json!(["a"]);
        merge_patch(&mut target, &json!({"a": {"bb": {"ccc": null}}}));
        assert_eq!(target, json!({"a": {"bb": {}}}));
    }

    #[test]
    fn json_patch_follows_rfc_6902_examples() {
        let mut doc = json!({"foo": ["bar", "baz"], "a/b": 1, "m~n": 2});
        let ops = json!([
            {"op": "add", "path": "/foo/1", "value": "qux"},
            {"op": "add", "path": "/foo/-", "value": "end"},
            {"op": "remove", "path": "/foo/0"},
            {"op": "replace", "path": "/a~1b", "value": 3},
            {"op": "test", "path": "/m~0n", "value": 2},
            {"op": "copy", "from": "/foo/0", "path": "/first"},
            {"op": "move", "from": "/first", "path": "/moved"},
        ]);
        json_patch(&mut doc, ops.as_array().expect("ops")).expect("applies");
        assert_eq!(
            doc,
            json!({"foo": ["qux", "baz", "end"], "a/b": 3, "m~n": 2, "moved": "qux"})
        );
    }

    #[test]
    fn json_patch_is_all_or_nothing_and_names_the_failing_operation() {
        let mut doc = json!({"a": 1});
        let ops = json!([
            {"op": "replace", "path": "/a", "value": 2},
            {"op": "test", "path": "/a", "value": 1},
        ]);
        let error = json_patch(&mut doc, ops.as_array().expect("ops")).expect_err("test fails");
        assert!(
            matches!(&error, PatchError::Operation { index: 1, op, .. } if op == "test"),
            "{error}"
        );
        assert_eq!(doc, json!({"a": 1}), "unchanged");

        let bad =
            json!([{"op": "add", "path": "/b", "value": 1}, {"op": "frobnicate", "path": "/a"}]);
        let error = json_patch(&mut doc, bad.as_array().expect("ops")).expect_err("unknown op");
        assert!(
            matches!(&error, PatchError::Malformed(m) if m.starts_with("JSON patch operation 1:")),
            "{error}"
        );
        let missing = json!([{"op": "remove", "path": "/nope"}]);
        let error = json_patch(&mut doc, missing.as_array().expect("ops")).expect_err("no field");
        assert!(
            matches!(error, PatchError::Operation { index: 0, .. }),
            "{error}"
        );
        let leading_zero =
            json!([{"op": "add", "path": "/x", "value": [1]}, {"op": "remove", "path": "/x/01"}]);
        assert!(json_patch(&mut doc, leading_zero.as_array().expect("ops")).is_err());
    }

    #[test]
    fn strategic_merge_patch_is_merge_patch_with_map_directives() {
        let mut doc = json!({"spec": {"a": 1, "b": {"c": 2, "d": 3}, "list": [1, 2]}});
        let patch = json!({"spec": {"a": null, "b": {"$patch": "replace", "e": 4}, "list": [3]}});
        strategic_merge_patch(&mut doc, &patch).expect("applies");
        assert_eq!(doc, json!({"spec": {"b": {"e": 4}, "list": [3]}}));
        strategic_merge_patch(&mut doc, &json!({"spec": {"b": {"$patch": "delete"}}}))
            .expect("applies");
        assert_eq!(doc, json!({"spec": {"list": [3]}}));
        let mut doc = json!({"x": 1, "y": 2, "z": 3});
        strategic_merge_patch(&mut doc, &json!({"$retainKeys": ["x", "w"], "w": 0}))
            .expect("applies");
        assert_eq!(doc, json!({"x": 1, "w": 0}));
        let error = strategic_merge_patch(&mut doc, &json!({"$setElementOrder/list": [1]}))
            .expect_err("list directive");
        assert!(matches!(error, PatchError::Malformed(_)));
    }
}
