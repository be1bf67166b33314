//! Reading and writing Flotta message envelopes.
//!
//! Interim: the envelope and the directive contents are read from JSON here, field by
//! field, until `flotta_core::wire` provides the typed messages; then this file shrinks
//! to calls of the wire types and their conversions.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use flotta_core::model::Hardware;

/// Why a request body is not a usable message. The text is sent back with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct BadMessage(pub String);

/// A message received from a device, with the parts the server reads.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Envelope {
    /// `message_id`, echoed as `response_to` in the reply.
    pub message_id: Option<String>,
    /// `directive`.
    pub directive: Option<String>,
    /// `content`, `null` when absent.
    pub content: Value,
}

impl Envelope {
    /// Parses a request body as a message envelope.
    pub(super) fn parse(body: &[u8]) -> Result<Self, BadMessage> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            BadMessage(format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(mut object) = value else {
            return Err(BadMessage("the message is not a JSON object".into()));
        };
        let message_id = optional_string(&object, "message_id")?;
        let directive = optional_string(&object, "directive")?;
        if let Some(version) = object.get("version")
            && !version.is_null()
            && !version.is_u64()
        {
            return Err(BadMessage("version: expected an integer".into()));
        }
        for key in ["type", "response_to", "sent"] {
            optional_string(&object, key)?;
        }
        let content = object.remove("content").unwrap_or(Value::Null);
        Ok(Self {
            message_id,
            directive,
            content,
        })
    }
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, BadMessage> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(BadMessage(format!("{key}: expected a string"))),
    }
}

/// `content` as an object (`null` counts as empty).
pub(super) fn content_object<'a>(
    content: &'a Value,
    directive: &str,
) -> Result<std::borrow::Cow<'a, Map<String, Value>>, BadMessage> {
    match content {
        Value::Object(map) => Ok(std::borrow::Cow::Borrowed(map)),
        Value::Null => Ok(std::borrow::Cow::Owned(Map::new())),
        _ => Err(BadMessage(format!(
            "content: expected an object for directive {directive}"
        ))),
    }
}

/// A string field of a content object.
pub(super) fn content_string(
    content: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, BadMessage> {
    optional_string(content, key).map_err(|BadMessage(m)| BadMessage(format!("content.{m}")))
}

/// Converts the wire (snake_case) hardware inventory at `content.<path>` into the
/// resource shape.
pub(super) fn hardware(value: &Value, path: &str) -> Result<Option<Hardware>, BadMessage> {
    if value.is_null() {
        return Ok(None);
    }
    if !value.is_object() {
        return Err(BadMessage(format!("{path}: expected an object")));
    }
    let mut converted = camel_case_keys(value);
    if let Some(object) = converted.as_object_mut() {
        for list in ["disks", "gpus", "interfaces"] {
            let entry = object.entry(list).or_insert(Value::Null);
            if entry.is_null() {
                *entry = Value::Array(Vec::new());
            }
        }
        if let Some(cpu) = object.get_mut("cpu").and_then(Value::as_object_mut) {
            fill_empty_list(cpu, "flags");
            if let Some(frequency) = cpu.get_mut("frequency")
                && let Value::Number(n) = frequency
            {
                *frequency = Value::String(n.to_string());
            }
        }
        if let Some(interfaces) = object.get_mut("interfaces").and_then(Value::as_array_mut) {
            for interface in interfaces.iter_mut().filter_map(Value::as_object_mut) {
                fill_empty_list(interface, "flags");
            }
        }
        if let Some(mounts) = object.get_mut("mounts").and_then(Value::as_array_mut) {
            for mount in mounts.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(directory) = mount.remove("directory") {
                    mount.insert("folder".into(), directory);
                }
            }
        }
    }
    serde_path_to_error::deserialize::<_, Hardware>(converted)
        .map(Some)
        .map_err(|e| BadMessage(format!("{path}.{}: {}", e.path(), e.inner())))
}

fn fill_empty_list(object: &mut Map<String, Value>, key: &str) {
    let entry = object.entry(key).or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Array(Vec::new());
    }
}

fn camel_case_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (camel_case(k), camel_case_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camel_case_keys).collect()),
        other => other.clone(),
    }
}

fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Server time in RFC 3339, as messages carry it.
pub(super) fn timestamp(now: OffsetDateTime) -> String {
    now.format(&Rfc3339).unwrap_or_default()
}

/// A reply envelope (`message` in the wire definitions).
pub(super) fn reply(
    message_type: &str,
    directive: &str,
    response_to: Option<&str>,
    content: Value,
) -> Value {
    let mut out = json!({
        "type": message_type,
        "message_id": uuid::Uuid::new_v4().hyphenated().to_string(),
        "version": 1,
        "sent": timestamp(OffsetDateTime::now_utc()),
        "directive": directive,
        "metadata": {},
        "content": content,
    });
    if let (Some(object), Some(to)) = (out.as_object_mut(), response_to) {
        object.insert("response_to".into(), Value::String(to.to_owned()));
    }
    out
}

/// A `message-response` for a posted message.
pub(super) fn response(message_id: Option<&str>, directive: &str, content: Value) -> Value {
    json!({
        "message_id": message_id.unwrap_or_default(),
        "directive": directive,
        "metadata": {},
        "content": content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_reports_type_errors_by_field() {
        assert!(Envelope::parse(b"{").is_err_and(|e| e.0.contains("line 1")));
        assert_eq!(
            Envelope::parse(br#"{"directive": 3}"#),
            Err(BadMessage("directive: expected a string".into()))
        );
        assert_eq!(
            Envelope::parse(br#"[]"#),
            Err(BadMessage("the message is not a JSON object".into()))
        );
        let ok = Envelope::parse(
            br#"{"directive": "heartbeat", "message_id": "m", "content": {"a": 1}}"#,
        )
        .expect("valid");
        assert_eq!(ok.directive.as_deref(), Some("heartbeat"));
        assert_eq!(ok.content, json!({"a": 1}));
    }

    #[test]
    fn hardware_converts_from_the_wire_shape() {
        let wire = json!({
            "hostname": "h",
            "cpu": {"architecture": "x86_64", "count": 8, "frequency": 3600, "model_name": "m"},
            "system_vendor": {"serial_number": "s", "manufacturer": "acme"},
            "interfaces": [{"name": "eth0", "ipv4_addresses": ["10.0.0.1/24"], "mac_address": "aa"}],
            "mounts": [{"device": "/dev/sda1", "directory": "/data", "type": "ext4"}]
        });
        let hw = hardware(&wire, "content.hardware")
            .expect("converts")
            .expect("present");
        assert_eq!(hw.hostname.as_deref(), Some("h"));
        let cpu = hw.cpu.expect("cpu");
        assert_eq!(cpu.frequency.as_deref(), Some("3600"));
        assert_eq!(cpu.model_name.as_deref(), Some("m"));
        assert_eq!(hw.interfaces.len(), 1);
        assert_eq!(
            hw.mounts.expect("mounts")[0].folder.as_deref(),
            Some("/data")
        );
        assert!(hardware(&json!(3), "content.hardware").is_err());
        assert_eq!(hardware(&Value::Null, "x").ok(), Some(None));
    }
}
