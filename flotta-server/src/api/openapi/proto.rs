//! The OpenAPI v2 document in the protocol buffer encoding kubectl reads
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`: gnostic's
//! `openapi.v2.Document`). kubectl's client asks `/openapi/v2` for this form only
//! and does not fall back to JSON, so the server encodes it.
//!
//! Only what kubectl reads is encoded: the document's version and info, each
//! path's operations with their vendor extensions (`x-kubernetes-group-version-kind`
//! is how kubectl finds a kind's PATCH operation), and the definitions (schemas:
//! references, types, formats, descriptions, required fields, enums, limits,
//! properties, items, additional properties, vendor extensions). The field numbers
//! are those of gnostic's `OpenAPIv2.proto`.

use serde_json::{Map, Value};

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // Truncation intended: the low seven bits, with the continuation bit.
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.tag(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, text: &str) {
        if !text.is_empty() {
            self.bytes(field, text.as_bytes());
        }
    }

    fn message(&mut self, field: u32, message: Message) {
        self.bytes(field, &message.0);
    }

    fn boolean(&mut self, field: u32, value: bool) {
        if value {
            self.tag(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, value: u64) {
        self.tag(field, 0);
        self.varint(value);
    }

    fn double(&mut self, field: u32, value: f64) {
        self.tag(field, 1);
        self.0.extend_from_slice(&value.to_le_bytes());
    }
}

/// gnostic's `Any`: a value as YAML text (field 2).
fn any(value: &Value) -> Message {
    let mut message = Message::default();
    let yaml = serde_yaml_ng::to_string(value).unwrap_or_default();
    message.string(2, &yaml);
    message
}

/// `NamedAny` entries of the `x-` keys of `object`, as `field`.
fn vendor_extensions(message: &mut Message, field: u32, object: &Map<String, Value>) {
    for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Message::default();
        named.string(1, name);
        named.message(2, any(value));
        message.message(field, named);
    }
}

fn strings(message: &mut Message, field: u32, values: Option<&Value>) {
    for value in values.and_then(Value::as_array).into_iter().flatten() {
        if let Some(text) = value.as_str() {
            message.string(field, text);
        }
    }
}

/// gnostic's `Schema`.
fn schema(value: &Value) -> Message {
    let mut message = Message::default();
    let Some(object) = value.as_object() else {
        return message;
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or_default();
    let count = |key: &str| object.get(key).and_then(Value::as_u64);
    message.string(1, text("$ref"));
    message.string(2, text("format"));
    message.string(3, text("title"));
    message.string(4, text("description"));
    if let Some(n) = object.get("maximum").and_then(Value::as_f64) {
        message.double(7, n);
    }
    if let Some(n) = object.get("minimum").and_then(Value::as_f64) {
        message.double(9, n);
    }
    for (key, field) in [
        ("maxLength", 11),
        ("minLength", 12),
        ("maxItems", 14),
        ("minItems", 15),
        ("maxProperties", 17),
        ("minProperties", 18),
    ] {
        if let Some(n) = count(key) {
            message.int64(field, n);
        }
    }
    message.string(13, text("pattern"));
    message.boolean(
        16,
        object.get("uniqueItems").and_then(Value::as_bool) == Some(true),
    );
    strings(&mut message, 19, object.get("required"));
    for value in object
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message.message(20, any(value));
    }
    match object.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Message::default();
            item.tag(2, 0);
            item.varint(u64::from(*allowed));
            message.message(21, item);
        }
        Some(inner @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema(inner));
            message.message(21, item);
        }
        _ => {}
    }
    if let Some(type_) = object.get("type") {
        let mut item = Message::default();
        match type_ {
            Value::String(t) => item.string(1, t),
            other => strings(&mut item, 1, Some(other)),
        }
        message.message(22, item);
    }
    if let Some(items) = object.get("items") {
        let mut item = Message::default();
        item.message(1, schema(items));
        message.message(23, item);
    }
    for part in object
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message.message(24, schema(part));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        message.message(25, named_schemas(properties));
    }
    message.boolean(
        27,
        object.get("readOnly").and_then(Value::as_bool) == Some(true),
    );
    vendor_extensions(&mut message, 31, object);
    message
}

/// `Properties` / `Definitions`: repeated `NamedSchema` in field 1.
fn named_schemas(schemas: &Map<String, Value>) -> Message {
    let mut message = Message::default();
    for (name, value) in schemas {
        let mut named = Message::default();
        named.string(1, name);
        named.message(2, schema(value));
        message.message(1, named);
    }
    message
}

/// gnostic's `Operation`: its id and vendor extensions.
fn operation(value: &Value) -> Message {
    let mut message = Message::default();
    if let Some(object) = value.as_object() {
        strings(&mut message, 1, object.get("tags"));
        message.string(
            2,
            object
                .get("summary")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        message.string(
            5,
            object
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        vendor_extensions(&mut message, 13, object);
    }
    message
}

/// gnostic's `Paths`: repeated `NamedPathItem` in field 2.
fn paths(paths: &Map<String, Value>) -> Message {
    let mut message = Message::default();
    for (path, item) in paths {
        let mut path_item = Message::default();
        for (method, field) in [
            ("get", 2),
            ("put", 3),
            ("post", 4),
            ("delete", 5),
            ("options", 6),
            ("head", 7),
            ("patch", 8),
        ] {
            if let Some(op) = item.get(method) {
                path_item.message(field, operation(op));
            }
        }
        let mut named = Message::default();
        named.string(1, path);
        named.message(2, path_item);
        message.message(2, named);
    }
    message
}

/// Encodes a Swagger 2.0 JSON document as gnostic's `openapi.v2.Document`.
pub(crate) fn encode_v2(document: &Value) -> Vec<u8> {
    let mut message = Message::default();
    message.string(
        1,
        document
            .get("swagger")
            .and_then(Value::as_str)
            .unwrap_or("2.0"),
    );
    if let Some(info) = document.get("info") {
        let mut encoded = Message::default();
        encoded.string(
            1,
            info.get("title")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        encoded.string(
            2,
            info.get("version")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        message.message(2, encoded);
    }
    if let Some(p) = document.get("paths").and_then(Value::as_object) {
        message.message(8, paths(p));
    }
    if let Some(definitions) = document.get("definitions").and_then(Value::as_object) {
        message.message(9, named_schemas(definitions));
    }
    message.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_and_strings_follow_the_wire_format() {
        let mut message = Message::default();
        message.varint(300);
        assert_eq!(message.0, [0xac, 0x02]);
        let mut message = Message::default();
        message.string(1, "2.0");
        assert_eq!(message.0, [0x0a, 3, b'2', b'.', b'0']);
    }

    #[test]
    fn a_document_encodes_its_version_info_and_definitions() {
        let document = json!({
            "swagger": "2.0",
            "info": {"title": "t", "version": "v"},
            "definitions": {"A": {"type": "object", "properties": {"b": {"type": "string"}}}},
        });
        let bytes = encode_v2(&document);
        assert_eq!(&bytes[..5], &[0x0a, 3, b'2', b'.', b'0']);
        // Document.info (field 2) holds title and version.
        assert_eq!(&bytes[5..11], &[0x12, 6, 0x0a, 1, b't', 0x12]);
        // Document.definitions is field 9, length-delimited.
        assert!(bytes.windows(1).any(|w| w[0] == 0x4a));
        assert!(bytes.windows(b"string".len()).any(|w| w == b"string"));
    }
}
