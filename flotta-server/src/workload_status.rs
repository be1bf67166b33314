//! Keeps `EdgeWorkload.status` and `EdgeDeviceSet.status` up to date from what the
//! devices report, and moves workload rollouts forward.
//!
//! A background task follows the store's changes to devices, workloads and sets
//! and, coalescing bursts over [`COALESCE_WINDOW`], recomputes the status of every
//! workload and set of a changed namespace: for a workload, one rollout step with
//! [`flotta_core::reconcile::step_rollout`] (from the [`RolloutRecord`] stored in
//! `status.rollout`, the devices' reported revisions and the operator's annotations),
//! then [`flotta_core::reconcile::workload_status`] (its current revision, target
//! devices by the revision they run and by phase, conditions, `currentBatch`) with
//! the new record in `status.rollout`; for a set,
//! [`flotta_core::reconcile::device_set_status`] and one rollout step of its staged
//! spec ([`flotta_core::reconcile::SetRevision`]), the record in `status.rollout`. Every namespace is also
//! recomputed each [`RECHECK_PERIOD`], since a device that falls silent (or a
//! progress deadline passing) changes no stored object. A status is written only
//! when it changed, so the task's own writes settle at once, and not at all for a
//! workload that has never had a target device.
//!
//! The same pass creates the `PlaybookExecution`s that devices' `EdgeConfig`
//! labels ask for ([`crate::playbooks::ensure_executions`]).
//!
//! Only the replica holding the leader lease recomputes ([`crate::leader`]); the
//! others render from the record it writes.
//!
//! The record is what the configuration view renders from: a device is sent the
//! revision [`flotta_core::reconcile::assigned_revision`] gives it, so writing the
//! record is what releases a batch. A write that loses a race (another replica, a
//! user's edit) is dropped and recomputed from the winner, so a step is never
//! applied twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotta_core::events::{InvolvedObject, ServerEvent};
use flotta_core::model::{EdgeDevice, EdgeDeviceSet, EdgeWorkload, Time};
use flotta_core::reconcile::{
    ROLLOUT_STATUS_FIELD, RolloutChanges, RolloutControls, RolloutRecord, RolloutTarget,
    SetRevision, WorkloadReport, WorkloadRevision, device_set_status, set_rollout_targets,
    step_rollout, workload_status, workload_targets,
};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::events::EventRecorder;
use crate::leader::Leadership;
use crate::store::{ResourceKind, Store, StoreError, StoredObject, WatchStream, list_all, pumped};

/// How often every namespace's workloads are recomputed without a change, so that
/// silent devices turn `Unknown`.
pub const RECHECK_PERIOD: Duration = Duration::from_secs(30);

/// How long changes are gathered before a recomputation, so that a burst (a fleet
/// enrolling, a rollout reported device by device) costs one pass, not one per change.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(500);

/// Status field of the made-up batch progress servers wrote before rollouts were
/// enforced; removed on the next write.
const LEGACY_ROLLOUT_BATCHES_FIELD: &str = "rolloutBatches";

fn time_of(at: OffsetDateTime) -> Option<Time> {
    serde_json::from_value(Value::String(flotta_core::timestamp::rfc3339(at))).ok()
}

/// The revision devices are sent of `workload`: the content hash of its wire form,
/// rendered as the Edge API renders it; `None` when it cannot be rendered.
pub fn current_revision(workload: &EdgeWorkload) -> Option<String> {
    WorkloadRevision::of(workload).map(|r| r.revision)
}

