//! Status roll-up: from device heartbeats to `EdgeDevice.status` and
//! `EdgeWorkload.status`.
//!
//! The server stamps when it received a heartbeat; a device not heard from for
//! [`UNKNOWN_AFTER_PERIODS`] heartbeat periods is `unknown`, and so are its workloads.
//! The current time is always passed in.

use crate::model::{
    Condition, DeviceWorkloadStatus, EdgeDevice, EdgeDeviceStatus, EdgeWorkload,
    EdgeWorkloadStatus, Hardware, Time, UpgradeInformation, WorkloadPhaseCounts,
};
use crate::wire::Heartbeat;

use super::WorkloadPhase;
use super::render::DEFAULT_HEARTBEAT_PERIOD_SECONDS;
use super::rollout::{RolloutState, RolloutStatus};

/// Heartbeat periods without news after which a device is `unknown`.
pub const UNKNOWN_AFTER_PERIODS: i64 = 3;

/// Device phase written when the device has not been heard from recently.
pub const DEVICE_PHASE_UNKNOWN: &str = "unknown";

/// Workload condition types.
pub mod condition {
    /// A rollout or deployment is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Every target device runs the workload.
    pub const AVAILABLE: &str = "Available";
    /// Some target devices failed or are unreachable.
    pub const DEGRADED: &str = "Degraded";
}

/// Whether a device last seen at `last_seen` (or never) counts as unknown at `now`.
pub fn is_stale(last_seen: Option<&Time>, now: &Time, heartbeat_period_seconds: i64) -> bool {
    let period = heartbeat_period_seconds.max(1);
    match last_seen {
        None => true,
        Some(seen) => now.0.as_second() - seen.0.as_second() > UNKNOWN_AFTER_PERIODS * period,
    }
}

/// The device's own heartbeat period (its spec, else Flotta's default). Set-level
/// overrides are in its rendered configuration; pass that period where it matters.
pub fn heartbeat_period_of(device: &EdgeDevice) -> i64 {
    device
        .spec
        .heartbeat
        .as_ref()
        .and_then(|h| h.period_seconds)
        .unwrap_or(DEFAULT_HEARTBEAT_PERIOD_SECONDS)
}

/// The device status after a heartbeat received at `received_at`: phase, workloads
/// (transition time kept while a workload's phase does not change), last seen,
/// upgrade state, and hardware (kept from before when the heartbeat carries none).
/// Fields a heartbeat does not speak about are kept from `previous`.
pub fn device_status_from_heartbeat(
    previous: Option<&EdgeDeviceStatus>,
    heartbeat: &Heartbeat,
    received_at: &Time,
) -> EdgeDeviceStatus {
    let mut status = previous.cloned().unwrap_or_default();
    if let Some(phase) = &heartbeat.status {
        status.phase = Some(phase.clone());
    }
    status.last_seen = Some(received_at.clone());
    if let Some(reported) = &heartbeat.workloads {
        let before = previous.and_then(|p| p.workloads.as_ref());
        let mut workloads: Vec<DeviceWorkloadStatus> = reported
            .iter()
            .filter_map(|w| {
                let name = w.name.clone()?;
                let old = before.and_then(|b| b.iter().find(|o| o.name == name));
                let unchanged = old.is_some_and(|o| o.phase == w.status);
                Some(DeviceWorkloadStatus {
                    last_data_upload: w
                        .last_data_upload
                        .as_deref()
                        .and_then(|t| t.parse().ok())
                        .map(Time)
                        .or_else(|| old.and_then(|o| o.last_data_upload.clone())),
                    last_transition_time: if unchanged {
                        old.and_then(|o| o.last_transition_time.clone())
                    } else {
                        Some(received_at.clone())
                    },
                    name,
                    phase: w.status.clone(),
                    extra: Default::default(),
                })
            })
            .collect();
        workloads.sort_by(|a, b| a.name.cmp(&b.name));
        status.workloads = Some(workloads);
    }
    if let Some(upgrade) = &heartbeat.upgrade {
        status.upgrade_information = Some(UpgradeInformation {
            current_commit_id: upgrade.current_commit_id.clone().unwrap_or_default(),
            last_upgrade_status: upgrade.last_upgrade_status.clone(),
            last_upgrade_time: upgrade.last_upgrade_time.clone(),
            extra: Default::default(),
        });
    }
    if let Some(hardware) = &heartbeat.hardware
        && let Ok(hardware) = Hardware::try_from(hardware.clone())
    {
        status.hardware = Some(hardware);
    }
    status
}

