//! What the management API does to resource bodies before the store sees them:
//! decoding JSON or YAML, checking them against the typed model, field selectors
//! over stored JSON (patches: [`super::patch`]).

use std::borrow::Cow;

use axum::http::{HeaderMap, header};
use flotta_core::model::{
    ClusterRole, ClusterRoleBinding, ConfigMap, EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest,
    EdgeWorkload, Repository, ResourceSync, Role, RoleBinding,
};
use flotta_core::secret_data;
use flotta_core::selector::{
    FieldKind, FieldSelector, FieldSpec, FieldValue, Fields, validate_label_key,
    validate_label_value,
};
use flotta_core::strict_json;
use flotta_core::validation::{self, Validate};
use serde_json::{Map, Value};

use super::status::{ApiError, StatusCause};
use crate::store::ResourceKind;

/// The body formats a request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    Json,
    Yaml,
    MergePatch,
    JsonPatch,
    StrategicMergePatch,
    /// `application/apply-patch+yaml`: a server-side apply configuration.
    Apply,
}

impl BodyFormat {
    /// Whether the format is one of the patch formats, which only PATCH accepts.
    pub(crate) fn is_patch(self) -> bool {
        matches!(
            self,
            BodyFormat::MergePatch
                | BodyFormat::JsonPatch
                | BodyFormat::StrategicMergePatch
                | BodyFormat::Apply
        )
    }
}

/// Reads the `Content-Type` of a request; a missing one means JSON.
pub(crate) fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::unsupported_media_type("Content-Type is not ASCII"))?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "" => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Ok(BodyFormat::Yaml)
        }
        "application/merge-patch+json" => Ok(BodyFormat::MergePatch),
        "application/json-patch+json" => Ok(BodyFormat::JsonPatch),
        "application/strategic-merge-patch+json" => Ok(BodyFormat::StrategicMergePatch),
        "application/apply-patch+yaml" => Ok(BodyFormat::Apply),
        other => Err(ApiError::unsupported_media_type(format!(
            "unsupported Content-Type {other:?}: use application/json, application/yaml or (for PATCH) \
             application/merge-patch+json, application/json-patch+json, \
             application/strategic-merge-patch+json or application/apply-patch+yaml"
        ))),
    }
}

/// Decodes a request body as JSON or YAML into a JSON value.
pub(crate) fn decode_body(format: BodyFormat, bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match format {
        // Strict first: serde_json alone would keep the last of two equal keys.
        BodyFormat::Json
        | BodyFormat::MergePatch
        | BodyFormat::JsonPatch
        | BodyFormat::StrategicMergePatch => strict_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        BodyFormat::Yaml | BodyFormat::Apply => serde_yaml_ng::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}"))),
    }
}

/// Checks that `name` is a DNS-1123 subdomain (what Kubernetes requires of names).
pub(crate) fn check_object_name(name: &str) -> Result<(), String> {
    validation::dns1123_subdomain(name)
}

/// Checks a name of `kind`: RBAC objects take any path segment name, as in
/// Kubernetes (`flotta:admin`, `system:viewers`); every other kind a DNS-1123
/// subdomain.
pub(crate) fn check_kind_name(kind: ResourceKind, name: &str) -> Result<(), String> {
    if !kind.is_rbac() {
        return check_object_name(name);
    }
    if name.is_empty() || name.len() > 253 {
        Err("must be 1 to 253 characters".into())
    } else if name == "." || name == ".." {
        Err(format!("may not be {name:?}"))
    } else if name.contains(['/', '%']) {
        Err("may not contain '/' or '%'".into())
    } else {
        Ok(())
    }
}

/// Checks that `namespace` is a DNS-1123 label.
pub(crate) fn check_namespace_name(namespace: &str) -> Result<(), String> {
    validation::dns1123_label(namespace)
}

/// Where an incoming object is going: its kind, namespace and (when the path names
/// it) its name.
pub(crate) struct Target<'a> {
    pub kind: ResourceKind,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
}

