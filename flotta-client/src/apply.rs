//! `apply`: create or update objects from a manifest, one outcome per document.

use flotta_core::manifest::{self, AnyResource, ManifestError};
use serde_json::Value;

use crate::error::{ClientError, ClientResult};
use crate::management::{ManagementClient, ResourceType, WriteParams};

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
    /// Sent as a server-side apply: the server created or updated the object, or
    /// found nothing to change, for the field manager.
    ServerSideApplied,
}

impl ApplyAction {
    /// `created`, `configured` or `unchanged`, as the command line prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyAction::Created => "created",
            ApplyAction::Configured => "configured",
            ApplyAction::Unchanged => "unchanged",
            ApplyAction::ServerSideApplied => "serverside-applied",
        }
    }
}

/// Whether `apply` (and `prune`) write, or only say what they would write, as
/// kubectl's `--dry-run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DryRun {
    /// The writes are made.
    #[default]
    None,
    /// Nothing that changes anything is sent: the objects are checked offline and
    /// read, and the outcome says what a write would do.
    Client,
    /// Every write is sent with `dryRun=All`: the server checks and admits it as it
    /// would, and stores nothing.
    Server,
}

impl DryRun {
    /// The options of a write made in this mode (`None` for [`DryRun::Client`],
    /// which makes no write).
    pub fn write_params(self) -> Option<WriteParams> {
        match self {
            DryRun::None => Some(WriteParams::default()),
            DryRun::Client => None,
            DryRun::Server => Some(WriteParams::dry_run()),
        }
    }
}

/// The options of a server-side apply: who owns the fields it sets, whether it
/// takes fields other managers own, whether it is only tried.
///
/// ```
/// use flotta_client::ServerSideApply;
///
/// let options = ServerSideApply::new("rollout-bot").force();
/// assert_eq!(options.field_manager, "rollout-bot");
/// assert!(options.force && !options.dry_run);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerSideApply {
    /// The field manager (`fieldManager`): the name the server records as the owner
    /// of every field the applied object sets.
    pub field_manager: String,
    /// Take over fields another manager owns with a different value (`force=true`)
    /// instead of failing with a conflict that names them.
    pub force: bool,
    /// Send with `dryRun=All`: checked and answered, nothing stored.
    pub dry_run: bool,
}

impl ServerSideApply {
    /// A server-side apply as `field_manager`, without force, stored.
    pub fn new(field_manager: impl Into<String>) -> Self {
        ServerSideApply {
            field_manager: field_manager.into(),
            force: false,
            dry_run: false,
        }
    }

