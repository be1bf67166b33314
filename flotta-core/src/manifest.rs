//! Reading manifests: multi-document YAML (documents separated by `---`) or JSON
//! (one object, an array of objects, or several concatenated objects) into
//! [`AnyResource`]s.
//!
//! Guarantees:
//! - a document of an unknown `kind`, or with a field of the wrong type, fails with
//!   the document's index (0-based) and the field's path;
//! - input larger than [`MAX_MANIFEST_BYTES`] is refused before parsing, and
//!   nesting deeper than [`MAX_NESTING_DEPTH`] is refused without recursing into it;
//! - nothing is dropped silently: our own types keep unknown fields, and a field
//!   that an embedded Kubernetes type (pod spec, object metadata) would not keep is
//!   an error naming it ([`ManifestError::UnknownField`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kind::ResourceKind;
use crate::model::{
    ClusterRole, ClusterRoleBinding, ConfigMap, EdgeConfig, EdgeDevice, EdgeDeviceSet,
    EdgeDeviceSignedRequest, EdgeWorkload, ObjectMeta, PlaybookExecution, Repository, Resource,
    ResourceSync, Role, RoleBinding, Secret,
};
use crate::secret_data;
use crate::validation::{FieldError, Validate};

/// Largest manifest accepted, in bytes (4 MiB). Kubernetes refuses objects over
/// 1.5 MiB anyway; the margin allows several documents per file.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Deepest nesting of mappings and sequences accepted. Real resources nest about
/// 15 levels (a pod's volume mounts); the limit stops stack exhaustion.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The input is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The input nests deeper than [`MAX_NESTING_DEPTH`].
    #[error("document {index}: nesting deeper than {limit} levels (at byte {offset})")]
    TooDeep {
        /// Index of the document (0-based).
        index: usize,
        /// Byte offset in the input where the limit was passed.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// The text is not valid YAML.
    #[error("document {index}: invalid YAML: {source}")]
    Yaml {
        /// Index of the document (0-based).
        index: usize,
        /// What the YAML parser reported, with line and column.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The text is not valid JSON.
    #[error("document {index}: invalid JSON: {source}")]
    Json {
        /// Index of the document (0-based).
        index: usize,
        /// What the JSON parser reported, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A document is not a mapping.
    #[error("document {index}: expected a mapping with apiVersion, kind, metadata, spec")]
    NotAnObject {
        /// Index of the document (0-based).
        index: usize,
    },
    /// A document has no `kind` string.
    #[error("document {index}: kind: missing or not a string")]
    MissingKind {
        /// Index of the document (0-based).
        index: usize,
    },
    /// A document's `kind` is not one of ours.
    #[error(
        "document {index}: kind: unknown kind {kind:?}; expected EdgeDevice, EdgeDeviceSet, EdgeWorkload, EdgeDeviceSignedRequest, Secret, ConfigMap, Role, RoleBinding, ClusterRole or ClusterRoleBinding"
    )]
    UnknownKind {
        /// Index of the document (0-based).
        index: usize,
        /// The kind found.
        kind: String,
    },
    /// A field has the wrong type, or a required field is missing.
    #[error("document {index}: {path}: {source}")]
    InvalidField {
        /// Index of the document (0-based).
        index: usize,
        /// Path of the field, e.g. `spec.heartbeat.periodSeconds`.
        path: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
    /// A field that the model cannot keep (inside an embedded Kubernetes type).
    #[error("document {index}: {path}: unknown field")]
    UnknownField {
        /// Index of the document (0-based).
        index: usize,
        /// Path of the field.
        path: String,
    },
    /// A field of a `Role`, `RoleBinding`, `ClusterRole` or `ClusterRoleBinding` is
    /// not valid (an unknown verb, a missing `roleRef`...).
    #[error("document {index}: {path}: {message}")]
    InvalidRbac {
        /// Index of the document (0-based).
        index: usize,
        /// Path of the field, e.g. `rules[0].verbs[1]`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A field of a `Secret` is not valid; the message never quotes the value.
    #[error("document {index}: {path}: {message}")]
    InvalidSecret {
        /// Index of the document (0-based).
        index: usize,
        /// Path of the field, e.g. `data.password`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ManifestError {
    /// Index (0-based) of the offending document, when the error is about one.
    pub fn document_index(&self) -> Option<usize> {
        match self {
            Self::TooLarge { .. } => None,
            Self::TooDeep { index, .. }
            | Self::Yaml { index, .. }
            | Self::Json { index, .. }
            | Self::NotAnObject { index }
            | Self::MissingKind { index }
            | Self::UnknownKind { index, .. }
            | Self::InvalidField { index, .. }
            | Self::InvalidSecret { index, .. }
            | Self::InvalidRbac { index, .. }
            | Self::UnknownField { index, .. } => Some(*index),
        }
    }

    /// Path of the offending field, when the error is about one.
    pub fn field_path(&self) -> Option<&str> {
        match self {
            Self::InvalidField { path, .. }
            | Self::InvalidSecret { path, .. }
            | Self::InvalidRbac { path, .. }
            | Self::UnknownField { path, .. } => Some(path),
            Self::MissingKind { .. } | Self::UnknownKind { .. } => Some("kind"),
            _ => None,
        }
    }
}

/// Any of the resources the API serves: the four flotta kinds, secrets and config
/// maps.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
#[serde(untagged)]
pub enum AnyResource {
    /// An `EdgeDevice`.
    EdgeDevice(Box<EdgeDevice>),
    /// An `EdgeDeviceSet`.
    EdgeDeviceSet(Box<EdgeDeviceSet>),
    /// An `EdgeWorkload`.
    EdgeWorkload(Box<EdgeWorkload>),
    /// An `EdgeDeviceSignedRequest`.
    EdgeDeviceSignedRequest(Box<EdgeDeviceSignedRequest>),
    /// An `EdgeConfig`.
    EdgeConfig(Box<EdgeConfig>),
    /// A `PlaybookExecution`.
    PlaybookExecution(Box<PlaybookExecution>),
    /// A `Repository`.
    Repository(Box<Repository>),
    /// A `ResourceSync`.
    ResourceSync(Box<ResourceSync>),
    /// A Kubernetes `v1` `Secret`.
    Secret(Box<Secret>),
    /// A Kubernetes `v1` `ConfigMap`.
    ConfigMap(Box<ConfigMap>),
    /// A Kubernetes `rbac.authorization.k8s.io/v1` `Role`.
    Role(Box<Role>),
    /// A Kubernetes `rbac.authorization.k8s.io/v1` `RoleBinding`.
    RoleBinding(Box<RoleBinding>),
    /// A Kubernetes `rbac.authorization.k8s.io/v1` `ClusterRole`.
    ClusterRole(Box<ClusterRole>),
    /// A Kubernetes `rbac.authorization.k8s.io/v1` `ClusterRoleBinding`.
    ClusterRoleBinding(Box<ClusterRoleBinding>),
}

impl AnyResource {
    /// The resource's kind, e.g. `EdgeDevice`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EdgeDevice(_) => EdgeDevice::KIND,
            Self::EdgeDeviceSet(_) => EdgeDeviceSet::KIND,
            Self::EdgeWorkload(_) => EdgeWorkload::KIND,
            Self::EdgeDeviceSignedRequest(_) => EdgeDeviceSignedRequest::KIND,
            Self::EdgeConfig(_) => EdgeConfig::KIND,
            Self::PlaybookExecution(_) => PlaybookExecution::KIND,
            Self::Repository(_) => Repository::KIND,
            Self::ResourceSync(_) => ResourceSync::KIND,
            Self::Secret(_) => ResourceKind::Secret.as_str(),
            Self::ConfigMap(_) => ResourceKind::ConfigMap.as_str(),
            Self::Role(_) => ResourceKind::Role.as_str(),
            Self::RoleBinding(_) => ResourceKind::RoleBinding.as_str(),
            Self::ClusterRole(_) => ResourceKind::ClusterRole.as_str(),
            Self::ClusterRoleBinding(_) => ResourceKind::ClusterRoleBinding.as_str(),
        }
    }

    /// The resource's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::EdgeDevice(r) => r.metadata(),
            Self::EdgeDeviceSet(r) => r.metadata(),
            Self::EdgeWorkload(r) => r.metadata(),
            Self::EdgeDeviceSignedRequest(r) => r.metadata(),
            Self::EdgeConfig(r) => r.metadata(),
            Self::PlaybookExecution(r) => r.metadata(),
            Self::Repository(r) => r.metadata(),
            Self::ResourceSync(r) => r.metadata(),
            Self::Secret(r) => &r.metadata,
            Self::ConfigMap(r) => &r.metadata,
            Self::Role(r) => &r.metadata,
            Self::RoleBinding(r) => &r.metadata,
            Self::ClusterRole(r) => &r.metadata,
            Self::ClusterRoleBinding(r) => &r.metadata,
        }
    }

    /// Reads one resource from a JSON value; `index` is only used in errors.
    pub fn from_value(index: usize, value: Value) -> Result<Self, ManifestError> {
        let Value::Object(object) = &value else {
            return Err(ManifestError::NotAnObject { index });
        };
        let Some(Value::String(kind)) = object.get("kind") else {
            return Err(ManifestError::MissingKind { index });
        };
        let resource = match kind.as_str() {
            EdgeDevice::KIND => Self::EdgeDevice(Box::new(typed(index, &value)?)),
            EdgeDeviceSet::KIND => Self::EdgeDeviceSet(Box::new(typed(index, &value)?)),
            EdgeWorkload::KIND => Self::EdgeWorkload(Box::new(typed(index, &value)?)),
            EdgeDeviceSignedRequest::KIND => {
                Self::EdgeDeviceSignedRequest(Box::new(typed(index, &value)?))
            }
            EdgeConfig::KIND => Self::EdgeConfig(Box::new(typed(index, &value)?)),
            PlaybookExecution::KIND => Self::PlaybookExecution(Box::new(typed(index, &value)?)),
            Repository::KIND => Self::Repository(Box::new(typed(index, &value)?)),
            ResourceSync::KIND => Self::ResourceSync(Box::new(typed(index, &value)?)),
            "Secret" => {
                // Checked first: serde's messages may quote a value.
                if let Some(problem) = secret_data::check_secret(&value).into_iter().next() {
                    return Err(ManifestError::InvalidSecret {
                        index,
                        path: problem.path,
                        message: problem.message,
                    });
                }
                let mut folded = value.clone();
                secret_data::fold_string_data(&mut folded);
                let secret: Secret =
                    serde_json::from_value(folded).map_err(|_| ManifestError::InvalidSecret {
                        index,
                        path: String::new(),
                        message: "not a valid Secret".into(),
                    })?;
                // A secret's values are never compared or echoed: its fields were
                // checked above, so nothing can have been dropped.
                return Ok(Self::Secret(Box::new(secret)));
            }
            "ConfigMap" => Self::ConfigMap(Box::new(typed(index, &value)?)),
            "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
                let rbac_kind = ResourceKind::from_kind(kind).unwrap_or(ResourceKind::Role);
                // Checked first, on the JSON: each problem names its field, and a
                // missing `roleRef` is reported as such rather than by serde.
                if let Some(problem) = crate::rbac::validate(rbac_kind, &value).into_iter().next() {
                    return Err(ManifestError::InvalidRbac {
                        index,
                        path: problem.path,
                        message: problem.message,
                    });
                }
                match rbac_kind {
                    ResourceKind::RoleBinding => Self::RoleBinding(Box::new(typed(index, &value)?)),
                    ResourceKind::ClusterRole => Self::ClusterRole(Box::new(typed(index, &value)?)),
                    ResourceKind::ClusterRoleBinding => {
                        Self::ClusterRoleBinding(Box::new(typed(index, &value)?))
                    }
                    _ => Self::Role(Box::new(typed(index, &value)?)),
                }
            }
            other => {
                return Err(ManifestError::UnknownKind {
                    index,
                    kind: other.to_owned(),
                });
            }
        };
        let output = serde_json::to_value(&resource).unwrap_or(Value::Null);
        if let Some(path) = first_dropped_field(&value, &output, "") {
            return Err(ManifestError::UnknownField { index, path });
        }
        Ok(resource)
    }
}

