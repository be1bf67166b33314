//! Ansible playbooks on devices, carried out as [`flotta_core::ansible`] decides:
//!
//! - [`ensure_executions`]: the leader's status pass ([`crate::workload_status`])
//!   creates the `PlaybookExecution` of each device labelled
//!   `config/device-by-config=<EdgeConfig>`, and never rewrites one that exists;
//! - [`record_reports`]: a heartbeat's `playbook-executions` become conditions of
//!   the device's own executions, and a finished one takes the device's label
//!   off, so the device stops asking (its configuration drops `ansible-manager`).
//!
//! The `ansible` directive itself is served by the Edge API
//! (`edge/handlers/playbooks.rs`).

use std::collections::{BTreeMap, HashSet};

use flotta_core::ansible::{
    self, belongs_to, desired_executions, is_final, labels_after_final, record_report,
};
use flotta_core::model::{EdgeConfig, EdgeDevice, PlaybookExecution, Time};
use flotta_core::wire;
use serde_json::Value;

use crate::store::{ResourceKind, Store, StoreError, list_all};

/// Attempts when an object changes between the read and the write.
const ATTEMPTS: usize = 5;

/// Creates the executions the labels of `namespace`'s devices ask for and that do
/// not exist yet. Costs one list when the namespace has no `EdgeConfig`.
pub async fn ensure_executions(store: &dyn Store, namespace: &str) -> Result<(), StoreError> {
    let configs: Vec<EdgeConfig> = list_all(store, ResourceKind::EdgeConfig, Some(namespace))
        .await?
        .iter()
        .filter_map(|stored| stored.to_resource().ok())
        .collect();
    if configs.is_empty() {
        return Ok(());
    }
    let devices: Vec<EdgeDevice> = list_all(store, ResourceKind::EdgeDevice, Some(namespace))
        .await?
        .iter()
        .filter(|stored| {
            stored
                .body
                .pointer("/metadata/labels")
                .and_then(|l| l.get(ansible::EDGE_CONFIG_LABEL))
                .is_some()
        })
        .filter_map(|stored| stored.to_resource().ok())
        .collect();
    let wanted = desired_executions(&devices, &configs);
    if wanted.is_empty() {
        return Ok(());
    }
    let existing: HashSet<String> =
        list_all(store, ResourceKind::PlaybookExecution, Some(namespace))
            .await?
            .into_iter()
            .map(|stored| stored.name)
            .collect();
    for execution in wanted {
        let Some(name) = execution.metadata.name.clone() else {
            continue;
        };
        if existing.contains(&name) {
            continue;
        }
        let body = serde_json::to_value(&execution).unwrap_or(Value::Null);
        match store
            .create(ResourceKind::PlaybookExecution, namespace, &name, body)
            .await
        {
            Ok(_) => tracing::info!(%namespace, execution = %name, "playbook execution created"),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The execution device `device` (labelled to run an `EdgeConfig`) runs: the
/// stored one, or the one [`ansible::execution_for`] makes, created now, so a
/// device asking right after it was labelled need not wait for the leader's
/// pass. `None` when the device runs none, or its `EdgeConfig` does not exist or
/// is invalid.
pub async fn execution_of_device(
    store: &dyn Store,
    namespace: &str,
    device: &EdgeDevice,
) -> Result<Option<PlaybookExecution>, StoreError> {
    let Some(device_id) = device.metadata.name.as_deref() else {
        return Ok(None);
    };
    let Some(config_name) = ansible::labelled_config(device.metadata.labels.as_ref()) else {
        return Ok(None);
    };
    let name = ansible::execution_name(device_id, config_name);
    for _attempt in 0..2 {
        if let Some(stored) = store
            .get(ResourceKind::PlaybookExecution, namespace, &name)
            .await?
        {
            return stored.to_resource().map(Some);
        }
        let Some(config) = store
            .get(ResourceKind::EdgeConfig, namespace, config_name)
            .await?
        else {
            return Ok(None);
        };
        let config: EdgeConfig = config.to_resource()?;
        let Some(execution) = desired_executions(std::slice::from_ref(device), &[config])
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let body = serde_json::to_value(&execution).unwrap_or(Value::Null);
        match store
            .create(ResourceKind::PlaybookExecution, namespace, &name, body)
            .await
        {
            Ok(stored) => {
                tracing::info!(%namespace, execution = %name, "playbook execution created");
                return stored.to_resource().map(Some);
            }
            // Created meanwhile (the leader's pass): read it.
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}

/// Records device `device_id`'s reports (each checked with
/// [`ansible::check_report`]) on its executions, at `now`. Reports of executions
/// that do not exist or belong to another device are skipped (and logged).
pub async fn record_reports(
    store: &dyn Store,
    namespace: &str,
    device_id: &str,
    reports: &[wire::PlaybookExecutionStatus],
    now: &Time,
) -> Result<(), StoreError> {
    for report in reports {
        let Some(name) = report.name.as_deref() else {
            continue;
        };
        let Some(execution) = write_report(store, namespace, device_id, name, report, now).await?
        else {
            continue;
        };
        if report.status.as_deref().is_some_and(is_final) {
            unlabel(store, namespace, device_id, &execution).await?;
        }
    }
    Ok(())
}

/// Writes one report on execution `name`; the execution (as read) when it is the
/// device's, `None` when it is not or does not exist.
async fn write_report(
    store: &dyn Store,
    namespace: &str,
    device_id: &str,
    name: &str,
    report: &wire::PlaybookExecutionStatus,
    now: &Time,
) -> Result<Option<PlaybookExecution>, StoreError> {
    for _attempt in 0..ATTEMPTS {
        let Some(stored) = store
            .get(ResourceKind::PlaybookExecution, namespace, name)
            .await?
        else {
            tracing::warn!(%namespace, device = %device_id, execution = %name, "report of a playbook execution that does not exist: skipped");
            return Ok(None);
        };
        let execution: PlaybookExecution = stored.to_resource()?;
        if !belongs_to(&execution, device_id) {
            tracing::warn!(%namespace, device = %device_id, execution = %name, "report of another device's playbook execution: skipped");
            return Ok(None);
        }
        let Some(status) = record_report(execution.status.as_ref(), report, now) else {
            return Ok(Some(execution));
        };
        let status = serde_json::to_value(&status).unwrap_or(Value::Null);
        match store
            .update_status(
                ResourceKind::PlaybookExecution,
                namespace,
                name,
                Some(stored.resource_version),
                status,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(%namespace, device = %device_id, execution = %name, state = report.status.as_deref().unwrap_or_default(), "playbook execution reported");
                return Ok(Some(execution));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        }
    }
    Err(StoreError::backend(
        "record playbook execution report",
        true,
        format!("execution {namespace}/{name} is being changed concurrently"),
    ))
}

/// Takes the `EdgeConfig` label off the device once `execution` finished.
async fn unlabel(
    store: &dyn Store,
    namespace: &str,
    device_id: &str,
    execution: &PlaybookExecution,
) -> Result<(), StoreError> {
    for _attempt in 0..ATTEMPTS {
        let Some(stored) = store
            .get(ResourceKind::EdgeDevice, namespace, device_id)
            .await?
        else {
            return Ok(());
        };
        let labels: BTreeMap<String, String> = stored
            .body
            .pointer("/metadata/labels")
            .cloned()
            .and_then(|l| serde_json::from_value(l).ok())
            .unwrap_or_default();
        let Some(labels) = labels_after_final(&labels, execution) else {
            return Ok(());
        };
        let mut body = stored.body.clone();
        if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert(
                "labels".into(),
                serde_json::to_value(&labels).unwrap_or(Value::Null),
            );
        }
        match store
            .update(
                ResourceKind::EdgeDevice,
                namespace,
                device_id,
                Some(stored.resource_version),
                body,
            )
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(StoreError::backend(
        "remove the EdgeConfig label",
        true,
        format!("device {namespace}/{device_id} is being changed concurrently"),
    ))
}
