//! `apply`: create or update objects from a manifest, one outcome per document.

use flotta_core::manifest::{self, AnyResource, ManifestError};
use serde_json::Value;

use crate::error::{ClientError, ClientResult};
use crate::management::{ManagementClient, ResourceType};

/// How often `apply` reads and replaces an object again when it changed between the
/// read and the write.
const APPLY_ATTEMPTS: u32 = 5;

/// What `apply` did with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyAction {
    /// The object did not exist and was created.
    Created,
    /// The object existed and was replaced by the document.
    Configured,
    /// The object existed with the same labels, annotations and spec: nothing was
    /// sent.
    Unchanged,
}

impl ApplyAction {
    /// `created`, `configured` or `unchanged`, as the command line prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyAction::Created => "created",
            ApplyAction::Configured => "configured",
            ApplyAction::Unchanged => "unchanged",
        }
    }
}

/// The outcome of applying one document of a manifest.
#[derive(Debug)]
pub struct ApplyOutcome {
    /// Zero-based index of the document in the manifest (empty documents count).
    pub index: usize,
    /// The document's `kind`, when it has one.
    pub kind: Option<String>,
    /// The namespace the object went to.
    pub namespace: Option<String>,
    /// The object's name, when it has one.
    pub name: Option<String>,
    /// What happened, or why it failed.
    pub result: ClientResult<ApplyAction>,
}

/// The documents of a YAML (or JSON) stream, each with its index, as
/// [`flotta_core::manifest::documents`] reads them (size and nesting limits
/// included). A stream that cannot be read at all gives one error, at the index of
/// the document that broke it, and no document: nothing of a broken file is
/// applied.
pub fn parse_documents(text: &str) -> Vec<(usize, Result<Value, ClientError>)> {
    match manifest::documents(text) {
        Ok(documents) => documents
            .into_iter()
            .map(|(index, value)| (index, Ok(value)))
            .collect(),
        Err(error) => {
            let index = error.document_index().unwrap_or(0);
            vec![(
                index,
                Err(ClientError::Manifest {
                    index,
                    message: without_document_prefix(index, &error),
                }),
            )]
        }
    }
}

/// The text of a manifest error without its `document N: ` prefix, which the
/// outcome says on its own.
fn without_document_prefix(index: usize, error: &ManifestError) -> String {
    let text = error.to_string();
    let prefix = format!("document {index}: ");
    text.strip_prefix(&prefix).unwrap_or(&text).to_owned()
}

fn text_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Whether applying `document` over `existing` would change nothing the user sets.
fn same_user_fields(document: &Value, existing: &Value) -> bool {
    let empty = Value::Object(Default::default());
    let or_empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => empty.clone(),
        Some(v) => v.clone(),
    };
    [
        "/metadata/labels",
        "/metadata/annotations",
        "/spec",
        "/type",
        "/data",
        "/stringData",
        "/binaryData",
    ]
    .iter()
    .all(|p| or_empty(document.pointer(p)) == or_empty(existing.pointer(p)))
}

