//! The OpenAPI documents kubectl reads: v2 (`/openapi/v2`, Swagger 2.0, as JSON or
//! in gnostic's protobuf form) and v3 (`/openapi/v3`, an index of one OpenAPI 3.0
//! document per group-version). Both come from the same schemas as `/openapi.json`
//! (schemars, JSON Schema 2020-12), brought down to the subset OpenAPI 2.0 and 3.0
//! share, with `x-kubernetes-group-version-kind` on each kind's schema and on each
//! operation so that `kubectl explain` and `kubectl apply`'s validation find them.
//!
//! The PATCH operations do not declare the `fieldValidation` parameter, so kubectl
//! validates manifests on its side against these schemas (the server checks every
//! body against the typed model in any case).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::store::ResourceKind;

/// Media type of the protobuf-encoded v2 document, as answered: Go's
/// `mime.ParseMediaType` (which kubectl applies to every answer) refuses the `@`
/// of the older spelling.
pub(crate) const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The older spelling clients may still ask for in `Accept`.
pub(crate) const V2_PROTOBUF_OLD: &str =
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// Where 3.1 schemas refer to each other.
const COMPONENTS: &str = "#/components/schemas/";

/// The documents, encoded once when the server starts.
#[derive(Debug, Clone)]
pub struct KubeOpenApi {
    v2_json: Vec<u8>,
    v2_protobuf: Vec<u8>,
    /// Path under `/openapi/v3/` (e.g. `apis/management.project-flotta.io/v1alpha1`)
    /// → (content hash, JSON document).
    v3: BTreeMap<String, (String, Vec<u8>)>,
}

impl KubeOpenApi {
    /// Builds every document from the OpenAPI 3.1 document of `/openapi.json`.
    pub fn from_document(document: &Value) -> Self {
        let schemas = document
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let v2 = v2_document(&schemas);
        let mut v3 = BTreeMap::new();
        for (path, kinds) in group_versions() {
            let document = v3_document(&schemas, &kinds);
            let bytes = serde_json::to_vec(&document).unwrap_or_default();
            let hash = hex(&Sha256::digest(&bytes)[..16]);
            v3.insert(path, (hash, bytes));
        }
        Self {
            v2_json: serde_json::to_vec(&v2).unwrap_or_default(),
            v2_protobuf: super::proto::encode_v2(&v2),
            v3,
        }
    }

    /// The v2 document as JSON.
    pub fn v2_json(&self) -> &[u8] {
        &self.v2_json
    }

    /// The v2 document in gnostic's protobuf encoding.
    pub fn v2_protobuf(&self) -> &[u8] {
        &self.v2_protobuf
    }

    /// The v3 index: each group-version's document and its hash.
    pub fn v3_index(&self) -> Value {
        let paths: Map<String, Value> = self
            .v3
            .iter()
            .map(|(path, (hash, _))| {
                (
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
                )
            })
            .collect();
        json!({ "paths": paths })
    }

