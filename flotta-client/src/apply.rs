//! `apply`: create or update objects from a manifest, one outcome per document.

use flotta_core::manifest::AnyResource;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ClientError, ClientResult};
use crate::management::{ManagementClient, ResourceType};

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

/// One document of a YAML (or JSON) stream: its index and its value, or why it
/// could not be read.
pub fn parse_documents(text: &str) -> Vec<(usize, Result<Value, ClientError>)> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(value) => documents.push((index, Ok(value))),
            Err(e) => {
                documents.push((
                    index,
                    Err(ClientError::Manifest {
                        index,
                        message: e.to_string(),
                    }),
                ));
                // After a syntax error the rest of the stream cannot be trusted.
                break;
            }
        }
    }
    documents
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
    ["/metadata/labels", "/metadata/annotations", "/spec"]
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
        mut document: Value,
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
                    "unknown kind {kind:?} (expected EdgeDevice, EdgeDeviceSet, EdgeWorkload or EdgeDeviceSignedRequest)"
                ),
            }));
            return outcome;
        };
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            outcome.result = Err(manifest_error("no metadata.name".into()));
            return outcome;
        };
        // Field types are checked here, so a typo is reported with its path before
        // anything is sent; the document itself is sent as written.
        if let Err(error) = AnyResource::from_value(index, document.clone()) {
            let text = error.to_string();
            let prefix = format!("document {index}: ");
            let message = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
            outcome.result = Err(manifest_error(message));
            return outcome;
        }
        outcome.result = async {
            match self.get_raw(resource, &namespace, &name).await {
                Err(error) if error.is_not_found() => {
                    self.create_raw(resource, &namespace, &document).await?;
                    Ok(ApplyAction::Created)
                }
                Err(error) => Err(error),
                Ok(existing) => {
                    if same_user_fields(&document, &existing) {
                        return Ok(ApplyAction::Unchanged);
                    }
                    if let (Some(metadata), Some(rv)) = (
                        document.get_mut("metadata").and_then(Value::as_object_mut),
                        existing.pointer("/metadata/resourceVersion").cloned(),
                    ) {
                        metadata.insert("resourceVersion".into(), rv);
                    }
                    self.replace_raw(resource, &namespace, &name, &document)
                        .await?;
                    Ok(ApplyAction::Configured)
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
    fn a_broken_document_is_reported_with_its_index() {
        let docs = parse_documents("a: 1\n---\nb: [\n");
        assert_eq!(docs.len(), 2);
        match &docs[1] {
            (1, Err(ClientError::Manifest { index: 1, .. })) => {}
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