impl ManagementClient {
    /// Creates or updates every object of a multi-document YAML manifest, in order.
    /// Objects without a namespace go to `default_namespace`. Every document gets an
    /// outcome; a failed one does not stop the others.
    pub async fn apply(&self, default_namespace: &str, manifest: &str) -> Vec<ApplyOutcome> {
        let mut outcomes = Vec::new();
        for (index, document) in parse_documents(manifest) {
            let outcome = match document {
                Ok(document) => {
                    self.apply_document(index, default_namespace, document)
                        .await
                }
                Err(error) => ApplyOutcome {
                    index,
                    kind: None,
                    namespace: None,
                    name: None,
                    result: Err(error),
                },
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Creates or updates one object given as JSON; `index` only labels the outcome.
    pub async fn apply_document(
        &self,
        index: usize,
        default_namespace: &str,
        document: Value,
    ) -> ApplyOutcome {
        let kind = text_at(&document, "/kind").map(str::to_owned);
        let name = text_at(&document, "/metadata/name").map(str::to_owned);
        let namespace = text_at(&document, "/metadata/namespace")
            .unwrap_or(default_namespace)
            .to_owned();
        let mut outcome = ApplyOutcome {
            index,
            kind: kind.clone(),
            namespace: Some(namespace.clone()),
            name: name.clone(),
            result: Ok(ApplyAction::Unchanged),
        };
        let manifest_error = |message: String| ClientError::Manifest { index, message };
        let Some(resource) = kind.as_deref().and_then(ResourceType::from_kind) else {
            outcome.result = Err(manifest_error(match kind {
                None => "no kind".into(),
                Some(kind) => format!(
                    "unknown kind {kind:?} (expected EdgeDevice, EdgeDeviceSet, EdgeWorkload, EdgeDeviceSignedRequest, Secret, ConfigMap, Role, RoleBinding, ClusterRole or ClusterRoleBinding)"
                ),
            }));
            return outcome;
        };
        if !resource.namespaced() {
            outcome.namespace = None;
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            outcome.result = Err(manifest_error("no metadata.name".into()));
            return outcome;
        };
        // Field types are checked here, so a typo is reported with its path before
        // anything is sent; the document itself is sent as written.
        if let Err(error) = AnyResource::from_value(index, document.clone()) {
            outcome.result = Err(manifest_error(without_document_prefix(index, &error)));
            return outcome;
        }
        outcome.result = async {
            // The replacement is pinned to the resourceVersion it was compared with;
            // when the object changed in between (another writer, or the server's own
            // status update), it is read and compared again.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let existing = match self.get_raw(resource, &namespace, &name).await {
                    Err(error) if error.is_not_found() => {
                        self.create_raw(resource, &namespace, &document).await?;
                        return Ok(ApplyAction::Created);
                    }
                    Err(error) => return Err(error),
                    Ok(existing) => existing,
                };
                // The server keeps a secret's stringData folded into data.
                let mut comparable = document.clone();
                if resource == ResourceType::Secret {
                    flotta_core::secret_data::fold_string_data(&mut comparable);
                }
                if same_user_fields(&comparable, &existing) {
                    return Ok(ApplyAction::Unchanged);
                }
                let mut replacement = document.clone();
                if let (Some(metadata), Some(rv)) = (
                    replacement
                        .get_mut("metadata")
                        .and_then(Value::as_object_mut),
                    existing.pointer("/metadata/resourceVersion").cloned(),
                ) {
                    metadata.insert("resourceVersion".into(), rv);
                }
                match self
                    .replace_raw(resource, &namespace, &name, &replacement)
                    .await
                {
                    Ok(_) => return Ok(ApplyAction::Configured),
                    Err(error) if error.is_conflict() && attempt < APPLY_ATTEMPTS => continue,
                    Err(error) => return Err(error),
                }
            }
        }
        .await;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_stream_index_and_skip_empty_ones() {
        let docs = parse_documents("a: 1\n---\n---\nb: 2\n");
        let indices: Vec<usize> = docs.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, vec![0, 2]);
        assert!(docs.iter().all(|(_, d)| d.is_ok()));
    }

    #[test]
    fn a_broken_document_is_reported_with_its_index_and_nothing_is_read() {
        let docs = parse_documents("a: 1\n---\nb: [\n");
        assert_eq!(docs.len(), 1);
        match &docs[0] {
            (1, Err(ClientError::Manifest { index: 1, message })) => {
                assert!(message.starts_with("invalid YAML"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_limits_of_core_s_reader_hold() {
        let deep = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        match &parse_documents(&deep)[..] {
            [(0, Err(ClientError::Manifest { message, .. }))] => {
                assert!(message.contains("nesting deeper than 64"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let huge = "x".repeat(manifest::MAX_MANIFEST_BYTES + 1);
        match &parse_documents(&huge)[..] {
            [(0, Err(ClientError::Manifest { message, .. }))] => {
                assert!(message.contains("more than the limit"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unchanged_means_same_labels_annotations_and_spec() {
        let doc =
            serde_json::json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"k": 1}});
        let existing = serde_json::json!({"metadata": {"name": "a", "labels": {"x": "1"}, "resourceVersion": "9", "annotations": {}}, "spec": {"k": 1}, "status": {"s": 2}});
        assert!(same_user_fields(&doc, &existing));
        let changed =
            serde_json::json!({"metadata": {"name": "a", "labels": {"x": "2"}}, "spec": {"k": 1}});
        assert!(!same_user_fields(&changed, &existing));
    }
}