impl Validate for AnyResource {
    fn validate(&self) -> Vec<FieldError> {
        match self {
            Self::EdgeDevice(r) => r.validate(),
            Self::EdgeDeviceSet(r) => r.validate(),
            Self::EdgeWorkload(r) => r.validate(),
            Self::EdgeDeviceSignedRequest(r) => r.validate(),
            Self::EdgeConfig(r) => r.validate(),
            Self::PlaybookExecution(r) => r.validate(),
            Self::Repository(r) => r.validate(),
            Self::ResourceSync(r) => r.validate(),
            Self::Secret(r) => {
                let value = serde_json::to_value(r).unwrap_or(Value::Null);
                secret_data::check_secret(&value)
                    .into_iter()
                    .map(|p| FieldError {
                        path: p.path,
                        message: p.message,
                    })
                    .collect()
            }
            Self::ConfigMap(r) => r
                .data
                .iter()
                .flatten()
                .map(|(k, _)| k)
                .chain(r.binary_data.iter().flatten().map(|(k, _)| k))
                .filter_map(|key| {
                    secret_data::check_key(key).err().map(|message| FieldError {
                        path: format!("data.{key}"),
                        message,
                    })
                })
                .collect(),
            Self::Role(_)
            | Self::RoleBinding(_)
            | Self::ClusterRole(_)
            | Self::ClusterRoleBinding(_) => {
                let kind = ResourceKind::from_kind(self.kind()).unwrap_or(ResourceKind::Role);
                crate::rbac::validate(kind, &serde_json::to_value(self).unwrap_or(Value::Null))
            }
        }
    }
}

