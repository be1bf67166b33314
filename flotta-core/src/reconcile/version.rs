//! The configuration version: a content hash of a rendered configuration.
//!
//! Flotta used the device's `resourceVersion` as the configuration version, which every
//! heartbeat bumped, so devices re-applied their configuration for nothing. Here the
//! version is the SHA-256 of a canonical JSON encoding of the configuration message
//! (without its own `version` field):
//!
//! - object keys are written in byte order, whatever order the input had;
//! - no insignificant whitespace, serde_json's number and string formatting;
//! - arrays listed in [`SET_LIKE_ARRAYS`] are semantically sets (their order carries no
//!   meaning for the device) and are written with their elements sorted by their own
//!   canonical encoding; every other array keeps its order (containers of a pod, ports,
//!   command arguments).
//!
//! Status, heartbeats and `resourceVersion` are not part of the rendered message, so
//! they cannot change the version.

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ReconcileError;

/// Arrays of the device configuration message whose order carries no meaning,
/// as paths of object keys from the message root; `*` stands for every element of an
/// array. They are sorted before hashing.
///
/// - `workloads`: one entry per workload, identified by name;
/// - `secrets`: one entry per secret, identified by name;
/// - `workloads.*.configmaps`: config maps a workload mounts, one YAML document each;
/// - `configuration.mounts`: block devices to mount;
/// - `configuration.files`: files of the config-file overlay, identified by path;
/// - `configuration.metrics.system.allow_list.names` and
///   `configuration.metrics.data-transfer.allow_list.names`, `workloads.*.metrics.allow_list.names`:
///   metric name allow lists.
pub const SET_LIKE_ARRAYS: &[&[&str]] = &[
    &["workloads"],
    &["secrets"],
    &["workloads", "*", "configmaps"],
    &["workloads", "*", "metrics", "allow_list", "names"],
    &["configuration", "mounts"],
    &["configuration", "files"],
    &["configuration", "metrics", "system", "allow_list", "names"],
    &[
        "configuration",
        "metrics",
        "data-transfer",
        "allow_list",
        "names",
    ],
];

/// Version of a rendered device configuration: the lowercase hex SHA-256 of its
/// canonical encoding (see the module documentation). Equal content gives an equal
/// version, whatever the order of keys and of set-like lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigVersion(String);

impl ConfigVersion {
    /// Version of a configuration message. Its top-level `version` field, if any, is
    /// left out, so a message hashes the same before and after it is stamped.
    pub fn of<T: Serialize + ?Sized>(message: &T) -> Result<Self, ReconcileError> {
        let mut value = serde_json::to_value(message).map_err(ReconcileError::Encode)?;
        if let Value::Object(map) = &mut value {
            map.remove("version");
        }
        Ok(Self::of_value(&value))
    }

    /// Version of an already-serialized configuration message, hashed as is (the
    /// caller removes any `version` field).
    pub fn of_value(value: &Value) -> Self {
        let mut encoded = Vec::new();
        let mut path = Vec::new();
        write_canonical(value, &mut path, &mut encoded);
        let digest = Sha256::digest(&encoded);
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Self(hex)
    }

    /// The version as text (64 lowercase hex digits).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a version received from elsewhere (an `If-None-Match` header, a
    /// heartbeat), unchecked.
    pub fn from_received(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The canonical encoding of `value` (see the module documentation), as bytes.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut encoded = Vec::new();
    write_canonical(value, &mut Vec::new(), &mut encoded);
    encoded
}

fn is_set_like(path: &[&str]) -> bool {
    SET_LIKE_ARRAYS.iter().any(|pattern| {
        pattern.len() == path.len()
            && pattern
                .iter()
                .zip(path)
                .all(|(want, have)| want == have || (*want == "*" && *have == "*"))
    })
}

fn write_canonical<'a>(value: &'a Value, path: &mut Vec<&'a str>, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (position, (key, item)) in entries.into_iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                path.push(key);
                write_canonical(item, path, out);
                path.pop();
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            path.push("*");
            let set_like = is_set_like(&path[..path.len() - 1]);
            out.push(b'[');
            if set_like {
                let mut encoded: Vec<Vec<u8>> = items
                    .iter()
                    .map(|item| {
                        let mut buffer = Vec::new();
                        write_canonical(item, path, &mut buffer);
                        buffer
                    })
                    .collect();
                encoded.sort_unstable();
                for (position, item) in encoded.iter().enumerate() {
                    if position > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(item);
                }
            } else {
                for (position, item) in items.iter().enumerate() {
                    if position > 0 {
                        out.push(b',');
                    }
                    write_canonical(item, path, out);
                }
            }
            path.pop();
            out.push(b']');
        }
        Value::String(text) => write_string(text, out),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail; the fallback keeps the output valid JSON
    // should serde_json ever refuse.
    if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_version() {
        let a = json!({"device_id": "d", "configuration": {"heartbeat": {"period_seconds": 5}, "os": {}}});
        let b = json!({"configuration": {"os": {}, "heartbeat": {"period_seconds": 5}}, "device_id": "d"});
        assert_eq!(ConfigVersion::of_value(&a), ConfigVersion::of_value(&b));
    }

    #[test]
    fn set_like_lists_are_sorted_and_ordered_lists_are_not() {
        let a = json!({"workloads": [{"name": "a"}, {"name": "b"}], "x": [1, 2]});
        let b = json!({"workloads": [{"name": "b"}, {"name": "a"}], "x": [1, 2]});
        let c = json!({"workloads": [{"name": "a"}, {"name": "b"}], "x": [2, 1]});
        assert_eq!(ConfigVersion::of_value(&a), ConfigVersion::of_value(&b));
        assert_ne!(ConfigVersion::of_value(&a), ConfigVersion::of_value(&c));
    }

    #[test]
    fn nested_set_paths_use_the_wildcard() {
        let a = json!({"workloads": [{"name": "w", "configmaps": ["x", "y"]}]});
        let b = json!({"workloads": [{"name": "w", "configmaps": ["y", "x"]}]});
        assert_eq!(ConfigVersion::of_value(&a), ConfigVersion::of_value(&b));
        let containers_a = json!({"workloads": [{"name": "w", "specification": ["x", "y"]}]});
        let containers_b = json!({"workloads": [{"name": "w", "specification": ["y", "x"]}]});
        assert_ne!(
            ConfigVersion::of_value(&containers_a),
            ConfigVersion::of_value(&containers_b)
        );
    }

    #[test]
    fn the_version_field_is_left_out_and_content_changes_show() {
        let stamped = json!({"device_id": "d", "version": "abc"});
        let bare = json!({"device_id": "d"});
        let other = json!({"device_id": "e"});
        let stamped = ConfigVersion::of(&stamped).expect("json value serializes");
        let bare = ConfigVersion::of(&bare).expect("json value serializes");
        assert_eq!(stamped, bare);
        assert_ne!(
            bare,
            ConfigVersion::of(&other).expect("json value serializes")
        );
        assert_eq!(bare.as_str().len(), 64);
        assert!(bare.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn canonical_encoding_is_compact_sorted_json() {
        let value = json!({"b": 1, "a": [true, null, "q\""]});
        assert_eq!(canonical_json(&value), br#"{"a":[true,null,"q\""],"b":1}"#);
    }

    #[test]
    fn known_digest_of_empty_object() {
        // sha256("{}")
        assert_eq!(
            ConfigVersion::of_value(&json!({})).as_str(),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
