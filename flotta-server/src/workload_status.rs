//! Keeps `EdgeWorkload.status` up to date from what the target devices report.
//!
//! A background task follows the store's changes to devices and workloads and,
//! coalescing bursts over [`COALESCE_WINDOW`], recomputes the status of every
//! workload of a changed namespace with
//! [`flotta_core::reconcile::workload_status`]: devices per phase, conditions,
//! and the rollout's progress from [`decide_rollout`] (`status.currentBatch`, and
//! `status.rolloutBatches`: size, assigned, succeeded, failed and required per batch).
//! Every namespace is also recomputed each [`RECHECK_PERIOD`], since a device that
//! falls silent changes no stored object. A status is written only when it changed,
//! so the task's own writes settle at once, and not at all for a workload that has
//! never had a target device.
//!
//! The rollout is reported, not enforced here: every target device is given the
//! workload, so each counts as assigned, and a device reporting the workload at all
//! counts as running the workload's current generation.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotta_core::model::{EdgeDevice, EdgeWorkload, Time};
use flotta_core::reconcile::{
    BatchProgress, RolloutDevice, WorkloadReport, decide_rollout, workload_status, workload_targets,
};
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{ListOptions, ResourceKind, Store, StoreError, StoredObject, WatchStream};

/// How often every namespace's workloads are recomputed without a change, so that
/// silent devices turn `Unknown`.
pub const RECHECK_PERIOD: Duration = Duration::from_secs(30);

/// How long changes are gathered before a recomputation, so that a burst (a fleet
/// enrolling, a rollout reported device by device) costs one pass, not one per change.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(500);

/// Name of the status field holding the progress of each rollout batch.
pub const ROLLOUT_BATCHES_FIELD: &str = "rolloutBatches";

fn parse<T: serde::de::DeserializeOwned>(object: &StoredObject) -> Option<T> {
    serde_json::from_value(object.body.clone()).ok()
}

fn time_of(at: OffsetDateTime) -> Option<Time> {
    serde_json::from_value(Value::String(crate::tokens::format_time(at))).ok()
}

async fn list_all(
    store: &dyn Store,
    kind: ResourceKind,
    namespace: Option<&str>,
) -> Result<Vec<StoredObject>, StoreError> {
    Ok(store
        .list(kind, namespace, &ListOptions::default())
        .await?
        .items)
}

fn batch_json(batch: &BatchProgress) -> Value {
    json!({
        "size": batch.size,
        "assigned": batch.assigned,
        "succeeded": batch.succeeded,
        "failed": batch.failed,
        "required": batch.required,
    })
}

/// The status `workload` should have, given the namespace's devices at `now`.
pub fn compute_status(workload: &EdgeWorkload, devices: &[EdgeDevice], now: &Time) -> Value {
    let targets: Vec<&EdgeDevice> = devices
        .iter()
        .filter(|device| workload_targets(device, workload).unwrap_or(false))
        .collect();
    let name = workload.metadata.name.as_deref().unwrap_or_default();
    let reports: Vec<WorkloadReport<'_>> = targets
        .iter()
        .map(|device| WorkloadReport::from_device(device, name))
        .collect();
    let version = workload.metadata.generation.unwrap_or(0).to_string();
    let rollout_devices: Vec<RolloutDevice<'_>> = targets
        .iter()
        .zip(&reports)
        .map(|(device, report)| RolloutDevice {
            name: device.metadata.name.as_deref().unwrap_or_default(),
            labels: device.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS),
            assigned_version: Some(&version),
            reported_version: report.reported_phase.map(|_| version.as_str()),
            phase: report.phase(now),
        })
        .collect();
    // An invalid policy was refused at admission; should one be stored anyway, the
    // status still reports the phases.
    let rollout = decide_rollout(
        workload.spec.rollout_policy.as_ref(),
        &version,
        &rollout_devices,
    )
    .ok();
    let status = workload_status(workload, &reports, rollout.as_ref().map(|r| &r.status), now);
    let mut value = serde_json::to_value(&status).unwrap_or(Value::Null);
    if let (Some(map), Some(rollout)) = (value.as_object_mut(), &rollout) {
        let batches: Vec<Value> = rollout.status.batches.iter().map(batch_json).collect();
        map.insert(ROLLOUT_BATCHES_FIELD.into(), Value::Array(batches));
    }
    value
}

static EMPTY_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

