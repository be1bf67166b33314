//! Rules for the bodies of Kubernetes `v1` `Secret`s the management API accepts:
//! checks that never quote a value (a secret value must not reach an error message
//! or a log), folding `stringData` into `data` as Kubernetes does on write, and the
//! redacted form shown where values must not appear (`describe`, logs).
//!
//! A leaf module over JSON values: the server admits bodies with it, the command
//! line redacts with it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// Top-level fields a secret body may carry.
const FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "type",
    "immutable",
    "data",
    "stringData",
];

/// Longest key of a secret or config map (a DNS subdomain's length).
pub const MAX_KEY_LEN: usize = 253;

/// What [`redact`] writes in place of each value.
pub const REDACTED: &str = "<redacted>";

/// One problem with a secret body: a field path and what is wrong, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// Path of the field, e.g. `data.password`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> SecretProblem {
    SecretProblem {
        path: path.into(),
        message: message.into(),
    }
}

/// Checks a data key as Kubernetes does: `[-._a-zA-Z0-9]+`, at most
/// [`MAX_KEY_LEN`] characters, not `.` or `..`.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!("a key must have 1 to {MAX_KEY_LEN} characters"));
    }
    if key == "." || key == ".." {
        return Err("a key may not be '.' or '..'".into());
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("a key may contain only letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

/// Every problem of a secret body (besides its metadata, which the API checks for
/// every kind). Messages name fields and keys, never values.
pub fn check_secret(body: &Value) -> Vec<SecretProblem> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return vec![problem("", "the body must be a JSON object")];
    };
    for field in object.keys() {
        if !FIELDS.contains(&field.as_str()) {
            problems.push(problem(field.as_str(), "unknown field of a Secret"));
        }
    }
    match object.get("type") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => problems.push(problem("type", "must be a string")),
    }
    match object.get("immutable") {
        None | Some(Value::Null | Value::Bool(_)) => {}
        Some(_) => problems.push(problem("immutable", "must be a boolean")),
    }
    for (field, base64) in [("data", true), ("stringData", false)] {
        match object.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    let path = format!("{field}.{key}");
                    if let Err(message) = check_key(key) {
                        problems.push(problem(&path, message));
                    }
                    match value {
                        Value::String(text) if base64 && STANDARD.decode(text).is_err() => {
                            problems.push(problem(&path, "the value is not valid base64"));
                        }
                        Value::String(_) => {}
                        _ => problems.push(problem(&path, "the value must be a string")),
                    }
                }
            }
            Some(_) => problems.push(problem(field, "must be a map of keys to strings")),
        }
    }
    problems
}

/// Moves `stringData` into `data` (base64), a `stringData` key winning over the same
/// `data` key, as Kubernetes does on write. Non-string values are left to
/// [`check_secret`].
pub fn fold_string_data(body: &mut Value) {
    let Some(object) = body.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = object.remove("stringData") else {
        return;
    };
    let data = object
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Value::Object(data) = data {
        for (key, value) in strings {
            if let Value::String(text) = value {
                data.insert(key, Value::String(STANDARD.encode(text)));
            }
        }
    }
}

/// Replaces every value of `data` and `stringData` by [`REDACTED`], keeping keys.
pub fn redact(body: &mut Value) {
    for field in ["data", "stringData"] {
        if let Some(Value::Object(map)) = body.get_mut(field) {
            for value in map.values_mut() {
                *value = Value::String(REDACTED.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problems_name_fields_never_values() {
        let body = json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"password": "hunter2!!", "bad key": "aGk="},
            "stringData": {"n": 7}, "extra": "hunter3"});
        let problems = check_secret(&body);
        let text = format!("{problems:?}");
        assert!(!text.contains("hunter"), "{text}");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["extra", "data.password", "data.bad key", "stringData.n"]
        );
        assert!(check_secret(&json!({"type": "Opaque", "data": {"a.b": "aGk="}})).is_empty());
    }

    #[test]
    fn string_data_folds_into_data_and_wins() {
        let mut body = json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "z"}});
        fold_string_data(&mut body);
        assert_eq!(body, json!({"data": {"a": "eA==", "b": "eg=="}}));
        let mut only = json!({"stringData": {"k": "v"}});
        fold_string_data(&mut only);
        assert_eq!(only, json!({"data": {"k": "dg=="}}));
    }

    #[test]
    fn redaction_keeps_keys() {
        let mut body = json!({"data": {"a": "eA=="}, "type": "Opaque"});
        redact(&mut body);
        assert_eq!(body, json!({"data": {"a": REDACTED}, "type": "Opaque"}));
    }
}