    /// The v3 document of a group-version path such as `api/v1`.
    pub fn v3_document(&self, path: &str) -> Option<&[u8]> {
        self.v3.get(path).map(|(_, bytes)| bytes.as_slice())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The group-version paths (`api/v1`, `apis/GROUP/VERSION`) and their kinds.
fn group_versions() -> BTreeMap<String, Vec<ResourceKind>> {
    let mut found: BTreeMap<String, Vec<ResourceKind>> = BTreeMap::new();
    for kind in ResourceKind::ALL {
        let path = kind.api_prefix().trim_start_matches('/').to_owned();
        found.entry(path).or_default().push(kind);
    }
    found
}

fn gvk(kind: ResourceKind, name: &str) -> Value {
    let info = kind.info();
    json!({"group": info.group, "version": info.version, "kind": name})
}

/// The 3.1 schemas brought down to OpenAPI 2.0/3.0, references pointing at
/// `ref_prefix`, with each kind's (and list's) group-version-kind.
fn kube_schemas(schemas: &Map<String, Value>, ref_prefix: &str) -> Map<String, Value> {
    let mut converted: Map<String, Value> = schemas
        .iter()
        .map(|(name, schema)| (name.clone(), downgrade(schema, ref_prefix)))
        .collect();
    for kind in ResourceKind::ALL {
        for name in [kind.as_str().to_owned(), format!("{}List", kind.as_str())] {
            if let Some(Value::Object(schema)) = converted.get_mut(&name) {
                schema.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([gvk(kind, &name)]),
                );
            }
        }
    }
    converted
}

/// A schema of the 3.1 document in the subset OpenAPI 2.0 and 3.0 share: `null`
/// dropped from types and alternatives, a single alternative inlined, string
/// alternatives folded into an `enum`, object alternatives into one object with
/// every property, other alternatives left open; `const` as a one-value `enum`;
/// keywords the older versions lack dropped.
pub(crate) fn downgrade(schema: &Value, ref_prefix: &str) -> Value {
    let Some(object) = schema.as_object() else {
        // `true`: anything.
        return json!({});
    };
    let mut out = Map::new();
    if let Some(Value::String(target)) = object.get("$ref") {
        let name = target.strip_prefix(COMPONENTS).unwrap_or(target);
        out.insert("$ref".into(), json!(format!("{ref_prefix}{name}")));
        if let Some(description) = object.get("description") {
            out.insert("description".into(), description.clone());
        }
        return Value::Object(out);
    }
    let alternatives = ["anyOf", "oneOf", "allOf"]
        .iter()
        .filter_map(|key| object.get(*key).and_then(Value::as_array))
        .flatten()
        .filter(|branch| !is_null(branch))
        .collect::<Vec<_>>();
    if !alternatives.is_empty() {
        let merged = merge_alternatives(&alternatives, ref_prefix);
        if let Value::Object(merged) = merged {
            out.extend(merged);
        }
    }
    for (key, value) in object {
        match key.as_str() {
            "type" => match value {
                Value::String(t) if t != "null" => {
                    out.insert("type".into(), value.clone());
                }
                Value::Array(types) => {
                    let types: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    if let [single] = types.as_slice() {
                        out.insert("type".into(), (*single).clone());
                    }
                }
                _ => {}
            },
            "const" if !value.is_null() => {
                out.insert("enum".into(), json!([value]));
            }
            "enum" => {
                let values: Vec<&Value> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| !v.is_null())
                    .collect();
                out.insert("enum".into(), json!(values));
            }
            "properties" => {
                let properties: Map<String, Value> = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, schema)| (name.clone(), downgrade(schema, ref_prefix)))
                    .collect();
                out.insert("properties".into(), Value::Object(properties));
            }
            "items" => {
                out.insert("items".into(), downgrade(value, ref_prefix));
            }
            "additionalProperties" => {
                let converted = match value {
                    Value::Bool(_) => value.clone(),
                    other => downgrade(other, ref_prefix),
                };
                out.insert("additionalProperties".into(), converted);
            }
            "description" | "title" | "format" | "pattern" | "required" | "minimum" | "maximum"
            | "minLength" | "maxLength" | "minItems" | "maxItems" | "uniqueItems"
            | "minProperties" | "maxProperties" | "readOnly" => {
                out.insert(key.clone(), value.clone());
            }
            k if k.starts_with("x-") => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if out.get("type") == Some(&json!("object")) && !out.contains_key("properties") {
        // An object without declared properties is a map: whatever it holds.
        out.entry("additionalProperties").or_insert(json!({}));
    }
    Value::Object(out)
}

fn is_null(schema: &Value) -> bool {
    schema.get("type") == Some(&json!("null")) || schema.get("const") == Some(&Value::Null)
}

/// One schema for several alternatives (see [`downgrade`]).
fn merge_alternatives(alternatives: &[&Value], ref_prefix: &str) -> Value {
    let converted: Vec<Value> = alternatives
        .iter()
        .map(|branch| downgrade(branch, ref_prefix))
        .collect();
    if let [single] = converted.as_slice() {
        return single.clone();
    }
    let strings: Option<Vec<Value>> = converted
        .iter()
        .map(|branch| {
            let is_string = branch.get("type").is_none_or(|t| t == "string");
            branch
                .get("enum")
                .and_then(Value::as_array)
                .filter(|_| is_string)
                .cloned()
        })
        .collect::<Option<Vec<_>>>()
        .map(|lists| lists.into_iter().flatten().collect());
    if let Some(values) = strings.filter(|v| v.iter().all(Value::is_string)) {
        return json!({"type": "string", "enum": values});
    }
    if converted.iter().all(|branch| {
        branch.get("type") == Some(&json!("object")) && branch.get("properties").is_some()
    }) {
        let mut properties = Map::new();
        for branch in &converted {
            if let Some(Value::Object(more)) = branch.get("properties") {
                for (name, schema) in more {
                    properties
                        .entry(name.clone())
                        .or_insert_with(|| schema.clone());
                }
            }
        }
        return json!({"type": "object", "properties": properties});
    }
    json!({})
}