/// Checks an incoming object against its target and the typed model, fills in
/// `apiVersion`, `kind` and `metadata.namespace`, and returns its name.
///
/// Every problem found becomes a cause naming the field (422 `Invalid`).
pub(crate) fn admit(target: &Target<'_>, body: &mut Value) -> Result<String, ApiError> {
    let kind = target.kind;
    let shown_name = target.name.unwrap_or_default();
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::invalid(
            kind,
            shown_name,
            vec![StatusCause::invalid("", "the body must be a JSON object")],
        ));
    };
    let mut causes = Vec::new();
    let api_version = kind.info().api_version();
    match object.get("apiVersion") {
        None | Some(Value::Null) => {
            object.insert("apiVersion".into(), Value::String(api_version.into()));
        }
        Some(Value::String(v)) if v == api_version => {}
        Some(other) => causes.push(StatusCause::invalid(
            "apiVersion",
            format!("must be {api_version:?}, not {other}"),
        )),
    }
    match object.get("kind") {
        None | Some(Value::Null) => {
            object.insert("kind".into(), Value::String(kind.as_str().into()));
        }
        Some(Value::String(k)) if k == kind.as_str() => {}
        Some(other) => causes.push(StatusCause::invalid(
            "kind",
            format!("must be {:?} for this path, not {other}", kind.as_str()),
        )),
    }
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    let Some(metadata) = metadata.as_object_mut() else {
        return Err(ApiError::invalid(
            kind,
            shown_name,
            vec![StatusCause::invalid("metadata", "must be an object")],
        ));
    };
    let name = match (metadata.get("name"), target.name) {
        (Some(Value::String(body_name)), Some(path_name)) if body_name != path_name => {
            causes.push(StatusCause::invalid(
                "metadata.name",
                format!("{body_name:?} does not match the name in the path, {path_name:?}"),
            ));
            path_name.to_owned()
        }
        (Some(Value::String(body_name)), _) => body_name.clone(),
        (None | Some(Value::Null), Some(path_name)) => {
            metadata.insert("name".into(), Value::String(path_name.into()));
            path_name.to_owned()
        }
        (None | Some(Value::Null), None) => {
            causes.push(StatusCause::required("metadata.name"));
            String::new()
        }
        (Some(other), _) => {
            causes.push(StatusCause::invalid(
                "metadata.name",
                format!("must be a string, not {other}"),
            ));
            String::new()
        }
    };
    if !name.is_empty()
        && let Err(problem) = check_kind_name(kind, &name)
    {
        causes.push(StatusCause::invalid("metadata.name", problem));
    }
    match metadata.get("namespace") {
        None | Some(Value::Null) if target.namespace.is_empty() => {}
        None | Some(Value::Null) => {
            metadata.insert("namespace".into(), Value::String(target.namespace.into()));
        }
        Some(Value::String(ns)) if ns == target.namespace => {}
        Some(Value::String(ns)) if target.namespace.is_empty() => {
            causes.push(StatusCause::invalid(
                "metadata.namespace",
                format!(
                    "{} is cluster-scoped: no namespace, not {ns:?}",
                    kind.as_str()
                ),
            ))
        }
        Some(other) => causes.push(StatusCause::invalid(
            "metadata.namespace",
            format!(
                "{other} does not match the namespace in the path, {:?}",
                target.namespace
            ),
        )),
    }
    if let Some(Value::Object(labels)) = metadata.get("labels") {
        for (key, value) in labels {
            let field = format!("metadata.labels.{key}");
            if let Err(problem) = validate_label_key(key) {
                causes.push(StatusCause::invalid(
                    &field,
                    format!("invalid key: {problem}"),
                ));
            }
            match value {
                Value::String(v) => {
                    if let Err(problem) = validate_label_value(v) {
                        causes.push(StatusCause::invalid(
                            &field,
                            format!("invalid value: {problem}"),
                        ));
                    }
                }
                other => causes.push(StatusCause::invalid(
                    &field,
                    format!("must be a string, not {other}"),
                )),
            }
        }
    }
    if let Some(Value::String(rv)) = metadata.get("resourceVersion")
        && rv.parse::<u64>().is_err()
    {
        causes.push(StatusCause::invalid(
            "metadata.resourceVersion",
            format!("{rv:?} is not a resource version issued by this server"),
        ));
    }
    if causes.is_empty()
        && let Err(found) = check_typed(kind, body)
    {
        causes.extend(found);
    }
    if causes.is_empty() && kind == ResourceKind::Secret {
        secret_data::fold_string_data(body);
    }
    if causes.is_empty() {
        Ok(name)
    } else {
        Err(ApiError::invalid(
            kind,
            if name.is_empty() { shown_name } else { &name },
            causes,
        ))
    }
}

