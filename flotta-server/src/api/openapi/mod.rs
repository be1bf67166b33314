//! The OpenAPI 3.1 document of the management API (`/openapi.json`): resource
//! schemas from the model (schemars, JSON Schema 2020-12 as OpenAPI 3.1 uses) and
//! paths assembled here; [`kube`] derives the v2 and v3 documents kubectl reads.

use flotta_core::model::{
    API_VERSION, EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeWorkload,
};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::{API_PREFIX, plural_of};
use crate::store::ResourceKind;

mod kube;
mod proto;

pub use kube::KubeOpenApi;
pub(crate) use kube::{V2_PROTOBUF, V2_PROTOBUF_OLD};

const SCHEMAS: &str = "#/components/schemas/";

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{SCHEMAS}{name}") })
}

fn status_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref("Status")}},
    })
}

/// Error responses every authenticated operation may give.
fn error_responses(extra: &[(&str, &str)]) -> Map<String, Value> {
    let mut responses = Map::new();
    for (code, description) in [
        ("400", "Bad request (malformed body, selector or parameter)"),
        ("401", "Missing or invalid bearer token"),
        ("403", "The token's role does not allow this"),
        ("404", "No such resource type or object"),
    ]
    .iter()
    .chain(extra)
    {
        responses.insert((*code).into(), status_response(description));
    }
    responses
}

fn object_responses(ok_code: &str, kind: &str, extra: &[(&str, &str)]) -> Value {
    let mut responses = error_responses(extra);
    responses.insert(
        ok_code.into(),
        json!({
            "description": format!("The {kind}"),
            "content": {"application/json": {"schema": schema_ref(kind)}},
        }),
    );
    Value::Object(responses)
}

fn body_of(kind: &str) -> Value {
    json!({
        "required": true,
        "content": {
            "application/json": {"schema": schema_ref(kind)},
            "application/yaml": {"schema": schema_ref(kind)},
        },
    })
}

/// The body of a PATCH of the object: the three patch formats and a server-side
/// apply configuration.
fn object_patch_body(kind: &str) -> Value {
    let mut body = merge_patch_body();
    body["content"]["application/apply-patch+yaml"] = json!({"schema": schema_ref(kind)});
    body
}

fn merge_patch_body() -> Value {
    json!({
        "required": true,
        "content": {
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "array", "items": {
                "type": "object",
                "required": ["op", "path"],
                "properties": {
                    "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
                    "path": {"type": "string"},
                    "from": {"type": "string"},
                    "value": {},
                },
            }}},
        },
    })
}

fn string_param(name: &str, location: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": location,
        "required": location == "path",
        "description": description,
        "schema": {"type": "string"},
    })
}

fn list_parameters() -> Vec<Value> {
    vec![
        string_param(
            "labelSelector",
            "query",
            "Kubernetes label selector, e.g. `site=lab,tier in (a,b)`",
        ),
        string_param(
            "fieldSelector",
            "query",
            "Field selector over the kind's selectable fields, e.g. `metadata.name contains cam`",
        ),
        json!({"name": "limit", "in": "query", "required": false, "description": "Page size; 0 or absent returns everything", "schema": {"type": "integer", "minimum": 0}}),
        string_param(
            "continue",
            "query",
            "The `metadata.continue` of the previous page",
        ),
        json!({"name": "watch", "in": "query", "required": false, "description": "Stream changes as JSON lines of {type, object}", "schema": {"type": "boolean"}}),
        string_param(
            "resourceVersion",
            "query",
            "Watch: resume after this resource version (410 when too old)",
        ),
        json!({"name": "timeoutSeconds", "in": "query", "required": false, "description": "Watch: end the stream after this many seconds", "schema": {"type": "integer", "minimum": 0}}),
    ]
}

fn list_responses(kind: &str) -> Value {
    let mut responses = error_responses(&[("410", "Watch resource version too old")]);
    responses.insert(
        "200".into(),
        json!({
            "description": format!("A page of {kind} objects, or with watch=true a stream of JSON lines"),
            "content": {"application/json": {"schema": schema_ref(&format!("{kind}List"))}},
        }),
    );
    Value::Object(responses)
}

fn list_schema(kind: &str, api_version: &str) -> Value {
    json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "items"],
        "properties": {
            "apiVersion": {"type": "string", "const": api_version},
            "kind": {"type": "string", "const": format!("{kind}List")},
            "metadata": {
                "type": "object",
                "properties": {
                    "resourceVersion": {"type": "string"},
                    "continue": {"type": "string"},
                },
            },
            "items": {"type": "array", "items": schema_ref(kind)},
        },
    })
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "A Kubernetes Status object describing a failed request.",
        "required": ["kind", "apiVersion", "status", "message", "reason", "code"],
        "properties": {
            "kind": {"type": "string", "const": "Status"},
            "apiVersion": {"type": "string", "const": "v1"},
            "metadata": {"type": "object"},
            "status": {"type": "string", "const": "Failure"},
            "message": {"type": "string"},
            "reason": {"type": "string"},
            "code": {"type": "integer"},
            "details": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "group": {"type": "string"},
                    "kind": {"type": "string"},
                    "causes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "reason": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    })
}