/// The operations of one kind's object path, as kubectl looks them up.
fn kind_operations(kind: ResourceKind, ref_prefix: &str, v2: bool) -> Map<String, Value> {
    let name = kind.as_str();
    let schema = json!({"$ref": format!("{ref_prefix}{name}")});
    let response = if v2 {
        json!({"200": {"description": "OK", "schema": schema}})
    } else {
        json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}})
    };
    let mut operations = Map::new();
    let verbs: &[(&str, &str, &str)] = if kind.server_written() {
        &[("get", "read", "get")]
    } else {
        &[
            ("get", "read", "get"),
            ("put", "replace", "put"),
            ("patch", "patch", "patch"),
            ("delete", "delete", "delete"),
        ]
    };
    for (method, verb, action) in verbs {
        operations.insert(
            (*method).into(),
            json!({
                "operationId": format!("{verb}{name}"),
                "responses": response,
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk(kind, name),
            }),
        );
    }
    operations
}

fn object_path(kind: ResourceKind) -> String {
    format!(
        "{}/namespaces/{{namespace}}/{}/{{name}}",
        kind.api_prefix(),
        kind.plural()
    )
}

fn info() -> Value {
    json!({"title": "flotta management API", "version": flotta_core::kind::API_VERSION})
}

/// The Swagger 2.0 document.
fn v2_document(schemas: &Map<String, Value>) -> Value {
    let prefix = "#/definitions/";
    let paths: Map<String, Value> = ResourceKind::ALL
        .into_iter()
        .map(|kind| {
            (
                object_path(kind),
                Value::Object(kind_operations(kind, prefix, true)),
            )
        })
        .collect();
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": kube_schemas(schemas, prefix),
    })
}

/// The OpenAPI 3.0 document of one group-version.
fn v3_document(schemas: &Map<String, Value>, kinds: &[ResourceKind]) -> Value {
    let paths: Map<String, Value> = kinds
        .iter()
        .map(|kind| {
            (
                object_path(*kind),
                Value::Object(kind_operations(*kind, COMPONENTS, false)),
            )
        })
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": kube_schemas(schemas, COMPONENTS)},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_come_down_to_the_shared_subset() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": ["string", "null"], "format": "date-time"},
                "b": {"anyOf": [{"$ref": "#/components/schemas/B"}, {"type": "null"}], "description": "the b"},
                "c": {"oneOf": [{"const": "x"}, {"type": "string", "enum": ["y"]}]},
                "d": {"const": "v1"},
                "e": {"type": "integer", "exclusiveMinimum": 0, "minimum": 1},
                "f": {"type": "object"},
            },
        });
        let out = downgrade(&schema, "#/definitions/");
        assert_eq!(
            out["properties"]["a"],
            json!({"type": "string", "format": "date-time"})
        );
        assert_eq!(
            out["properties"]["b"],
            json!({"$ref": "#/definitions/B", "description": "the b"})
        );
        assert_eq!(
            out["properties"]["c"],
            json!({"type": "string", "enum": ["x", "y"]})
        );
        assert_eq!(out["properties"]["d"], json!({"enum": ["v1"]}));
        assert_eq!(
            out["properties"]["e"],
            json!({"type": "integer", "minimum": 1})
        );
        assert_eq!(
            out["properties"]["f"],
            json!({"type": "object", "additionalProperties": {}})
        );
    }

    #[test]
    fn every_kind_has_its_group_version_kind_and_a_patch_operation() {
        let openapi = KubeOpenApi::from_document(&super::super::openapi_document());
        let v2: Value = serde_json::from_slice(openapi.v2_json()).expect("v2 JSON");
        let index = openapi.v3_index();
        for kind in ResourceKind::ALL {
            let definition = &v2["definitions"][kind.as_str()];
            assert_eq!(
                definition["x-kubernetes-group-version-kind"][0]["kind"],
                kind.as_str()
            );
            let path = kind.api_prefix().trim_start_matches('/');
            assert!(
                index["paths"][path]["serverRelativeURL"].is_string(),
                "{path}"
            );
            let document: Value =
                serde_json::from_slice(openapi.v3_document(path).expect("v3 document"))
                    .expect("v3 JSON");
            let operations = &document["paths"][object_path(kind)];
            let get = &operations["get"];
            assert_eq!(
                get["x-kubernetes-group-version-kind"]["kind"],
                kind.as_str()
            );
            assert_eq!(operations.get("patch").is_some(), !kind.server_written());
        }
        assert!(!openapi.v2_protobuf().is_empty());
        let text = String::from_utf8_lossy(openapi.v2_json());
        for keyword in ["\"anyOf\"", "\"oneOf\"", "\"const\"", "\"null\""] {
            assert!(!text.contains(keyword), "{keyword} left in the v2 document");
        }
    }
}