/// The status `workload` should have, given the namespace's devices at `now`
/// (`now_unix` in Unix seconds, for progress deadlines), and what the rollout step
/// taken with it changed (`None` when no step could be taken).
pub fn compute_status(
    workload: &EdgeWorkload,
    devices: &[EdgeDevice],
    now: &Time,
    now_unix: i64,
) -> (Value, Option<RolloutChanges>) {
    let targets: Vec<&EdgeDevice> = devices
        .iter()
        .filter(|device| workload_targets(device, workload).unwrap_or(false))
        .collect();
    let name = workload.metadata.name.as_deref().unwrap_or_default();
    let reports: Vec<WorkloadReport<'_>> = targets
        .iter()
        .map(|device| WorkloadReport::from_device(device, name))
        .collect();
    let live = WorkloadRevision::of(workload);
    let current = live.as_ref().map(|r| r.revision.clone());
    // An invalid policy was refused at admission; should one be stored anyway, the
    // status still reports the phases and the stored record stays as it was.
    let step = live.as_ref().and_then(|live| {
        let rollout_targets: Vec<RolloutTarget<'_>> = targets
            .iter()
            .zip(&reports)
            .map(|(device, report)| RolloutTarget {
                name: device.metadata.name.as_deref().unwrap_or_default(),
                labels: device.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS),
                state: report.state(now, Some(&live.revision)),
            })
            .collect();
        step_rollout(
            workload.spec.rollout_policy.as_ref(),
            RolloutRecord::of(workload).as_ref(),
            live,
            &rollout_targets,
            RolloutControls::of(workload, &live.revision),
            now_unix,
        )
        .ok()
    });
    let record = step.as_ref().map(|(record, _)| record);
    let status = workload_status(workload, &reports, current.as_deref(), record, now);
    let mut value = serde_json::to_value(&status).unwrap_or(Value::Null);
    // Core's status carries the step's record in `rollout`.
    if let Some(map) = value.as_object_mut() {
        // Written by servers before rollouts were enforced.
        map.remove(LEGACY_ROLLOUT_BATCHES_FIELD);
    }
    (value, step.map(|(_, changes)| changes))
}

/// The status `set` should have, given the namespace's devices and sets at `now`
/// (`now_unix` in Unix seconds, for progress deadlines): core's
/// [`device_set_status`] with the record of one rollout step of the set's staged
/// spec ([`SetRevision`]) in `status.rollout`, and what that step changed (`None`
/// when no step could be taken).
pub fn compute_set_status(
    set: &EdgeDeviceSet,
    devices: &[EdgeDevice],
    sets: &[EdgeDeviceSet],
    now: &Time,
    now_unix: i64,
) -> (Value, Option<RolloutChanges>) {
    let mut status = device_set_status(set, devices, sets, now);
    let step = SetRevision::of(set).and_then(|live| {
        let targets = set_rollout_targets(set, devices, sets, &live.revision, now);
        step_rollout(
            set.spec.rollout_policy.as_ref(),
            RolloutRecord::of(set).as_ref(),
            &live,
            &targets,
            RolloutControls::of(set, &live.revision),
            now_unix,
        )
        .ok()
    });
    if let Some((record, _)) = &step {
        status.rollout = serde_json::to_value(record).ok();
    }
    let value = serde_json::to_value(&status).unwrap_or(Value::Null);
    (value, step.map(|(_, changes)| changes))
}

