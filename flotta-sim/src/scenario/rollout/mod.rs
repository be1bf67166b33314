//! `rollout`: one workload change rolled out in three enforced batches (10 %, 40 %,
//! the rest) to N light devices, then, as the same-run baseline, the next change
//! with no rollout policy (every device at once).
//!
//! The devices long-poll their configuration and report the revision they run
//! (see [`device`]); the simulator watches the workload's `status.rollout` for the
//! batches' releases and the rollout's completion, and checks afterwards that no
//! device received the new revision outside a released batch (see [`check`]).
//! The server runs with its own timings: the workload status task coalesces
//! changes over 500 ms and rechecks every 30 s; devices heartbeat at the period
//! their configuration sets and at once after an apply, as the agent does.

mod check;
mod device;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use flotta_client::{ListParams, ManagementClient, WatchEvent};
use flotta_core::model::EdgeWorkload;
use flotta_core::reconcile::{RolloutRecord, WorkloadRevision};
use futures::StreamExt;
use serde_json::{Value, json};

use self::check::{BatchSeen, analyse};
use self::device::Tracker;
use super::{NAMESPACE, Run, WORKLOADS, abort_all, settle};
use crate::report::Report;
use crate::server::MemoryCurve;
use crate::stats::{Latencies, per_second};
use crate::{Model, SimError};

/// Name of the workload rolled out.
const WORKLOAD: &str = "sim-rollout";

/// How long one phase (the first revision, the rollout, the baseline) may take.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// The batches: 10 %, 40 %, and the rest (the final batch the policy leaves).
fn policy() -> Value {
    json!({"batches": [{"limit": "10%"}, {"limit": "40%"}]})
}

fn workload(round: u32, policy: Option<Value>) -> Value {
    let mut spec = json!({
        "type": "pod",
        "deviceSelector": {"matchLabels": {}},
        "pod": {"spec": {"containers": [
            {"name": "app", "image": format!("registry.invalid/sim/rollout:r{round}")}
        ]}},
    });
    if let Some(policy) = policy {
        spec["rolloutPolicy"] = policy;
    }
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": WORKLOAD, "namespace": NAMESPACE},
        "spec": spec,
    })
}

/// The revision the server will roll out for `workload` (core's rule).
fn revision_of(workload: &Value) -> Result<String, SimError> {
    serde_json::from_value::<EdgeWorkload>(workload.clone())
        .ok()
        .and_then(|w| WorkloadRevision::of(&w))
        .map(|r| r.revision)
        .ok_or_else(|| SimError::Setup("the simulated workload cannot be rendered".into()))
}

/// The rollout records the simulator saw for the revision it follows.
#[derive(Debug, Default)]
struct RecordLog {
    revision: String,
    batches: Vec<BatchSeen>,
    complete_seen: Option<Duration>,
    last: Option<RolloutRecord>,
}

impl RecordLog {
    fn follow(&mut self, revision: &str) {
        *self = Self {
            revision: revision.to_owned(),
            last: self.last.take(),
            ..Self::default()
        };
    }

    fn observe(&mut self, record: RolloutRecord, at: Duration) {
        if record.current_revision.as_deref() == Some(self.revision.as_str()) {
            self.batches.resize(
                record.batches.len().max(self.batches.len()),
                BatchSeen::default(),
            );
            for (index, (batch, seen)) in record.batches.iter().zip(&mut self.batches).enumerate() {
                seen.targeted = batch.targeted;
                seen.required = batch.required;
                if batch.released && seen.released_seen.is_none() {
                    seen.released_seen = Some(at);
                }
                let current = !record.complete && record.current_batch as usize == index;
                if current && batch.released && seen.released_at_unix.is_none() {
                    seen.released_at_unix = record.batch_released_at;
                }
            }
            if record.complete && self.complete_seen.is_none() {
                self.complete_seen = Some(at);
            }
        }
        self.last = Some(record);
    }
}

fn lock(log: &Mutex<RecordLog>) -> std::sync::MutexGuard<'_, RecordLog> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Follows the workload's `status.rollout` into `log` until aborted.
fn watch_record(
    management: &ManagementClient,
    tracker: Arc<Tracker>,
    log: Arc<Mutex<RecordLog>>,
) -> tokio::task::JoinHandle<()> {
    let stream = management.watch::<EdgeWorkload>(Some(NAMESPACE), &ListParams::default());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let at = tracker.now();
            let workloads = match event {
                Ok(WatchEvent::Added(w) | WatchEvent::Modified(w)) => vec![w],
                Ok(WatchEvent::Restarted(all)) => all,
                Ok(WatchEvent::Deleted(_)) | Err(_) => continue,
            };
            for workload in workloads {
                if workload.metadata.name.as_deref() != Some(WORKLOAD) {
                    continue;
                }
                if let Some(record) = RolloutRecord::of(&workload) {
                    lock(&log).observe(record, at);
                }
            }
        }
    })
}