/// Deserializes the object into its model type and validates it; every cause
/// names its field.
fn check_typed(kind: ResourceKind, body: &Value) -> Result<(), Vec<StatusCause>> {
    fn parse<T: serde::de::DeserializeOwned + Validate>(
        body: &Value,
    ) -> Result<(), Vec<StatusCause>> {
        let object = serde_path_to_error::deserialize::<_, T>(body.clone()).map_err(|error| {
            let path = error.path().to_string();
            let field = if path == "." { String::new() } else { path };
            vec![StatusCause::invalid(field, error.into_inner().to_string())]
        })?;
        let problems = object.validate();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems
                .into_iter()
                .map(|problem| StatusCause::invalid(problem.path, problem.message))
                .collect())
        }
    }
    match kind {
        ResourceKind::EdgeDevice => parse::<EdgeDevice>(body),
        ResourceKind::EdgeDeviceSet => parse::<EdgeDeviceSet>(body),
        ResourceKind::EdgeWorkload => parse::<EdgeWorkload>(body),
        ResourceKind::EdgeDeviceSignedRequest => parse::<EdgeDeviceSignedRequest>(body),
        ResourceKind::EdgeConfig => parse::<flotta_core::model::EdgeConfig>(body),
        ResourceKind::PlaybookExecution => parse::<flotta_core::model::PlaybookExecution>(body),
        ResourceKind::Repository => parse::<Repository>(body),
        ResourceKind::ResourceSync => parse::<ResourceSync>(body),
        // The API never admits events: the server records them (see crate::events).
        ResourceKind::Event => Err(vec![StatusCause::invalid(
            "",
            "events are recorded by the server and cannot be written",
        )]),
        // Checked without serde, whose messages may quote the values.
        ResourceKind::Secret => {
            let problems = secret_data::check_secret(body);
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems
                    .into_iter()
                    .map(|problem| StatusCause::invalid(problem.path, problem.message))
                    .collect())
            }
        }
        ResourceKind::Role
        | ResourceKind::RoleBinding
        | ResourceKind::ClusterRole
        | ResourceKind::ClusterRoleBinding => {
            let problems = flotta_core::rbac::validate(kind, body);
            if !problems.is_empty() {
                return Err(problems
                    .into_iter()
                    .map(|problem| StatusCause::invalid(problem.path, problem.message))
                    .collect());
            }
            let typed = match kind {
                ResourceKind::Role => {
                    serde_path_to_error::deserialize::<_, Role>(body.clone()).map(|_| ())
                }
                ResourceKind::RoleBinding => {
                    serde_path_to_error::deserialize::<_, RoleBinding>(body.clone()).map(|_| ())
                }
                ResourceKind::ClusterRole => {
                    serde_path_to_error::deserialize::<_, ClusterRole>(body.clone()).map(|_| ())
                }
                _ => serde_path_to_error::deserialize::<_, ClusterRoleBinding>(body.clone())
                    .map(|_| ()),
            };
            typed.map_err(|error| {
                vec![StatusCause::invalid(
                    error.path().to_string(),
                    error.into_inner().to_string(),
                )]
            })
        }
        ResourceKind::ConfigMap => serde_path_to_error::deserialize::<_, ConfigMap>(body.clone())
            .map(|_| ())
            .map_err(|error| {
                vec![StatusCause::invalid(
                    error.path().to_string(),
                    error.into_inner().to_string(),
                )]
            }),
    }
}

/// The expected resource version a body carries in `metadata.resourceVersion`.
pub(crate) fn expected_resource_version(body: &Value) -> Option<u64> {
    body.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
}

/// The fields a `fieldSelector` may name for `kind`: core's whitelist, the one the
/// typed model's selectors use too.
pub(crate) fn selectable_fields(kind: ResourceKind) -> &'static [FieldSpec] {
    kind.fields()
}

/// A stored body seen through the field-selector whitelist of its kind.
pub(crate) struct SelectableObject<'a> {
    pub kind: ResourceKind,
    pub body: &'a Value,
}