/// Logs what a rollout step of a workload or set did and records its events.
fn log_changes(
    events: &EventRecorder,
    kind: ResourceKind,
    stored: &StoredObject,
    status: &Value,
    changes: &RolloutChanges,
) {
    let (namespace, name) = (stored.namespace.as_str(), stored.name.as_str());
    let kind_name = kind.as_str();
    let record = status.get(ROLLOUT_STATUS_FIELD);
    let revision = record
        .and_then(|r| r.get("currentRevision"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let involved = InvolvedObject {
        uid: Some(stored.uid.clone()),
        ..InvolvedObject::new(kind, namespace, name)
    };
    let record_event = |event: ServerEvent<'_>| events.spawn_server_event(event);
    if changes.new_revision {
        tracing::info!(%namespace, kind = kind_name, %name, %revision, "rollout: new revision");
        record_event(ServerEvent::RolloutStarted {
            workload: involved.clone(),
            revision,
        });
    }
    for batch in &changes.released {
        tracing::info!(%namespace, kind = kind_name, %name, %revision, batch, "rollout: batch released");
        record_event(ServerEvent::RolloutBatchReleased {
            workload: involved.clone(),
            revision,
            batch: *batch,
        });
    }
    if !changes.newly_updated.is_empty() {
        tracing::info!(%namespace, kind = kind_name, %name, %revision, devices = ?changes.newly_updated, "rollout: devices given the revision");
    }
    if let Some(reason) = &changes.paused {
        let message = record
            .and_then(|r| r.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        tracing::info!(%namespace, kind = kind_name, %name, %revision, %reason, %message, "rollout: paused");
        let why = format!("{reason}: {message}");
        record_event(ServerEvent::RolloutPaused {
            workload: involved.clone(),
            revision,
            why: &why,
        });
    }
    if changes.completed {
        tracing::info!(%namespace, kind = kind_name, %name, %revision, "rollout: complete");
        record_event(ServerEvent::RolloutComplete {
            workload: involved,
            revision,
        });
    }
}

static EMPTY_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

/// Writes `status` on `stored` when it differs from the stored one; a concurrent
/// change wins (its own event brings a new recomputation). Returns whether it wrote.
async fn write_status(
    store: &dyn Store,
    kind: ResourceKind,
    stored: &StoredObject,
    status: Value,
) -> Result<bool, StoreError> {
    if stored.body.get("status") == Some(&status) {
        return Ok(false);
    }
    match store
        .update_status(
            kind,
            &stored.namespace,
            &stored.name,
            Some(stored.resource_version),
            status,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Recomputes and writes the status of every workload and set in `namespace`.
async fn refresh_namespace(
    store: &dyn Store,
    events: &EventRecorder,
    namespace: &str,
) -> Result<(), StoreError> {
    // The rest of the pass does not wait on playbook executions.
    if let Err(error) = crate::playbooks::ensure_executions(store, namespace).await {
        tracing::warn!(%namespace, error = %crate::api::error_chain(&error), "playbook executions not created");
    }
    let workloads = list_all(store, ResourceKind::EdgeWorkload, Some(namespace)).await?;
    let sets = list_all(store, ResourceKind::EdgeDeviceSet, Some(namespace)).await?;
    if workloads.is_empty() && sets.is_empty() {
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
        .filter_map(|stored| stored.to_resource::<EdgeDevice>().ok())
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
    let at = OffsetDateTime::now_utc();
    let now_unix = at.unix_timestamp();
    let Some(now) = time_of(at) else {
        return Ok(());
    };
    let references = crate::references::NamespaceObjects::list(store, namespace).await?;
    for stored in &workloads {
        let Ok(workload) = stored.to_resource::<EdgeWorkload>() else {
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
        let (mut status, changes) = compute_status(&workload, &devices, &now, now_unix);
        let missing =
            references.set_condition(&workload, stored.body.get("status"), &mut status, &now);
        let written =
            write_status(store, ResourceKind::EdgeWorkload, stored, status.clone()).await?;
        if let (true, Some(changes)) = (written, changes) {
            log_changes(
                events,
                ResourceKind::EdgeWorkload,
                stored,
                &status,
                &changes,
            );
        }
        if let Some(missing) = missing {
            crate::references::record_missing_reference(events, &workload, &missing).await;
        }
    }
    let parsed: Vec<(&StoredObject, EdgeDeviceSet)> = sets
        .iter()
        .filter_map(|stored| Some((stored, stored.to_resource::<EdgeDeviceSet>().ok()?)))
        .collect();
    let typed_sets: Vec<EdgeDeviceSet> = parsed.iter().map(|(_, set)| set.clone()).collect();
    for (stored, set) in &parsed {
        let (status, changes) = compute_set_status(set, &devices, &typed_sets, &now, now_unix);
        let written =
            write_status(store, ResourceKind::EdgeDeviceSet, stored, status.clone()).await?;
        if let (true, Some(changes)) = (written, changes) {
            log_changes(
                events,
                ResourceKind::EdgeDeviceSet,
                stored,
                &status,
                &changes,
            );
        }
    }
    Ok(())
}

async fn open_watches(store: &dyn Store) -> Result<WatchStream, StoreError> {
    let from = store.current_resource_version().await?;
    let devices = store.watch(ResourceKind::EdgeDevice, None, from).await?;
    let workloads = store.watch(ResourceKind::EdgeWorkload, None, from).await?;
    let sets = store.watch(ResourceKind::EdgeDeviceSet, None, from).await?;
    // A secret or config map appearing or going changes `ReferencesResolved`.
    let secrets = store.watch(ResourceKind::Secret, None, from).await?;
    let config_maps = store.watch(ResourceKind::ConfigMap, None, from).await?;
    // An EdgeConfig appearing makes executions for the devices labelled with it.
    let edge_configs = store.watch(ResourceKind::EdgeConfig, None, from).await?;
    // Pumped: the task recomputes with the store between two reads of the changes.
    Ok(pumped(
        futures::stream::select_all([devices, workloads, sets, secrets, config_maps, edge_configs])
            .boxed(),
    ))
}

async fn all_namespaces(store: &dyn Store) -> Result<BTreeSet<String>, StoreError> {
    let mut namespaces = BTreeSet::new();
    for kind in [
        ResourceKind::EdgeWorkload,
        ResourceKind::EdgeDeviceSet,
        ResourceKind::EdgeConfig,
    ] {
        namespaces.extend(
            list_all(store, kind, None)
                .await?
                .into_iter()
                .map(|object| object.namespace),
        );
    }
    Ok(namespaces)
}

async fn refresh_all(store: &dyn Store, events: &EventRecorder, namespaces: &BTreeSet<String>) {
    for namespace in namespaces {
        if let Err(error) = refresh_namespace(store, events, namespace).await {
            tracing::warn!(%namespace, error = %crate::api::error_chain(&error), "workload status: recomputation failed");
        }
    }
}

/// Starts the task; it ends when `shutdown` turns true. Missing references are
/// recorded as events through `events`. It recomputes only while `leadership`
/// says this replica leads, and everything at once when it takes the lead.
pub async fn spawn(
    store: Arc<dyn Store>,
    events: EventRecorder,
    mut leadership: Leadership,
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
                () = leadership.taken() => everything = true,
                () = crate::shutdown::stopping(&mut shutdown) => return,
            }
            if !everything {
                tokio::select! {
                    () = tokio::time::sleep(COALESCE_WINDOW) => {}
                    () = crate::shutdown::stopping(&mut shutdown) => return,
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
            if everything && let Ok(reopened) = open_watches(store.as_ref()).await {
                stream = reopened;
            }
            if !leadership.is_leader() {
                // The leader recomputes; it sees the same changes through the
                // store, and this replica recomputes everything if it takes over.
                continue;
            }
            if everything {
                match all_namespaces(store.as_ref()).await {
                    Ok(namespaces) => dirty = namespaces,
                    Err(error) => {
                        tracing::warn!(error = %crate::api::error_chain(&error), "workload status: cannot list workloads");
                    }
                }
            }
            refresh_all(store.as_ref(), &events, &dirty).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device(name: &str, labels: &[(&str, &str)], workload_phase: Option<&str>) -> EdgeDevice {
        let revision = current_revision(&workload());
        let workloads: Vec<Value> = workload_phase
            .map(|phase| json!({"name": "web", "phase": phase, "revision": revision}))
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
        let events = EventRecorder::new(store.clone(), Default::default());
        let task = spawn(store.clone(), events, Leadership::sole(), stopped)
            .await
            .expect("spawn");
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
        reported["workloads"] = json!([{"name": "web", "phase": "Running",
            "revision": current_revision(&workload())}]);
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
        assert_eq!(status["rollout"]["batches"][0]["succeeded"], json!(1));
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
        let (status, _) = compute_status(&workload(), &devices, &now, 10);
        assert_eq!(
            status["phaseCounts"],
            json!({"deploying": 1, "running": 2, "failed": 0, "unknown": 0})
        );
        assert_eq!(
            status["devices"],
            json!({"targeted": 3, "current": 2, "older": 0, "deploying": 1, "failed": 0,
                "unknown": 0})
        );
        assert_eq!(
            status["revision"],
            json!(current_revision(&workload()).expect("renders"))
        );
        // The first revision goes to every target at once: nothing to fall back on.
        let rollout = &status["rollout"];
        assert_eq!(rollout["complete"], json!(true));
        assert_eq!(rollout["previousRevision"], Value::Null);
        assert_eq!(status["currentBatch"], json!(1));
        assert_eq!(rollout["batches"][0]["targeted"], json!(1));
        assert_eq!(rollout["batches"][0]["succeeded"], json!(1));
        assert_eq!(rollout["batches"][1]["targeted"], json!(2));
        assert_eq!(rollout["batches"][1]["succeeded"], json!(1));
        assert_eq!(rollout["batches"][1]["pending"], json!(1));
        // The same inputs give the same status, so the task's writes settle.
        assert_eq!(status, compute_status(&workload(), &devices, &now, 10).0);
    }

    fn reporting(name: &str, revision: &str) -> EdgeDevice {
        serde_json::from_value(json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {},
            "status": {"lastSeen": "2026-01-01T00:00:00Z", "workloads": [
                {"name": "web", "phase": "Running", "revision": revision}]},
        }))
        .expect("device")
    }

    fn image_for(workload: &EdgeWorkload, device: &EdgeDevice) -> String {
        let rendered = flotta_core::reconcile::render_device_config(
            device,
            &[],
            std::slice::from_ref(workload),
            &[],
            &[],
        );
        let workloads = rendered.message.workloads.expect("workloads");
        workloads[0].specification.clone().expect("specification")
    }

    #[test]
    fn an_update_reaches_the_second_batch_only_after_the_first_runs_it() {
        let now: Time = serde_json::from_value(json!("2026-01-01T00:00:10Z")).expect("time");
        let mut workload = workload();
        let v1 = current_revision(&workload).expect("renders");
        let fleet = |revisions: [&str; 3]| -> Vec<EdgeDevice> {
            ["a", "b", "c"]
                .iter()
                .zip(revisions)
                .map(|(name, revision)| reporting(name, revision))
                .collect()
        };
        let (status, _) = compute_status(&workload, &fleet([&v1, &v1, &v1]), &now, 10);
        workload.status = Some(serde_json::from_value(status).expect("status"));

        workload.spec.pod.spec.containers[0].image = Some("img:2".into());
        workload.metadata.generation = Some(2);
        let v2 = current_revision(&workload).expect("renders");
        // Before the server's step, every device keeps what it had.
        let devices = fleet([&v1, &v1, &v1]);
        assert!(image_for(&workload, &devices[0]).contains("image: img\n"));
        let (status, changes) = compute_status(&workload, &devices, &now, 11);
        let changes = changes.expect("a step");
        assert!(changes.new_revision);
        assert_eq!(changes.newly_updated, ["a"]);
        assert_eq!(status["rollout"]["previousRevision"], json!(v1));
        assert_eq!(status["rollout"]["batches"][1]["released"], json!(false));
        workload.status = Some(serde_json::from_value(status).expect("status"));
        assert!(image_for(&workload, &devices[0]).contains("img:2"));
        assert!(
            !image_for(&workload, &devices[1]).contains("img:2"),
            "batch 2 waits"
        );

        // Batch 1 runs the new revision: batch 2 is released.
        let devices = fleet([&v2, &v1, &v1]);
        let (status, changes) = compute_status(&workload, &devices, &now, 12);
        assert_eq!(changes.expect("a step").released, [1]);
        workload.status = Some(serde_json::from_value(status).expect("status"));
        assert!(image_for(&workload, &devices[1]).contains("img:2"));
        assert!(image_for(&workload, &devices[2]).contains("img:2"));
    }
}