/// One change of the workload and its way to every device.
struct Phase {
    /// When the change was sent, after the tracker's base.
    changed: Duration,
    /// From the change to the simulator seeing the record complete.
    total: Duration,
}

async fn change(
    management: &ManagementClient,
    tracker: &Tracker,
    log: &Mutex<RecordLog>,
    body: &Value,
    create: bool,
) -> Result<(String, Duration), SimError> {
    let revision = revision_of(body)?;
    lock(log).follow(&revision);
    tracker.track(&revision);
    let changed = tracker.now();
    let stored = if create {
        management.create_raw(WORKLOADS, NAMESPACE, body).await
    } else {
        let patch = json!({"spec": body["spec"].clone()});
        management
            .patch_raw(WORKLOADS, NAMESPACE, WORKLOAD, &patch)
            .await
    }
    .map_err(|e| SimError::Setup(format!("changing workload {WORKLOAD}: {e}")))?;
    let stored_revision = revision_of(&stored)?;
    if stored_revision != revision {
        return Err(SimError::Setup(format!(
            "the server stored a workload of revision {stored_revision}, the simulator sent {revision}"
        )));
    }
    Ok((revision, changed))
}

/// Waits until every device reported running `revision` and the server's record
/// of it is complete.
async fn converge(
    run: &Run,
    tracker: &Tracker,
    log: &Mutex<RecordLog>,
    revision: &str,
    changed: Duration,
    label: &str,
) -> Result<Phase, SimError> {
    let devices = run.settings.devices;
    let bar = run.bar(devices as u64, label);
    let started = Instant::now();
    loop {
        let reported = tracker.acknowledged_count.load(Ordering::Acquire);
        bar.set_position(reported as u64);
        let complete = lock(log).complete_seen;
        if let (true, Some(complete)) = (reported >= devices, complete) {
            bar.finish_and_clear();
            return Ok(Phase {
                changed,
                total: complete.saturating_sub(changed),
            });
        }
        if started.elapsed() > PHASE_TIMEOUT {
            bar.finish_and_clear();
            let received = tracker.received_count.load(Ordering::Acquire);
            let record = lock(log)
                .last
                .as_ref()
                .map_or_else(|| "none".to_owned(), |r| format!("{r:?}"));
            return Err(SimError::Setup(format!(
                "{label}: after {PHASE_TIMEOUT:?}, {received} of {devices} devices received \
                 revision {revision} and {reported} reported running it; the server's record: {record}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `rollout`: see the module documentation.
pub async fn rollout(run: &Run) -> Result<Report, SimError> {
    if run.settings.model == Model::Agent {
        return Err(SimError::Setup(
            "rollout runs light devices only (--model light)".into(),
        ));
    }
    let admin = run.admin_config.as_ref().ok_or_else(|| {
        SimError::Setup(
            "rollout needs the management API (--admin-config or a spawned server)".into(),
        )
    })?;
    let management = ManagementClient::from_config_file(admin)
        .map_err(|e| SimError::Setup(format!("management client from {}: {e}", admin.display())))?;
    // A workload left over from an earlier run against the same server.
    let _ = management.delete_raw(WORKLOADS, NAMESPACE, WORKLOAD).await;
    let fleet = run.light_fleet().await?;
    let count = fleet.len();
    let base = Instant::now();
    let base_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let tracker = Arc::new(Tracker::new(base, WORKLOAD, count));
    let wait = run.settings.wait;
    let mut tasks: Vec<_> = fleet
        .iter()
        .enumerate()
        .map(|(index, device)| {
            tokio::spawn(device::run(index, device.clone(), tracker.clone(), wait))
        })
        .collect();
    let bar = run.bar(count as u64, "first beat");
    let ready = settle(&tracker.ready, count, super::SETTLE_TIMEOUT, &bar).await;
    if ready < count {
        abort_all(tasks);
        return Err(SimError::Setup(format!(
            "{ready} of {count} devices delivered a first heartbeat"
        )));
    }
    let log = Arc::new(Mutex::new(RecordLog::default()));
    tasks.push(watch_record(&management, tracker.clone(), log.clone()));
    let result = phases(run, &management, &tracker, &log).await;
    abort_all(tasks);
    let _ = management.delete_raw(WORKLOADS, NAMESPACE, WORKLOAD).await;
    let (staged, staged_times, baseline, rollout_server, baseline_cpu) = result?;
    let names: Vec<(String, device::DeviceTimes)> = fleet
        .iter()
        .zip(staged_times)
        .map(|(device, times)| (device.device_id.clone(), times))
        .collect();
    let analysis = analyse(&names, &staged.batches, staged.phase.changed, base_unix);

    let mut report = run.report("rollout", "light", "device update");
    let received = names.iter().filter(|(_, t)| t.received.is_some()).count() as u64;
    report.window_s = staged.phase.total.as_secs_f64();
    report.operations = received;
    report.throughput_per_s = per_second(received, staged.phase.total);
    report.latency = analysis.receive_after_release;
    report.errors = analysis.missing.len() as u64 + staged.device_errors;
    report.server = rollout_server;
    report.violations = analysis.violations;
    let extra = &mut report.extra;
    extra.insert("policy".into(), policy());
    extra.insert(
        "total_s".into(),
        json!(round3(staged.phase.total.as_secs_f64())),
    );
    extra.insert(
        "batches".into(),
        serde_json::to_value(&analysis.batches).unwrap_or_default(),
    );
    extra.insert(
        "baseline_total_s".into(),
        json!(round3(baseline.phase.total.as_secs_f64())),
    );
    extra.insert(
        "baseline_receive".into(),
        serde_json::to_value(baseline.receive).unwrap_or_default(),
    );
    extra.insert(
        "baseline_all_reported_s".into(),
        json!(baseline.all_reported.map(round3)),
    );
    extra.insert("baseline_server_cpu_s".into(), json!(round3(baseline_cpu)));
    extra.insert(
        "ratio_to_baseline".into(),
        json!(round3(
            staged.phase.total.as_secs_f64() / baseline.phase.total.as_secs_f64().max(1e-9)
        )),
    );
    extra.insert("long_poll_wait_s".into(), json!(wait.as_secs()));
    if !analysis.missing.is_empty() {
        extra.insert(
            "missing_devices".into(),
            json!(analysis.missing.iter().take(20).collect::<Vec<_>>()),
        );
    }
    Ok(report)
}

/// The staged rollout as the devices and the record saw it.
struct Staged {
    phase: Phase,
    batches: Vec<BatchSeen>,
    device_errors: u64,
}

/// The all-at-once baseline.
struct Baseline {
    phase: Phase,
    /// Change to each device receiving the revision.
    receive: crate::stats::LatencySummary,
    /// Change to the last report acknowledged, seconds.
    all_reported: Option<f64>,
}

type Phases = (
    Staged,
    Vec<device::DeviceTimes>,
    Baseline,
    Option<crate::report::ServerUsage>,
    f64,
);

async fn phases(
    run: &Run,
    management: &ManagementClient,
    tracker: &Tracker,
    log: &Mutex<RecordLog>,
) -> Result<Phases, SimError> {
    let count = run.settings.devices;
    // The first revision goes to every device at once (nothing to stage from).
    let (first, changed) =
        change(management, tracker, log, &workload(1, Some(policy())), true).await?;
    converge(run, tracker, log, &first, changed, "revision 1").await?;

    // The staged rollout, measured.
    let curve = MemoryCurve::start(run.server_pid.clone(), run.settings.sample_every);
    tracker.errors.store(0, Ordering::Relaxed);
    let window = run.open_window();
    let (second, changed) = change(
        management,
        tracker,
        log,
        &workload(2, Some(policy())),
        false,
    )
    .await?;
    let phase = converge(run, tracker, log, &second, changed, "rollout").await?;
    let (_, server) = run.close_window(&window);
    let server = server.map(|mut usage| {
        usage.rss_curve = curve.finish();
        usage
    });
    let times: Vec<device::DeviceTimes> = (0..count).map(|i| tracker.times(i)).collect();
    let staged = Staged {
        phase,
        batches: lock(log).batches.clone(),
        device_errors: tracker.errors.load(Ordering::Relaxed),
    };

    // The baseline: the next change with no policy, to every device at once.
    let window = run.open_window();
    let (third, changed) = change(management, tracker, log, &workload(3, None), false).await?;
    let phase = converge(run, tracker, log, &third, changed, "baseline").await?;
    let cpu = run
        .close_window(&window)
        .1
        .map_or(0.0, |usage| usage.cpu_seconds);
    let receive = Latencies::new();
    let mut all_reported = Duration::ZERO;
    for index in 0..count {
        let times = tracker.times(index);
        if let Some(received) = times.received {
            receive.record(received.saturating_sub(changed));
        }
        if let Some(acknowledged) = times.acknowledged {
            all_reported = all_reported.max(acknowledged.saturating_sub(changed));
        }
    }
    let baseline = Baseline {
        phase,
        receive: receive.summary(),
        all_reported: Some(all_reported.as_secs_f64()),
    };
    Ok((staged, times, baseline, server, cpu))
}