/// The device status as of `now`: phase `unknown` and every workload `Unknown` when
/// the device has been silent for [`UNKNOWN_AFTER_PERIODS`] periods; unchanged
/// otherwise.
pub fn age_device_status(
    status: &EdgeDeviceStatus,
    now: &Time,
    heartbeat_period_seconds: i64,
) -> EdgeDeviceStatus {
    let mut status = status.clone();
    if is_stale(status.last_seen.as_ref(), now, heartbeat_period_seconds) {
        status.phase = Some(DEVICE_PHASE_UNKNOWN.into());
        for workload in status.workloads.iter_mut().flatten() {
            if workload.phase.as_deref() != Some(WorkloadPhase::Unknown.as_str()) {
                workload.phase = Some(WorkloadPhase::Unknown.as_str().into());
                workload.last_transition_time = Some(now.clone());
            }
        }
    }
    status
}

/// Device condition types produced by [`device_conditions`].
pub mod device_condition {
    /// The device was heard from within three heartbeat periods.
    pub const ONLINE: &str = "Online";
    /// The device runs the configuration version the server renders for it.
    pub const UPDATED: &str = "Updated";
}

/// Conditions of a device at `now`, for its status: `Online` (`HeartbeatReceived` /
/// `NotHeardFrom`), `Updated` (`UpToDate` / `Outdated`, comparing the configuration
/// version the device last reported with the rendered one) and `ConfigRendered`
/// (from [`RenderedConfig::condition`](super::RenderedConfig::condition)). A
/// condition keeps its transition time from `previous` while its status holds.
///
/// The model's `EdgeDeviceStatus` has no `conditions` field yet; the server stores
/// these wherever it keeps device conditions.
pub fn device_conditions(
    status: &EdgeDeviceStatus,
    rendered: &super::RenderedConfig,
    reported_version: Option<&str>,
    heartbeat_period_seconds: i64,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let mut conditions = ConditionSet {
        previous,
        now,
        generation: None,
        conditions: Vec::with_capacity(3),
    };
    let online = !is_stale(status.last_seen.as_ref(), now, heartbeat_period_seconds);
    conditions.set(
        device_condition::ONLINE,
        online,
        if online {
            "HeartbeatReceived"
        } else {
            "NotHeardFrom"
        },
        match &status.last_seen {
            Some(seen) => format!("last heartbeat at {}", seen.0),
            None => "never heard from".to_owned(),
        },
    );
    let updated = reported_version == Some(rendered.version.as_str());
    conditions.set(
        device_condition::UPDATED,
        updated,
        if updated { "UpToDate" } else { "Outdated" },
        format!(
            "device runs {}, server renders {}",
            reported_version.unwrap_or("nothing"),
            rendered.version
        ),
    );
    let rendered_condition = rendered.condition(now);
    let rendered_ok = rendered_condition.status == "True";
    conditions.set(
        &rendered_condition.type_,
        rendered_ok,
        &rendered_condition.reason,
        rendered_condition.message,
    );
    conditions.conditions
}

/// What one target device says about one workload.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadReport<'a> {
    /// Phase string the device reported for the workload, if it reported it.
    pub reported_phase: Option<&'a str>,
    /// When the device was last heard from.
    pub last_seen: Option<&'a Time>,
    /// The device's heartbeat period.
    pub heartbeat_period_seconds: i64,
}

impl<'a> WorkloadReport<'a> {
    /// The report of `workload_name` in a device's status.
    pub fn from_device(device: &'a EdgeDevice, workload_name: &str) -> Self {
        let status = device.status.as_ref();
        Self {
            reported_phase: status
                .and_then(|s| s.workloads.as_ref())
                .and_then(|w| w.iter().find(|w| w.name == workload_name))
                .and_then(|w| w.phase.as_deref()),
            last_seen: status.and_then(|s| s.last_seen.as_ref()),
            heartbeat_period_seconds: heartbeat_period_of(device),
        }
    }

    /// The workload's phase on this device as of `now`: `Unknown` when the device is
    /// silent, `Deploying` when it is heard from but has not reported the workload yet.
    pub fn phase(&self, now: &Time) -> WorkloadPhase {
        if is_stale(self.last_seen, now, self.heartbeat_period_seconds) {
            return WorkloadPhase::Unknown;
        }
        match self.reported_phase {
            None => WorkloadPhase::Deploying,
            Some(phase) => WorkloadPhase::from_reported(phase),
        }
    }
}

/// Builds conditions, keeping a previous condition's transition time while its
/// status holds.
struct ConditionSet<'a> {
    previous: &'a [Condition],
    now: &'a Time,
    generation: Option<i64>,
    conditions: Vec<Condition>,
}