    /// Takes over conflicting fields.
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    /// Only tries the apply (`dryRun=All`).
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![
            ("fieldManager", self.field_manager.clone()),
            ("force", self.force.to_string()),
        ];
        if self.dry_run {
            query.push(("dryRun", "All".into()));
        }
        query
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

impl ApplyOutcome {
    /// The outcome of document `index` that could not be read at all (no kind,
    /// namespace or name to tell).
    pub fn unread(index: usize, error: ClientError) -> Self {
        ApplyOutcome {
            index,
            kind: None,
            namespace: None,
            name: None,
            result: Err(error),
        }
    }
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

/// What a manifest document names: its resource type, namespace and name, checked
/// against the typed model, with the outcome to fill in; the failed outcome when
/// the document cannot be applied.
fn identify(
    index: usize,
    default_namespace: &str,
    document: &Value,
) -> Result<(ResourceType, String, String, ApplyOutcome), Box<ApplyOutcome>> {
    let kind = text_at(document, "/kind").map(str::to_owned);
    let name = text_at(document, "/metadata/name").map(str::to_owned);
    let namespace = text_at(document, "/metadata/namespace")
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
        return Err(Box::new(outcome));
    };
    if !resource.namespaced() {
        outcome.namespace = None;
    }
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        outcome.result = Err(manifest_error("no metadata.name".into()));
        return Err(Box::new(outcome));
    };
    // Field types are checked here, so a typo is reported with its path before
    // anything is sent; the document itself is sent as written.
    if let Err(error) = AnyResource::from_value(index, document.clone()) {
        outcome.result = Err(manifest_error(without_document_prefix(index, &error)));
        return Err(Box::new(outcome));
    }
    Ok((resource, namespace, name, outcome))
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
        self.apply_with(default_namespace, manifest, DryRun::None)
            .await
    }

    /// [`apply`](Self::apply), or with a [`DryRun`] what it would do.
    pub async fn apply_with(
        &self,
        default_namespace: &str,
        manifest: &str,
        dry_run: DryRun,
    ) -> Vec<ApplyOutcome> {
        let mut outcomes = Vec::new();
        for (index, document) in parse_documents(manifest) {
            let outcome = match document {
                Ok(document) => {
                    self.apply_document_with(index, default_namespace, document, dry_run)
                        .await
                }
                Err(error) => ApplyOutcome::unread(index, error),
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
        self.apply_document_with(index, default_namespace, document, DryRun::None)
            .await
    }

    /// [`apply_document`](Self::apply_document), or with a [`DryRun`] what it would
    /// do: the outcome's action is the one the write would have.
    pub async fn apply_document_with(
        &self,
        index: usize,
        default_namespace: &str,
        document: Value,
        dry_run: DryRun,
    ) -> ApplyOutcome {
        let (resource, namespace, name, mut outcome) =
            match identify(index, default_namespace, &document) {
                Ok(found) => found,
                Err(outcome) => return *outcome,
            };
        outcome.result = async {
            // The replacement is pinned to the resourceVersion it was compared with;
            // when the object changed in between (another writer, or the server's own
            // status update), it is read and compared again.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let existing = match self.get_raw(resource, &namespace, &name).await {
                    Err(error) if error.is_not_found() => {
                        if let Some(params) = dry_run.write_params() {
                            self.create_raw_with(resource, &namespace, &document, params)
                                .await?;
                        }
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
                let Some(params) = dry_run.write_params() else {
                    return Ok(ApplyAction::Configured);
                };
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
                    .replace_raw_with(resource, &namespace, &name, &replacement, params)
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

    /// Sends every object of a multi-document YAML manifest as a server-side apply,
    /// in order ([`server_side_apply_document`](Self::server_side_apply_document));
    /// objects without a namespace go to `default_namespace`. Every document gets an
    /// outcome; a failed one does not stop the others.
    pub async fn server_side_apply(
        &self,
        default_namespace: &str,
        manifest: &str,
        options: &ServerSideApply,
    ) -> Vec<ApplyOutcome> {
        let mut outcomes = Vec::new();
        for (index, document) in parse_documents(manifest) {
            outcomes.push(match document {
                Ok(document) => {
                    self.server_side_apply_document(index, default_namespace, document, options)
                        .await
                }
                Err(error) => ApplyOutcome::unread(index, error),
            });
        }
        outcomes
    }

    /// Sends one document as a server-side apply (`kubectl apply --server-side`):
    /// the server creates or updates the object and records `options.field_manager`
    /// as the owner of every field the document sets; a field another manager owns
    /// with a different value fails the document with a conflict naming it
    /// ([`ClientError::is_conflict`]) unless [`ServerSideApply::force`]. The document
    /// is checked against the typed model first, as [`apply`](Self::apply) does.
    pub async fn server_side_apply_document(
        &self,
        index: usize,
        default_namespace: &str,
        document: Value,
        options: &ServerSideApply,
    ) -> ApplyOutcome {
        let (resource, namespace, name, mut outcome) =
            match identify(index, default_namespace, &document) {
                Ok(found) => found,
                Err(outcome) => return *outcome,
            };
        outcome.result = self
            .server_side_apply_raw(resource, &namespace, &name, &document, options)
            .await
            .map(|_| ApplyAction::ServerSideApplied);
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