/// The paths of one kind under its prefix. A kind only the server writes
/// (`events`) gets the read operations only; the server answers writes with 405.
fn kind_paths(kind: ResourceKind, paths: &mut Map<String, Value>) {
    let mut all = Map::new();
    all_kind_paths(kind, &mut all);
    for (path, mut operations) in all {
        let Some(methods) = operations.as_object_mut() else {
            continue;
        };
        if kind.server_written() {
            methods.retain(|method, _| method == "get");
        }
        if kind.namespaced() {
            paths.insert(path, operations);
            continue;
        }
        // A cluster-scoped kind: the same operations without the namespace.
        for operation in methods.values_mut() {
            if let Some(Value::Array(params)) = operation.get_mut("parameters") {
                params.retain(|p| p.get("name") != Some(&json!("namespace")));
            }
        }
        let path = path.replace("/namespaces/{namespace}", "");
        match paths.get_mut(&path).and_then(Value::as_object_mut) {
            Some(existing) => existing.extend(methods.clone()),
            None => {
                paths.insert(path, operations);
            }
        }
    }
}

fn all_kind_paths(kind: ResourceKind, paths: &mut Map<String, Value>) {
    let plural = plural_of(kind);
    let name = kind.as_str();
    let namespace = string_param("namespace", "path", "Namespace");
    let object_name = string_param("name", "path", "Object name");
    let tag = json!([name]);
    let prefix = kind.api_prefix();

    paths.insert(
        format!("{prefix}/{plural}"),
        json!({
            "get": {
                "operationId": format!("list{name}ForAllNamespaces"),
                "tags": tag,
                "summary": format!("List or watch {name} objects in every namespace"),
                "parameters": list_parameters(),
                "responses": list_responses(name),
            },
        }),
    );
    let mut namespaced_list = list_parameters();
    namespaced_list.insert(0, namespace.clone());
    paths.insert(
        format!("{prefix}/namespaces/{{namespace}}/{plural}"),
        json!({
            "get": {
                "operationId": format!("listNamespaced{name}"),
                "tags": tag,
                "summary": format!("List or watch {name} objects in a namespace"),
                "parameters": namespaced_list,
                "responses": list_responses(name),
            },
            "post": {
                "operationId": format!("create{name}"),
                "tags": tag,
                "summary": format!("Create a {name}"),
                "parameters": [namespace],
                "requestBody": body_of(name),
                "responses": object_responses("201", name, &[
                    ("409", "An object with this name exists"),
                    ("413", "Body larger than 8 MiB"),
                    ("415", "Unsupported Content-Type"),
                    ("422", "The object is invalid; details.causes name the fields"),
                ]),
            },
        }),
    );
    let params = json!([namespace, object_name]);
    let write_errors: &[(&str, &str)] = &[
        ("409", "metadata.resourceVersion is stale"),
        ("413", "Body larger than 8 MiB"),
        ("415", "Unsupported Content-Type"),
        (
            "422",
            "The object is invalid; details.causes name the fields",
        ),
    ];
    paths.insert(
        format!("{prefix}/namespaces/{{namespace}}/{plural}/{{name}}"),
        json!({
            "get": {
                "operationId": format!("read{name}"),
                "tags": tag,
                "parameters": params,
                "responses": object_responses("200", name, &[]),
            },
            "put": {
                "operationId": format!("replace{name}"),
                "tags": tag,
                "summary": "Replace the object (status is kept); 409 when metadata.resourceVersion is stale",
                "parameters": params,
                "requestBody": body_of(name),
                "responses": object_responses("200", name, write_errors),
            },
            "patch": {
                "operationId": format!("patch{name}"),
                "tags": tag,
                "summary": "Apply a JSON merge patch (RFC 7386), a JSON patch (RFC 6902), a strategic merge patch (lists replaced whole) or a server-side apply configuration (fieldManager required; 409 names the fields other managers own unless force=true; creates the object when missing)",
                "parameters": params,
                "requestBody": object_patch_body(name),
                "responses": object_responses("200", name, write_errors),
            },
            "delete": {
                "operationId": format!("delete{name}"),
                "tags": tag,
                "summary": "Delete the object (or mark it while it has finalizers)",
                "parameters": params,
                "responses": object_responses("200", name, &[("409", "Precondition failed")]),
            },
        }),
    );
    if !kind.is_flotta() {
        // The core kinds served here have no status subresource.
        return;
    }
    paths.insert(
        format!("{prefix}/namespaces/{{namespace}}/{plural}/{{name}}/status"),
        json!({
            "get": {
                "operationId": format!("read{name}Status"),
                "tags": tag,
                "parameters": params,
                "responses": object_responses("200", name, &[]),
            },
            "put": {
                "operationId": format!("replace{name}Status"),
                "tags": tag,
                "summary": "Replace the object's status",
                "parameters": params,
                "requestBody": body_of(name),
                "responses": object_responses("200", name, write_errors),
            },
            "patch": {
                "operationId": format!("patch{name}Status"),
                "tags": tag,
                "summary": "Apply a JSON merge patch to the object's status",
                "parameters": params,
                "requestBody": merge_patch_body(),
                "responses": object_responses("200", name, write_errors),
            },
        }),
    );
    if kind == ResourceKind::EdgeDeviceSignedRequest {
        paths.insert(
            format!("{API_PREFIX}/namespaces/{{namespace}}/{plural}/{{name}}/approval"),
            json!({
                "post": {
                    "operationId": format!("decide{name}"),
                    "tags": tag,
                    "summary": "Approve or deny the enrolment request: sets spec.approved and the approved or declined condition, signed with the calling token",
                    "parameters": params,
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {
                            "type": "object",
                            "required": ["approved"],
                            "additionalProperties": false,
                            "properties": {
                                "approved": {"type": "boolean"},
                                "message": {"type": "string", "maxLength": 1024},
                            },
                        }}},
                    },
                    "responses": object_responses("200", name, &[
                        ("409", "A concurrent writer kept winning"),
                        ("413", "Body larger than 8 MiB"),
                        ("415", "Unsupported Content-Type"),
                        ("422", "The body is not {approved, message}"),
                    ]),
                },
            }),
        );
    }
}