impl ConditionSet<'_> {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" };
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| self.now.clone(), |c| c.last_transition_time.clone());
        self.conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time,
            observed_generation: self.generation,
        });
    }
}

/// `EdgeWorkload.status` from its target devices' reports at `now`, and the rollout's
/// status if one runs. Conditions keep their transition time while their status
/// holds:
///
/// - `Available`: `True` (`AllRunning`) when every target runs it, else `False`
///   (`NoTargets` or `NotAllRunning`);
/// - `Progressing`: `True` while devices deploy (`Deploying`) or a rollout batch is
///   under way (`RolloutInProgress`); `False` when a rollout paused (`RolloutPaused`)
///   or nothing is left to do (`Complete`);
/// - `Degraded`: `True` when devices failed (`DevicesFailed`) or are silent
///   (`DevicesUnreachable`), else `False` (`Healthy`).
pub fn workload_status(
    workload: &EdgeWorkload,
    reports: &[WorkloadReport<'_>],
    rollout: Option<&RolloutStatus>,
    now: &Time,
) -> EdgeWorkloadStatus {
    let mut counts = WorkloadPhaseCounts::default();
    for report in reports {
        match report.phase(now) {
            WorkloadPhase::Deploying => counts.deploying += 1,
            WorkloadPhase::Running => counts.running += 1,
            WorkloadPhase::Failed => counts.failed += 1,
            WorkloadPhase::Unknown => counts.unknown += 1,
        }
    }
    let total = i64::try_from(reports.len()).unwrap_or(i64::MAX);
    let generation = workload.metadata.generation;
    let previous: &[Condition] = workload
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let mut conditions = ConditionSet {
        previous,
        now,
        generation,
        conditions: Vec::with_capacity(3),
    };

    let (available, reason) = if total == 0 {
        (false, "NoTargets")
    } else if counts.running == total {
        (true, "AllRunning")
    } else {
        (false, "NotAllRunning")
    };
    conditions.set(
        condition::AVAILABLE,
        available,
        reason,
        format!("{} of {total} devices running", counts.running),
    );

    let (progressing, reason, message) = match rollout.map(|r| (&r.state, r.current_batch)) {
        Some((RolloutState::Paused { batch }, _)) => (
            false,
            "RolloutPaused",
            format!("rollout paused: batch {batch} failed"),
        ),
        Some((RolloutState::Progressing, batch)) => (
            true,
            "RolloutInProgress",
            format!("rolling out batch {batch}"),
        ),
        _ if counts.deploying > 0 => (
            true,
            "Deploying",
            format!("{} devices deploying", counts.deploying),
        ),
        _ => (false, "Complete", "nothing left to deploy".to_owned()),
    };
    conditions.set(condition::PROGRESSING, progressing, reason, message);

    let (degraded, reason) = if counts.failed > 0 {
        (true, "DevicesFailed")
    } else if counts.unknown > 0 {
        (true, "DevicesUnreachable")
    } else {
        (false, "Healthy")
    };
    conditions.set(
        condition::DEGRADED,
        degraded,
        reason,
        format!(
            "{} failed, {} not heard from",
            counts.failed, counts.unknown
        ),
    );

    EdgeWorkloadStatus {
        conditions: Some(conditions.conditions),
        current_batch: rollout.and_then(|r| i32::try_from(r.current_batch).ok()),
        observed_generation: generation,
        phase_counts: Some(counts),
        extra: workload
            .status
            .as_ref()
            .map(|s| s.extra.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WorkloadStatus;
    use k8s_openapi::jiff::Timestamp;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("in range"))
    }

    fn heartbeat(workloads: &[(&str, &str)]) -> Heartbeat {
        Heartbeat {
            status: Some("up".into()),
            workloads: Some(
                workloads
                    .iter()
                    .map(|(name, status)| WorkloadStatus {
                        name: Some((*name).into()),
                        status: Some((*status).into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn heartbeat_updates_device_status_and_keeps_transition_times() {
        let first = device_status_from_heartbeat(None, &heartbeat(&[("w", "Running")]), &at(100));
        assert_eq!(first.phase.as_deref(), Some("up"));
        assert_eq!(first.last_seen, Some(at(100)));
        let second =
            device_status_from_heartbeat(Some(&first), &heartbeat(&[("w", "Running")]), &at(160));
        let workloads = second.workloads.as_ref().expect("workloads");
        assert_eq!(workloads[0].last_transition_time, Some(at(100)));
        assert_eq!(second.last_seen, Some(at(160)));
        let third =
            device_status_from_heartbeat(Some(&second), &heartbeat(&[("w", "Exited")]), &at(220));
        let workloads = third.workloads.as_ref().expect("workloads");
        assert_eq!(workloads[0].last_transition_time, Some(at(220)));
    }

    #[test]
    fn silent_device_becomes_unknown_after_three_periods() {
        let status = device_status_from_heartbeat(None, &heartbeat(&[("w", "Running")]), &at(0));
        assert_eq!(
            age_device_status(&status, &at(180), 60).phase.as_deref(),
            Some("up")
        );
        let aged = age_device_status(&status, &at(181), 60);
        assert_eq!(aged.phase.as_deref(), Some(DEVICE_PHASE_UNKNOWN));
        assert_eq!(
            aged.workloads.as_ref().expect("workloads")[0]
                .phase
                .as_deref(),
            Some("Unknown")
        );
    }

    #[test]
    fn workload_status_counts_phases_and_sets_conditions() {
        let mut workload = EdgeWorkload::default();
        workload.metadata.generation = Some(4);
        let seen = at(1000);
        let report = |phase| WorkloadReport {
            reported_phase: phase,
            last_seen: Some(&seen),
            heartbeat_period_seconds: 60,
        };
        let old = at(0);
        let reports = [
            report(Some("Running")),
            report(Some("running")),
            report(Some("Exited")),
            report(None),
            WorkloadReport {
                reported_phase: Some("Running"),
                last_seen: Some(&old),
                heartbeat_period_seconds: 60,
            },
        ];
        let status = workload_status(&workload, &reports, None, &at(1010));
        assert_eq!(
            status.phase_counts,
            Some(WorkloadPhaseCounts {
                deploying: 1,
                running: 2,
                failed: 1,
                unknown: 1
            })
        );
        assert_eq!(status.observed_generation, Some(4));
        let conditions = status.conditions.expect("conditions");
        let find = |t: &str| conditions.iter().find(|c| c.type_ == t).expect("condition");
        assert_eq!(find(condition::AVAILABLE).status, "False");
        assert_eq!(find(condition::PROGRESSING).reason, "Deploying");
        assert_eq!(find(condition::DEGRADED).reason, "DevicesFailed");

        let all_running = [report(Some("Running")), report(Some("Running"))];
        workload.status = Some(workload_status(&workload, &all_running, None, &at(1010)));
        let later = workload_status(&workload, &all_running, None, &at(1020));
        let conditions = later.conditions.expect("conditions");
        let available = conditions
            .iter()
            .find(|c| c.type_ == condition::AVAILABLE)
            .expect("available");
        assert_eq!(available.status, "True");
        assert_eq!(
            available.last_transition_time,
            at(1010),
            "unchanged status keeps its time"
        );
    }

    #[test]
    fn device_conditions_follow_heartbeats_and_versions() {
        let rendered = super::super::RenderedConfig::from_message(Default::default());
        let status = device_status_from_heartbeat(None, &heartbeat(&[]), &at(0));
        let version = rendered.version.to_string();
        let fresh = device_conditions(&status, &rendered, Some(&version), 60, &[], &at(10));
        let get = |conditions: &[Condition], t: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| {
                    (
                        c.status.clone(),
                        c.reason.clone(),
                        c.last_transition_time.clone(),
                    )
                })
                .expect("condition present")
        };
        assert_eq!(get(&fresh, device_condition::ONLINE).0, "True");
        assert_eq!(get(&fresh, device_condition::UPDATED).1, "UpToDate");
        assert_eq!(get(&fresh, "ConfigRendered").0, "True");
        let stale = device_conditions(&status, &rendered, Some("old"), 60, &fresh, &at(500));
        assert_eq!(get(&stale, device_condition::ONLINE).1, "NotHeardFrom");
        assert_eq!(get(&stale, device_condition::UPDATED).1, "Outdated");
        assert_eq!(
            get(&stale, "ConfigRendered").2,
            at(10),
            "unchanged status keeps its time"
        );
    }

    #[test]
    fn paused_rollout_shows_in_progressing() {
        let rollout = RolloutStatus {
            current_batch: 1,
            batches: vec![],
            state: RolloutState::Paused { batch: 1 },
        };
        let status = workload_status(&EdgeWorkload::default(), &[], Some(&rollout), &at(5));
        let conditions = status.conditions.expect("conditions");
        assert!(conditions.iter().any(|c| c.type_ == condition::PROGRESSING
            && c.status == "False"
            && c.reason == "RolloutPaused"));
        assert_eq!(status.current_batch, Some(1));
    }
}
