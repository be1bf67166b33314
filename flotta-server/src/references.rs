//! The `ReferencesResolved` condition of workloads: whether every secret and config
//! map a workload references exists. Core decides the condition
//! ([`references_condition`]); this module lists the namespace's objects, writes the
//! condition into the status the workload status task computes (with the last spec
//! whose references resolved, `lastResolvedSpec`, which a restarted server renders
//! while a reference is missing), and records each new missing reference as a
//! `MissingReference` Warning event on the workload.

use flotta_core::events::{InvolvedObject, ServerEvent};
use flotta_core::model::{Condition, ConfigMap, EdgeWorkload, Secret, Time};
use flotta_core::reconcile::{
    LAST_RESOLVED_SPEC_FIELD, REFERENCES_RESOLVED_CONDITION, references_condition,
};
use serde_json::Value;

use crate::events::EventRecorder;
use crate::store::{ListOptions, ResourceKind, Store, StoreError};

/// A namespace's secrets and config maps, as rendering reads them.
#[derive(Debug, Default)]
pub struct NamespaceObjects {
    secrets: Vec<Secret>,
    config_maps: Vec<ConfigMap>,
}

impl NamespaceObjects {
    /// Lists the secrets and config maps of `namespace`.
    pub async fn list(store: &dyn Store, namespace: &str) -> Result<Self, StoreError> {
        let options = ListOptions::default();
        let secrets = store
            .list(ResourceKind::Secret, Some(namespace), &options)
            .await?
            .items
            .iter()
            .filter_map(|o| o.to_resource().ok())
            .collect();
        let config_maps = store
            .list(ResourceKind::ConfigMap, Some(namespace), &options)
            .await?
            .items
            .iter()
            .filter_map(|o| o.to_resource().ok())
            .collect();
        Ok(Self {
            secrets,
            config_maps,
        })
    }

    /// Writes the workload's `ReferencesResolved` condition into `status` (a status
    /// object), keeping the transition time of the one in `previous` (the stored
    /// status) while its status holds. Returns the condition when it newly says a
    /// reference is missing (see [`record_missing_reference`]).
    pub fn set_condition(
        &self,
        workload: &EdgeWorkload,
        previous: Option<&Value>,
        status: &mut Value,
        now: &Time,
    ) -> Option<Condition> {
        let before: Option<Condition> = previous
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|all| {
                all.iter().find(|c| {
                    c.get("type").and_then(Value::as_str) == Some(REFERENCES_RESOLVED_CONDITION)
                })
            })
            .and_then(|c| serde_json::from_value(c.clone()).ok());
        let condition = references_condition(
            workload,
            &self.secrets,
            &self.config_maps,
            before.as_ref(),
            now,
        );
        let newly_missing = (condition.status == "False"
            && before
                .as_ref()
                .is_none_or(|b| b.status != condition.status || b.message != condition.message))
        .then(|| condition.clone());
        let Ok(value) = serde_json::to_value(&condition) else {
            return newly_missing;
        };
        let Some(map) = status.as_object_mut() else {
            return newly_missing;
        };
        // The last resolved spec: this one when it resolves, else the one recorded.
        let last_resolved = if condition.status == "True" {
            serde_json::to_value(&workload.spec).ok()
        } else {
            previous
                .and_then(|p| p.get(LAST_RESOLVED_SPEC_FIELD))
                .cloned()
        };
        match last_resolved {
            Some(spec) => {
                map.insert(LAST_RESOLVED_SPEC_FIELD.into(), spec);
            }
            None => {
                map.remove(LAST_RESOLVED_SPEC_FIELD);
            }
        }
        let conditions = map
            .entry("conditions")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(all) = conditions {
            all.retain(|c| {
                c.get("type").and_then(Value::as_str) != Some(REFERENCES_RESOLVED_CONDITION)
            });
            all.push(value);
        }
        newly_missing
    }
}

/// Records that a workload references a missing secret or config map (its
/// `ReferencesResolved` condition, as [`NamespaceObjects::set_condition`] returned
/// it): a `MissingReference` Warning event on the workload, and a log line. The
/// message names objects and fields, never values.
pub async fn record_missing_reference(
    events: &EventRecorder,
    workload: &EdgeWorkload,
    condition: &Condition,
) {
    let namespace = workload.metadata.namespace.as_deref().unwrap_or("default");
    let name = workload.metadata.name.as_deref().unwrap_or_default();
    tracing::warn!(
        namespace,
        workload = name,
        reason = %condition.reason,
        message = %condition.message,
        "workload references a missing object; its devices keep their last configuration"
    );
    let involved = InvolvedObject {
        uid: workload.metadata.uid.clone(),
        ..InvolvedObject::new(ResourceKind::EdgeWorkload, namespace, name)
    };
    events
        .record_server_event(ServerEvent::MissingReference {
            workload: involved,
            message: &condition.message,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_condition_replaces_its_earlier_self_only() {
        let workload: EdgeWorkload = serde_json::from_value(json!({
            "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeWorkload",
            "metadata": {"name": "w", "namespace": "default"},
            "spec": {"type": "pod", "pod": {"spec": {"containers": [{"name": "c", "image": "i",
                "envFrom": [{"secretRef": {"name": "missing"}}]}]}}}
        }))
        .expect("workload");
        let now: Time = serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("time");
        let objects = NamespaceObjects::default();
        let mut status = json!({"conditions": [{"type": "Progressing", "status": "True"}]});
        objects.set_condition(&workload, None, &mut status, &now);
        let previous = status.clone();
        objects.set_condition(&workload, Some(&previous), &mut status, &now);
        let conditions = status["conditions"].as_array().expect("conditions");
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["type"], REFERENCES_RESOLVED_CONDITION);
        assert_eq!(conditions[1]["status"], "False");
        assert!(
            conditions[1]["message"]
                .as_str()
                .is_some_and(|m| m.contains("secret 'missing' does not exist"))
        );
        assert!(
            status.get(LAST_RESOLVED_SPEC_FIELD).is_none(),
            "never resolved"
        );

        // Resolved: the spec is recorded; unresolved later: the record is kept.
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "missing", "namespace": "default"}, "data": {}
        }))
        .expect("secret");
        let resolved = NamespaceObjects {
            secrets: vec![secret],
            config_maps: Vec::new(),
        };
        let mut status = json!({});
        resolved.set_condition(&workload, None, &mut status, &now);
        assert_eq!(
            status[LAST_RESOLVED_SPEC_FIELD],
            serde_json::to_value(&workload.spec).expect("spec")
        );
        let recorded = status.clone();
        let mut changed = workload.clone();
        changed.spec.device = Some("other".into());
        let mut later = json!({});
        objects.set_condition(&changed, Some(&recorded), &mut later, &now);
        assert_eq!(
            later[LAST_RESOLVED_SPEC_FIELD],
            recorded[LAST_RESOLVED_SPEC_FIELD]
        );
    }
}