impl Fields for SelectableObject<'_> {
    // Matching only reads values; parsing uses `selectable_fields(kind)`.
    const FIELDS: &'static [FieldSpec] = &[];

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        let spec = selectable_fields(self.kind)
            .iter()
            .find(|spec| spec.path == path)?;
        let mut value = self.body;
        for segment in path.split('.') {
            value = value.get(segment)?;
        }
        match spec.kind {
            FieldKind::String => value.as_str().map(|s| FieldValue::String(Cow::Borrowed(s))),
            FieldKind::Number => value.as_i64().map(FieldValue::Number),
            FieldKind::Timestamp => value
                .as_str()
                .and_then(flotta_core::timestamp::parse_rfc3339)
                .map(FieldValue::Timestamp),
            FieldKind::Boolean => value.as_bool().map(FieldValue::Boolean),
            // Kinds added to flotta-core later are not selectable here yet.
            _ => None,
        }
    }
}

/// Parses a `fieldSelector` for `kind`; an unknown field lists the valid ones.
pub(crate) fn parse_field_selector(
    kind: ResourceKind,
    text: &str,
) -> Result<FieldSelector, ApiError> {
    FieldSelector::parse(text, selectable_fields(kind))
        .map_err(|e| ApiError::bad_request(format!("invalid fieldSelector: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotta_core::model::API_VERSION;
    use serde_json::json;

    #[test]
    fn admit_fills_defaults_and_names_bad_fields() {
        let target = Target {
            kind: ResourceKind::EdgeDeviceSignedRequest,
            namespace: "fleet",
            name: None,
        };
        let mut ok = json!({"metadata": {"name": "dev-1"}, "spec": {"targetNamespace": "fleet"}});
        assert_eq!(admit(&target, &mut ok).expect("admitted"), "dev-1");
        assert_eq!(ok["apiVersion"], API_VERSION);
        assert_eq!(ok["kind"], "EdgeDeviceSignedRequest");
        assert_eq!(ok["metadata"]["namespace"], "fleet");

        let mut bad_type = json!({"metadata": {"name": "dev-1"}, "spec": {"targetNamespace": "fleet", "approved": "yes"}});
        let err = admit(&target, &mut bad_type).expect_err("approved is a bool");
        assert_eq!(err.causes[0].field, "spec.approved");

        let mut bad_name = json!({"metadata": {"name": "Dev_1", "labels": {"a": "b c"}}, "spec": {"targetNamespace": "fleet"}});
        let err = admit(&target, &mut bad_name).expect_err("bad name and label");
        let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "metadata.labels.a"]);

        let mut wrong_kind = json!({"kind": "EdgeDevice", "metadata": {"name": "d"}, "spec": {}});
        let err = admit(&target, &mut wrong_kind).expect_err("kind mismatch");
        assert_eq!(err.causes[0].field, "kind");
    }

    #[test]
    fn field_selectors_read_stored_json() {
        let body =
            json!({"metadata": {"name": "d1"}, "spec": {"approved": true, "targetNamespace": "a"}});
        let object = SelectableObject {
            kind: ResourceKind::EdgeDeviceSignedRequest,
            body: &body,
        };
        let approved =
            parse_field_selector(ResourceKind::EdgeDeviceSignedRequest, "spec.approved=true")
                .expect("parses");
        assert!(approved.matches(&object));
        let other = parse_field_selector(
            ResourceKind::EdgeDeviceSignedRequest,
            "spec.targetNamespace!=a",
        )
        .expect("parses");
        assert!(!other.matches(&object));
        let err = parse_field_selector(ResourceKind::EdgeDeviceSet, "spec.approved=true")
            .expect_err("not a device-set field");
        assert!(err.message.contains("metadata.name"), "{}", err.message);
    }

    #[test]
    fn names_follow_dns_rules() {
        assert!(check_object_name("edge-01.fleet").is_ok());
        assert!(check_object_name("Edge").is_err());
        assert!(check_object_name("-a").is_err());
        assert!(check_object_name("a..b").is_err());
        assert!(check_namespace_name("a.b").is_err());
        assert!(check_namespace_name(&"a".repeat(64)).is_err());
    }
}