fn token_paths(paths: &mut Map<String, Value>) {
    let token = json!({
        "type": "object",
        "required": ["id", "role", "description", "createdAt"],
        "properties": {
            "id": {"type": "string"},
            "role": {"type": "string", "enum": ["admin", "operator", "viewer", "metrics"]},
            "description": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "secret": {"type": "string", "description": "Only in the creation response"},
        },
    });
    let mut list = error_responses(&[]);
    list.insert(
        "200".into(),
        json!({"description": "Every token (without secrets)", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"kind": {"type": "string"}, "items": {"type": "array", "items": token}}
        }}}}),
    );
    let mut created = error_responses(&[("422", "Unknown role")]);
    created.insert(
        "201".into(),
        json!({"description": "The new token and its secret (shown once)", "content": {"application/json": {"schema": token}}}),
    );
    let mut deleted = error_responses(&[]);
    deleted.insert("204".into(), json!({"description": "Deleted"}));
    paths.insert(
        format!("{API_PREFIX}/tokens"),
        json!({
            "get": {"operationId": "listTokens", "tags": ["Token"], "summary": "List API tokens (admin)", "responses": list},
            "post": {
                "operationId": "createToken",
                "tags": ["Token"],
                "summary": "Create an API token (admin)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["role"],
                    "additionalProperties": false,
                    "properties": {
                        "role": {"type": "string", "enum": ["admin", "operator", "viewer", "metrics"]},
                        "description": {"type": "string"},
                    },
                }}}},
                "responses": created,
            },
        }),
    );
    paths.insert(
        format!("{API_PREFIX}/tokens/{{id}}"),
        json!({
            "delete": {
                "operationId": "deleteToken",
                "tags": ["Token"],
                "summary": "Delete an API token (admin)",
                "parameters": [string_param("id", "path", "Token id")],
                "responses": deleted,
            },
        }),
    );
}

fn plain_paths(paths: &mut Map<String, Value>) {
    for (path, operation, summary) in [
        ("/healthz", "healthz", "Liveness: the process answers"),
        ("/readyz", "readyz", "Readiness: the store is reachable"),
        ("/metrics", "metrics", "Prometheus metrics (text format)"),
    ] {
        paths.insert(
            path.into(),
            json!({"get": {
                "operationId": operation,
                "tags": ["Server"],
                "summary": summary,
                "security": [],
                "responses": {
                    "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "503": status_response("Not ready"),
                },
            }}),
        );
    }
}

