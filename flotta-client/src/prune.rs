//! `prune`: after an apply, delete the objects a label selector marks as managed by
//! that apply which its input no longer holds, as `kubectl apply --prune -l`.

use std::collections::{BTreeMap, BTreeSet};

use flotta_core::selector::Selector;
use serde_json::Value;

use crate::apply::{ApplyOutcome, DryRun};
use crate::error::ClientResult;
use crate::management::{ListParams, ManagementClient, ResourceType};

/// Which object: kind, namespace (none for a cluster-scoped kind) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The kind.
    pub kind: ResourceType,
    /// The namespace, `None` for a cluster-scoped kind.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ApplyOutcome {
    /// The object this outcome applied, when it succeeded.
    pub fn applied(&self) -> Option<ObjectKey> {
        self.result.as_ref().ok()?;
        let kind = ResourceType::from_kind(self.kind.as_deref()?)?;
        Some(ObjectKey {
            kind,
            namespace: self.namespace.clone().filter(|_| kind.namespaced()),
            name: self.name.clone()?,
        })
    }
}

/// What `prune` did with one object.
#[derive(Debug)]
pub struct PruneOutcome {
    /// The object.
    pub object: ObjectKey,
    /// Deleted (or, in a dry run, would be), or why not.
    pub result: ClientResult<()>,
}

/// The kinds and namespaces a prune looks in: the kinds of the applied objects,
/// in every namespace one of them went to (as kubectl visits the namespaces of
/// its input).
fn scope(applied: &BTreeSet<ObjectKey>) -> Vec<(ResourceType, Option<String>)> {
    let kinds: BTreeSet<ResourceType> = applied.iter().map(|key| key.kind).collect();
    let namespaces: BTreeSet<&str> = applied
        .iter()
        .filter_map(|key| key.namespace.as_deref())
        .collect();
    let mut scope = Vec::new();
    for kind in kinds {
        if kind.namespaced() {
            scope.extend(namespaces.iter().map(|ns| (kind, Some((*ns).to_owned()))));
        } else {
            scope.push((kind, None));
        }
    }
    scope
}

/// Whether `selector` selects `object` (JSON) by its `metadata.labels`.
///
/// ```
/// use flotta_client::selects;
///
/// let selector = "app=web".parse()?;
/// let object = serde_json::json!({"metadata": {"name": "w", "labels": {"app": "web"}}});
/// assert!(selects(&selector, &object));
/// assert!(!selects(&selector, &serde_json::json!({"metadata": {"name": "x"}})));
/// # Ok::<(), flotta_core::selector::SelectorError>(())
/// ```
pub fn selects(selector: &Selector, object: &Value) -> bool {
    let labels: BTreeMap<String, String> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    selector.matches(&labels)
}

/// The objects of `listed` (of `kind`, in `namespace`) that a prune deletes: those
/// `selector` selects that `applied` does not hold and that are not already being
/// deleted. The selector is checked here again, whatever the server answered: an
/// object without the selector's labels is never deleted.
pub fn prune_candidates(
    kind: ResourceType,
    namespace: Option<&str>,
    selector: &Selector,
    applied: &BTreeSet<ObjectKey>,
    listed: &[Value],
) -> Vec<ObjectKey> {
    let mut candidates: Vec<ObjectKey> = listed
        .iter()
        .filter(|object| selects(selector, object))
        .filter(|object| object.pointer("/metadata/deletionTimestamp").is_none())
        .filter_map(|object| {
            let name = object.pointer("/metadata/name")?.as_str()?;
            let namespace = if kind.namespaced() {
                Some(
                    object
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .or(namespace)?
                        .to_owned(),
                )
            } else {
                None
            };
            Some(ObjectKey {
                kind,
                namespace,
                name: name.to_owned(),
            })
        })
        .filter(|key| !applied.contains(key))
        .collect();
    candidates.sort();
    candidates
}

impl ManagementClient {
    /// Deletes the objects `selector` selects, of the kinds of `applied` and in the
    /// namespaces `applied` went to, that `applied` does not hold: what `kubectl
    /// apply --prune -l SELECTOR` does after applying. An empty selector (every
    /// object) is the caller's to refuse. With a [`DryRun`], says what it would
    /// delete: [`DryRun::Client`] deletes nothing, [`DryRun::Server`] sends the
    /// deletes with `dryRun=All`.
    ///
    /// The list of an object's kind failing fails the prune before anything of that
    /// kind is deleted; a failed delete is its object's outcome and the others go on.
    pub async fn prune(
        &self,
        selector: &Selector,
        applied: &BTreeSet<ObjectKey>,
        dry_run: DryRun,
    ) -> ClientResult<Vec<PruneOutcome>> {
        let mut outcomes = Vec::new();
        for (kind, namespace) in scope(applied) {
            let mut params = ListParams::default().labels(selector.to_string());
            let mut listed = Vec::new();
            loop {
                let page = self.list_raw(kind, namespace.as_deref(), &params).await?;
                listed.extend(page.items);
                match page.continue_token {
                    Some(token) => params.continue_token = Some(token),
                    None => break,
                }
            }
            for object in prune_candidates(kind, namespace.as_deref(), selector, applied, &listed) {
                let result = match dry_run.write_params() {
                    None => Ok(()),
                    Some(params) => match self
                        .delete_raw_with(
                            kind,
                            object.namespace.as_deref().unwrap_or_default(),
                            &object.name,
                            params,
                        )
                        .await
                    {
                        // Gone meanwhile: what the prune wanted.
                        Err(error) if error.is_not_found() => continue,
                        other => other.map(drop),
                    },
                };
                outcomes.push(PruneOutcome { object, result });
            }
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: ResourceType, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    #[test]
    fn the_scope_is_the_kinds_of_the_input_in_its_namespaces() {
        let applied = BTreeSet::from([
            key(ResourceType::EdgeWorkload, "a", "w"),
            key(ResourceType::EdgeDeviceSet, "b", "s"),
            ObjectKey {
                kind: ResourceType::ClusterRole,
                namespace: None,
                name: "r".into(),
            },
        ]);
        let scope = scope(&applied);
        let ns = |n: &str| Some(n.to_owned());
        assert_eq!(
            scope,
            vec![
                (ResourceType::EdgeDeviceSet, ns("a")),
                (ResourceType::EdgeDeviceSet, ns("b")),
                (ResourceType::EdgeWorkload, ns("a")),
                (ResourceType::EdgeWorkload, ns("b")),
                (ResourceType::ClusterRole, None),
            ]
        );
    }

    #[test]
    fn only_selected_objects_absent_from_the_input_are_pruned() {
        let selector: Selector = "app=web".parse().expect("selector");
        let applied = BTreeSet::from([key(ResourceType::EdgeWorkload, "default", "kept")]);
        let listed = vec![
            serde_json::json!({"metadata": {"name": "kept", "namespace": "default", "labels": {"app": "web"}}}),
            serde_json::json!({"metadata": {"name": "old", "namespace": "default", "labels": {"app": "web"}}}),
            // The server should not have listed it; it is not deleted all the same.
            serde_json::json!({"metadata": {"name": "other", "namespace": "default", "labels": {"app": "db"}}}),
            serde_json::json!({"metadata": {"name": "bare", "namespace": "default"}}),
            serde_json::json!({"metadata": {"name": "going", "namespace": "default", "labels": {"app": "web"}, "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        ];
        let pruned = prune_candidates(
            ResourceType::EdgeWorkload,
            Some("default"),
            &selector,
            &applied,
            &listed,
        );
        assert_eq!(
            pruned,
            vec![key(ResourceType::EdgeWorkload, "default", "old")]
        );
    }
}