/// Recomputes and writes the status of every workload in `namespace`.
async fn refresh_namespace(store: &dyn Store, namespace: &str) -> Result<(), StoreError> {
    let workloads = list_all(store, ResourceKind::EdgeWorkload, Some(namespace)).await?;
    if workloads.is_empty() {
        return Ok(());
    }
    let seen: HashMap<String, OffsetDateTime> = store
        .last_seen_all(Some(namespace))
        .await?
        .into_iter()
        .map(|row| (row.device, row.seen_at))
        .collect();
    let devices: Vec<EdgeDevice> = list_all(store, ResourceKind::EdgeDevice, Some(namespace))
        .await?
        .iter()
        .filter_map(parse::<EdgeDevice>)
        .map(|mut device| {
            // The last-seen table, not the device row, holds the heartbeat time.
            let at = device
                .metadata
                .name
                .as_ref()
                .and_then(|name| seen.get(name))
                .and_then(|at| time_of(*at));
            if let Some(at) = at {
                device.status.get_or_insert_with(Default::default).last_seen = Some(at);
            }
            device
        })
        .collect();
    let Some(now) = time_of(OffsetDateTime::now_utc()) else {
        return Ok(());
    };
    for stored in &workloads {
        let Some(workload) = parse::<EdgeWorkload>(stored) else {
            continue;
        };
        // A workload that never had a target device is left as its author wrote it;
        // one that lost its targets is told so.
        let never_written = stored.body.pointer("/status/phaseCounts").is_none();
        let targeted = devices
            .iter()
            .any(|device| workload_targets(device, &workload).unwrap_or(false));
        if never_written && !targeted {
            continue;
        }
        let status = compute_status(&workload, &devices, &now);
        if stored.body.get("status") == Some(&status) {
            continue;
        }
        match store
            .update_status(
                ResourceKind::EdgeWorkload,
                namespace,
                &stored.name,
                Some(stored.resource_version),
                status,
            )
            .await
        {
            // A concurrent change wins; its own event brings a new recomputation.
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

async fn open_watches(store: &dyn Store) -> Result<WatchStream, StoreError> {
    let from = store.current_resource_version().await?;
    let devices = store.watch(ResourceKind::EdgeDevice, None, from).await?;
    let workloads = store.watch(ResourceKind::EdgeWorkload, None, from).await?;
    Ok(futures::stream::select(devices, workloads).boxed())
}

async fn all_namespaces(store: &dyn Store) -> Result<BTreeSet<String>, StoreError> {
    Ok(list_all(store, ResourceKind::EdgeWorkload, None)
        .await?
        .into_iter()
        .map(|object| object.namespace)
        .collect())
}

async fn refresh_all(store: &dyn Store, namespaces: &BTreeSet<String>) {
    for namespace in namespaces {
        if let Err(error) = refresh_namespace(store, namespace).await {
            tracing::warn!(%namespace, error = %crate::api::error_chain(&error), "workload status: recomputation failed");
        }
    }
}

/// Starts the task; it ends when `shutdown` turns true.
pub async fn spawn(
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StoreError> {
    let mut stream = open_watches(store.as_ref()).await?;
    Ok(tokio::spawn(async move {
        let mut recheck = tokio::time::interval(RECHECK_PERIOD);
        loop {
            let mut dirty = BTreeSet::new();
            let mut everything = false;
            tokio::select! {
                next = stream.next() => match next {
                    Some(Ok(event)) => {
                        dirty.insert(event.object.namespace);
                    }
                    Some(Err(_)) | None => everything = true,
                },
                _ = recheck.tick() => everything = true,
                () = crate::app::stopping(&mut shutdown) => return,
            }
            if !everything {
                tokio::select! {
                    () = tokio::time::sleep(COALESCE_WINDOW) => {}
                    () = crate::app::stopping(&mut shutdown) => return,
                }
            }
            while !everything {
                match stream.next().now_or_never() {
                    Some(Some(Ok(event))) => {
                        dirty.insert(event.object.namespace);
                    }
                    Some(Some(Err(_)) | None) => everything = true,
                    None => break,
                }
            }
            if everything {
                if let Ok(reopened) = open_watches(store.as_ref()).await {
                    stream = reopened;
                }
                match all_namespaces(store.as_ref()).await {
                    Ok(namespaces) => dirty = namespaces,
                    Err(error) => {
                        tracing::warn!(error = %crate::api::error_chain(&error), "workload status: cannot list workloads");
                    }
                }
            }
            refresh_all(store.as_ref(), &dirty).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, labels: &[(&str, &str)], workload_phase: Option<&str>) -> EdgeDevice {
        let workloads: Vec<Value> = workload_phase
            .map(|phase| json!({"name": "web", "phase": phase}))
            .into_iter()
            .collect();
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {},
            "status": {"lastSeen": "2026-01-01T00:00:00Z", "workloads": workloads},
        }))
        .expect("device")
    }

    fn workload() -> EdgeWorkload {
        serde_json::from_value(json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeWorkload",
            "metadata": {"name": "web", "namespace": "default", "generation": 1},
            "spec": {
                "type": "pod",
                "deviceSelector": {"matchLabels": {"app": "web"}},
                "pod": {"spec": {"containers": [{"name": "c", "image": "img"}]}},
                "rolloutPolicy": {"batches": [{"limit": 1}]},
            },
        }))
        .expect("workload")
    }

    #[tokio::test]
    async fn the_task_writes_status_when_devices_report() {
        use crate::store::SqliteStore;
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("db.sqlite")).expect("store"));
        let (stop, stopped) = watch::channel(false);
        let task = spawn(store.clone(), stopped).await.expect("spawn");
        let workload_body = serde_json::to_value(workload()).expect("json");
        store
            .create(ResourceKind::EdgeWorkload, "default", "web", workload_body)
            .await
            .expect("workload");
        let mut idle_body = serde_json::to_value(workload()).expect("json");
        idle_body["metadata"]["name"] = json!("idle");
        idle_body["spec"]["deviceSelector"] = json!({"matchLabels": {"app": "none"}});
        store
            .create(ResourceKind::EdgeWorkload, "default", "idle", idle_body)
            .await
            .expect("idle workload");
        let mut device_body =
            serde_json::to_value(device("a", &[("app", "web")], None)).expect("json");
        let device_status = device_body["status"].take();
        store
            .create(ResourceKind::EdgeDevice, "default", "a", device_body)
            .await
            .expect("device");
        let mut reported = device_status.clone();
        reported["workloads"] = json!([{"name": "web", "phase": "Running"}]);
        store
            .record_last_seen(&[crate::store::LastSeen {
                namespace: "default".into(),
                device: "a".into(),
                seen_at: OffsetDateTime::now_utc(),
            }])
            .await
            .expect("last seen");
        store
            .update_status(ResourceKind::EdgeDevice, "default", "a", None, reported)
            .await
            .expect("device status");
        let mut running = None;
        for _ in 0..100 {
            let stored = store
                .get(ResourceKind::EdgeWorkload, "default", "web")
                .await
                .expect("get")
                .expect("workload exists");
            if stored.body.pointer("/status/phaseCounts/running") == Some(&json!(1)) {
                running = Some(stored.body["status"].clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = running.expect("the workload's status shows the running device");
        assert_eq!(status[ROLLOUT_BATCHES_FIELD][0]["succeeded"], json!(1));
        // The same pass left the workload without targets untouched.
        let idle = store
            .get(ResourceKind::EdgeWorkload, "default", "idle")
            .await
            .expect("get")
            .expect("idle exists");
        assert_eq!(idle.body.get("status"), None, "{}", idle.body);
        let _ = stop.send(true);
        task.await.expect("task ends on shutdown");
    }

    #[test]
    fn status_counts_phases_and_reports_batches() {
        let now: Time = serde_json::from_value(json!("2026-01-01T00:00:10Z")).expect("time");
        let devices = vec![
            device("a", &[("app", "web")], Some("Running")),
            device("b", &[("app", "web")], None),
            device("c", &[("app", "web")], Some("Running")),
            device("other", &[("app", "db")], Some("Running")),
        ];
        let status = compute_status(&workload(), &devices, &now);
        assert_eq!(
            status["phaseCounts"],
            json!({"deploying": 1, "running": 2, "failed": 0, "unknown": 0})
        );
        // Batch 0 (one device, `a`) succeeded; batch 1 (`b`, `c`) is under way.
        assert_eq!(status["currentBatch"], json!(1));
        assert_eq!(status[ROLLOUT_BATCHES_FIELD][0]["size"], json!(1));
        assert_eq!(status[ROLLOUT_BATCHES_FIELD][0]["succeeded"], json!(1));
        assert_eq!(status[ROLLOUT_BATCHES_FIELD][1]["size"], json!(2));
        assert_eq!(status[ROLLOUT_BATCHES_FIELD][1]["succeeded"], json!(1));
        // The same inputs give the same status, so the task's writes settle.
        assert_eq!(status, compute_status(&workload(), &devices, &now));
    }
}