/// Registers `T` in the generator; when schemars names it differently, `name`
/// becomes an alias of its reference.
fn add_schema<T: JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
    aliases: &mut Vec<(String, Value)>,
    name: &str,
) {
    let reference = generator.subschema_for::<T>().to_value();
    if reference.get("$ref") != Some(&json!(format!("{SCHEMAS}{name}"))) {
        aliases.push((name.to_owned(), reference));
    }
}

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub fn openapi_document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.definitions_path = SCHEMAS.into();
        })
        .into_generator();
    let mut aliases = Vec::new();
    add_schema::<EdgeDevice>(&mut generator, &mut aliases, "EdgeDevice");
    add_schema::<EdgeDeviceSet>(&mut generator, &mut aliases, "EdgeDeviceSet");
    add_schema::<EdgeWorkload>(&mut generator, &mut aliases, "EdgeWorkload");
    add_schema::<EdgeDeviceSignedRequest>(&mut generator, &mut aliases, "EdgeDeviceSignedRequest");
    add_schema::<flotta_core::model::EdgeConfig>(&mut generator, &mut aliases, "EdgeConfig");
    add_schema::<flotta_core::model::PlaybookExecution>(
        &mut generator,
        &mut aliases,
        "PlaybookExecution",
    );
    add_schema::<flotta_core::model::Repository>(&mut generator, &mut aliases, "Repository");
    add_schema::<flotta_core::model::ResourceSync>(&mut generator, &mut aliases, "ResourceSync");
    add_schema::<flotta_core::model::Secret>(&mut generator, &mut aliases, "Secret");
    add_schema::<flotta_core::model::ConfigMap>(&mut generator, &mut aliases, "ConfigMap");
    add_schema::<flotta_core::model::Event>(&mut generator, &mut aliases, "Event");
    add_schema::<flotta_core::model::Role>(&mut generator, &mut aliases, "Role");
    add_schema::<flotta_core::model::RoleBinding>(&mut generator, &mut aliases, "RoleBinding");
    add_schema::<flotta_core::model::ClusterRole>(&mut generator, &mut aliases, "ClusterRole");
    add_schema::<flotta_core::model::ClusterRoleBinding>(
        &mut generator,
        &mut aliases,
        "ClusterRoleBinding",
    );
    let mut schemas = generator.take_definitions(true);
    for (name, schema) in aliases {
        schemas.entry(name).or_insert(schema);
    }
    for kind in ResourceKind::ALL {
        schemas.insert(
            format!("{}List", kind.as_str()),
            list_schema(kind.as_str(), kind.api_version()),
        );
    }
    schemas.insert("Status".into(), status_schema());

    let mut paths = Map::new();
    plain_paths(&mut paths);
    for kind in ResourceKind::ALL {
        kind_paths(kind, &mut paths);
    }
    token_paths(&mut paths);
    paths.insert(
        flotta_core::paths::SELF_SUBJECT_ACCESS_REVIEWS.to_owned(),
        json!({"post": {
            "operationId": "createSelfSubjectAccessReview",
            "tags": ["SelfSubjectAccessReview"],
            "summary": "May the caller do this? spec.resourceAttributes or spec.nonResourceAttributes in, status.allowed and status.reason out (kubectl auth can-i)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "201": {"description": "The review with its status", "content": {"application/json": {"schema": {"type": "object"}}}},
                "422": {"description": "The review is invalid", "content": {"application/json": {"schema": {"$ref": format!("{SCHEMAS}Status")}}}},
            },
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "flotta management API",
            "version": API_VERSION,
            "description": "Kubernetes-style REST API over flotta's EdgeDevice, EdgeDeviceSet, EdgeWorkload and EdgeDeviceSignedRequest resources, the Ansible kinds EdgeConfig and PlaybookExecution, the GitOps kinds Repository and ResourceSync, and Kubernetes v1 Secrets, ConfigMaps and Events (read-only, recorded by the server) under /api/v1, Kubernetes RBAC (Roles, RoleBindings, ClusterRoles, ClusterRoleBindings) under /apis/rbac.authorization.k8s.io/v1, and SelfSubjectAccessReviews. Errors are Kubernetes Status objects.",
        },
        "security": [{"bearerToken": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerToken": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_kind_has_its_paths() {
        let document = openapi_document();
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let name = target
                .strip_prefix(SCHEMAS)
                .unwrap_or_else(|| panic!("reference outside components: {target}"));
            assert!(
                document["components"]["schemas"].get(name).is_some(),
                "unresolved reference {target}"
            );
        }
        let events = format!(
            "{}/namespaces/{{namespace}}/events",
            flotta_core::paths::CORE_PREFIX
        );
        assert!(document["paths"][&events].get("get").is_some(), "{events}");
        assert!(document["paths"][&events].get("post").is_none(), "{events}");
        for kind in ResourceKind::ALL
            .into_iter()
            .filter(|k| !k.server_written())
        {
            let plural = plural_of(kind);
            let prefix = kind.api_prefix();
            let path = if kind.namespaced() {
                format!("{prefix}/namespaces/{{namespace}}/{plural}/{{name}}")
            } else {
                format!("{prefix}/{plural}/{{name}}")
            };
            for method in ["get", "put", "patch", "delete"] {
                assert!(
                    document["paths"][&path].get(method).is_some(),
                    "{method} {path}"
                );
            }
        }
    }
}