fn typed<T: for<'de> Deserialize<'de>>(index: usize, value: &Value) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| ManifestError::InvalidField {
        index,
        path: e.path().to_string(),
        source: e.into_inner(),
    })
}

/// Path of the first member present (and not `null`) in `input` but absent from
/// `output`. Values that changed form (e.g. a time normalised to whole seconds)
/// are not reported: only members that vanished.
fn first_dropped_field(input: &Value, output: &Value, path: &str) -> Option<String> {
    match (input, output) {
        (Value::Object(input), Value::Object(output)) => {
            for (key, value) in input {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match output.get(key) {
                    None if !value.is_null() => return Some(child),
                    None => {}
                    Some(out) => {
                        if let Some(found) = first_dropped_field(value, out, &child) {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(input), Value::Array(output)) => input
            .iter()
            .zip(output)
            .enumerate()
            .find_map(|(i, (a, b))| first_dropped_field(a, b, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Checks nesting depth by scanning brackets and indentation-free structure
/// cheaply: counts `[`/`{` nesting (flow style) and indentation levels (block
/// style) without building anything.
fn check_depth(index: usize, text: &str, base_offset: usize) -> Result<(), ManifestError> {
    let too_deep = |offset: usize| ManifestError::TooDeep {
        index,
        offset: base_offset + offset,
        limit: MAX_NESTING_DEPTH,
    };
    // Flow collections: bracket depth, ignoring quoted strings.
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (offset, byte) in text.bytes().enumerate() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if byte == b'\\' && q == b'"' {
                escaped = true;
            } else if byte == q {
                quote = None;
            }
            continue;
        }
        match byte {
            b'"' | b'\'' => quote = Some(byte),
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(too_deep(offset));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => {}
            _ => {}
        }
    }
    // Block collections: distinct indentation levels on the current path.
    let mut indents: Vec<usize> = Vec::new();
    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let content = line.trim_start_matches([' ', '-']);
        let indent = line.len() - content.len();
        let significant = !content.trim().is_empty() && !content.trim_start().starts_with('#');
        if significant {
            while indents.last().is_some_and(|&last| last >= indent) {
                indents.pop();
            }
            indents.push(indent);
            if indents.len() > MAX_NESTING_DEPTH {
                return Err(too_deep(offset));
            }
        }
        offset += line.len();
    }
    Ok(())
}

/// Reads every resource of a manifest (YAML or JSON).
///
/// Empty YAML documents (e.g. a leading `---`) are skipped but still counted in
/// document indexes.
pub fn parse_manifests(input: &str) -> Result<Vec<AnyResource>, ManifestError> {
    documents(input)?
        .into_iter()
        .map(|(index, value)| AnyResource::from_value(index, value))
        .collect()
}

/// Reads the documents of a manifest (YAML or JSON) as JSON values, each with its
/// index, before any is read as a resource: for callers that handle each document
/// on its own (e.g. `apply`, which sends the document as written, or a check that
/// lists every document's problems). The size and nesting limits hold, and the
/// whole stream must be well-formed: a syntax error in any document fails it all.
/// Empty YAML documents are skipped but still counted in the indexes.
pub fn documents(input: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    if input.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            size: input.len(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let documents = if input.trim_start().starts_with(['{', '[']) {
        json_documents(input)?
    } else {
        yaml_documents(input)?
    };
    Ok(documents
        .into_iter()
        .enumerate()
        .filter(|(_, value)| !value.is_null())
        .collect())
}

fn json_documents(input: &str) -> Result<Vec<Value>, ManifestError> {
    check_depth(0, input, 0)?;
    let mut documents = Vec::new();
    for (index, value) in serde_json::Deserializer::from_str(input)
        .into_iter::<Value>()
        .enumerate()
    {
        match value.map_err(|source| ManifestError::Json { index, source })? {
            Value::Array(items) => documents.extend(items),
            other => documents.push(other),
        }
    }
    Ok(documents)
}

fn yaml_documents(input: &str) -> Result<Vec<Value>, ManifestError> {
    // Depth is checked per document before the YAML parser sees it.
    let mut offset = 0usize;
    for (index, chunk) in split_yaml_documents(input).into_iter().enumerate() {
        check_depth(index, chunk, offset)?;
        offset += chunk.len();
    }
    let mut documents = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(input).enumerate() {
        let value =
            Value::deserialize(document).map_err(|source| ManifestError::Yaml { index, source })?;
        documents.push(value);
    }
    Ok(documents)
}

/// Splits YAML text at `---` document markers (start of a line).
fn split_yaml_documents(input: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0usize;
    let mut offset = 0usize;
    for line in input.split_inclusive('\n') {
        let marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        if marker && offset > start {
            documents.push(&input[start..offset]);
            start = offset;
        }
        offset += line.len();
    }
    documents.push(&input[start..]);
    documents
}

/// Writes resources as a multi-document YAML manifest.
pub fn to_yaml(resources: &[AnyResource]) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for resource in resources {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(resource)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_document_markers_only() {
        let text = "a: 1\n---\nb: '---'\n--- \nc: 3\n";
        assert_eq!(
            split_yaml_documents(text),
            ["a: 1\n", "---\nb: '---'\n", "--- \nc: 3\n"]
        );
    }

    #[test]
    fn dropped_field_path_names_the_member() {
        let input = serde_json::json!({"spec": {"a": [{"x": 1, "y": 2}]}, "n": null});
        let output = serde_json::json!({"spec": {"a": [{"x": 1}]}});
        assert_eq!(
            first_dropped_field(&input, &output, "").as_deref(),
            Some("spec.a[0].y")
        );
    }
}
