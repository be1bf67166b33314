//! Status roll-up: from device heartbeats to `EdgeDevice.status` and
//! `EdgeWorkload.status`.
//!
//! The server stamps when it received a heartbeat; a device not heard from for
//! [`UNKNOWN_AFTER_PERIODS`] heartbeat periods is offline (phase `unknown`), and so
//! are its workloads. The current time is always passed in.
//!
//! - [`device_status_from_heartbeat`]: a heartbeat on top of the stored status,
//!   with the revision of each workload the device runs and its conditions.
//! - [`device_status_at`]: the same status as time passes (the server's sweep).
//! - [`device_conditions`]: `Online`, `Updated`, `Degraded`, `SpecValid`,
//!   `MultipleOwners` (see [`device_condition`]).
//! - [`workload_status`]: a workload's targets counted by the revision they run.

use crate::model::{
    Condition, DeviceWorkloadStatus, EdgeDevice, EdgeDeviceStatus, EdgeWorkload,
    EdgeWorkloadStatus, Hardware, Time, UpgradeInformation, WorkloadDeviceCounts,
    WorkloadPhaseCounts,
};
use crate::wire::Heartbeat;

use super::WorkloadPhase;
use super::render::{DEFAULT_HEARTBEAT_PERIOD_SECONDS, ServedConfig};
use super::revision::RolloutRecord;

/// Heartbeat periods without news after which a device is offline (`unknown`).
pub const UNKNOWN_AFTER_PERIODS: i64 = 3;

/// Device phase written when the device has not been heard from recently.
pub const DEVICE_PHASE_UNKNOWN: &str = "unknown";

/// Device phase a device reports when something on it failed.
pub const DEVICE_PHASE_DEGRADED: &str = "degraded";

/// Workload condition types.
pub mod condition {
    /// A rollout or deployment is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Every target device runs the current revision.
    pub const AVAILABLE: &str = "Available";
    /// Some target devices failed or are unreachable.
    pub const DEGRADED: &str = "Degraded";
}

/// Device condition types produced by [`device_conditions`].
pub mod device_condition {
    /// `True` while the device is heard from within
    /// [`UNKNOWN_AFTER_PERIODS`](super::UNKNOWN_AFTER_PERIODS) heartbeat periods
    /// (`HeartbeatReceived`), `False` after (`Offline`), `Unknown` before its first
    /// heartbeat (`NeverHeardFrom`).
    pub const ONLINE: &str = "Online";
    /// `True` (`UpToDate`) when the device runs the configuration version the
    /// server renders for it; `False` with `Updating` while an online, healthy
    /// device has not applied it yet, `OutOfDate` when it cannot get there (offline,
    /// degraded, or the rendering has errors).
    pub const UPDATED: &str = "Updated";
    /// `True` when the device reports itself degraded or a workload failed, with
    /// the reason the agent gave (its first warning event, e.g. `ApplyFailed`) or
    /// `WorkloadFailed`; `False` (`Healthy`) otherwise.
    pub const DEGRADED: &str = "Degraded";
    /// `False` when the device's inputs do not render into a configuration fit to
    /// send (reason: the first problem's, e.g. `TemplateFailed`; message: every
    /// problem); the device keeps receiving its last good configuration.
    pub const SPEC_VALID: &str = super::super::render::CONFIG_RENDERED_CONDITION;
    /// `True` (`SeveralDeviceSets`) when several device sets claim the device.
    pub const MULTIPLE_OWNERS: &str = "MultipleOwners";
}

/// Whether a device last seen at `last_seen` (or never) counts as unknown at `now`.
pub fn is_stale(last_seen: Option<&Time>, now: &Time, heartbeat_period_seconds: i64) -> bool {
    let period = heartbeat_period_seconds.max(1);
    match last_seen {
        None => true,
        Some(seen) => now.0.as_second() - seen.0.as_second() > UNKNOWN_AFTER_PERIODS * period,
    }
}

/// When a device last seen at `last_seen` turns offline: the first whole second at
/// which [`is_stale`] holds. Servers wake their sweep then.
pub fn offline_at(last_seen: &Time, heartbeat_period_seconds: i64) -> i64 {
    last_seen.0.as_second() + UNKNOWN_AFTER_PERIODS * heartbeat_period_seconds.max(1) + 1
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

/// The revision of workload `name` a device runs, by these rules, first match wins:
/// the revision the heartbeat reports for it (agents of this SDK); the revision
/// of that workload in the configuration the server serves, when the heartbeat's
/// configuration `version` is that configuration's (Flotta's agents report only
/// the version); the revision known before, when the device still reports the
/// version it reported before; none.
fn workload_revision(
    reported: Option<&str>,
    name: &str,
    heartbeat_version: Option<&str>,
    served: Option<&ServedConfig>,
    previous_version: Option<&str>,
    previous_revision: Option<&str>,
) -> Option<String> {
    if let Some(revision) = reported.filter(|r| !r.is_empty()) {
        return Some(revision.to_owned());
    }
    let version = heartbeat_version?;
    if let Some(served) = served.filter(|s| s.version.as_deref() == Some(version))
        && let Some(revision) = served.revisions.get(name)
    {
        return Some(revision.clone());
    }
    (previous_version == Some(version))
        .then(|| previous_revision.map(str::to_owned))
        .flatten()
}

/// The device status after a heartbeat received at `received_at`: phase, workloads
/// with the revision each runs (transition time kept while a workload's phase does
/// not change), last seen, configuration version, upgrade state, hardware (kept
/// from before when the heartbeat carries none) and conditions. `served` is what
/// the server sends the device now (`None` when it cannot tell: the conditions that
/// depend on it are kept from before). Fields a heartbeat does not speak about are
/// kept from `previous`.
pub fn device_status_from_heartbeat(
    previous: Option<&EdgeDeviceStatus>,
    heartbeat: &Heartbeat,
    received_at: &Time,
    served: Option<&ServedConfig>,
) -> EdgeDeviceStatus {
    let mut status = previous.cloned().unwrap_or_default();
    if let Some(phase) = &heartbeat.status {
        status.phase = Some(phase.clone());
    }
    status.last_seen = Some(received_at.clone());
    let previous_version = previous.and_then(|p| p.last_synced_resource_version.as_deref());
    let reported_version = heartbeat.version.as_deref().filter(|v| !v.is_empty());
    // The configuration the device runs, as it reports it (Flotta's agents too).
    if let Some(version) = reported_version {
        status.last_synced_resource_version = Some(version.to_owned());
    }
    // The set revision in the configuration the device runs: the one served, when
    // it reports the version served; kept while it reports the version it did.
    if let Some(version) = reported_version {
        if let Some(served) = served.filter(|s| s.version.as_deref() == Some(version)) {
            status
                .device_set_revision
                .clone_from(&served.device_set_revision);
        } else if previous_version != Some(version) {
            status.device_set_revision = None;
        }
    }
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
                    revision: workload_revision(
                        w.revision.as_deref(),
                        &name,
                        reported_version,
                        served,
                        previous_version,
                        old.and_then(|o| o.revision.as_deref()),
                    ),
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
            phase: upgrade.phase.clone(),
            target: upgrade.target.clone(),
            message: upgrade.message.clone(),
            extra: Default::default(),
        });
    }
    if let Some(reports) = heartbeat.playbook_executions.as_deref()
        && !reports.is_empty()
    {
        status.playbook_exec = Some(crate::ansible::device_entries(
            previous.and_then(|p| p.playbook_exec.as_deref()),
            reports,
            received_at,
        ));
    }
    if let Some(hardware) = &heartbeat.hardware
        && let Ok(hardware) = Hardware::try_from(hardware.clone())
    {
        status.hardware = Some(hardware);
    }
    // The agent's own account of a failure: its first warning event (the cause
    // comes before its consequences, e.g. ApplyFailed before RolledBack).
    let warning = heartbeat.events.iter().flatten().find(|e| {
        e.type_.as_deref() == Some("warn") && e.reason.as_deref().is_some_and(|r| !r.is_empty())
    });
    let mut previous_conditions = status.conditions.take().unwrap_or_default();
    if let Some(event) = warning {
        let since = previous_conditions
            .iter()
            .find(|c| c.type_ == device_condition::DEGRADED && c.status == "True")
            .map_or_else(|| received_at.clone(), |c| c.last_transition_time.clone());
        previous_conditions.retain(|c| c.type_ != device_condition::DEGRADED);
        previous_conditions.push(Condition {
            type_: device_condition::DEGRADED.into(),
            status: "True".into(),
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
            last_transition_time: since,
            observed_generation: None,
        });
    }
    status.conditions = Some(previous_conditions);
    let conditions = device_conditions(&status, Some(received_at), served, received_at);
    status.conditions = Some(conditions);
    status
}

/// The device status as of `now`, the device last heard from at `last_seen`: when
/// it has been silent for [`UNKNOWN_AFTER_PERIODS`] periods, phase `unknown` and
/// every workload `Unknown`; conditions recomputed ([`device_conditions`]). The
/// result carries `last_seen`.
pub fn device_status_at(
    status: &EdgeDeviceStatus,
    last_seen: Option<&Time>,
    served: Option<&ServedConfig>,
    now: &Time,
) -> EdgeDeviceStatus {
    let mut status = status.clone();
    status.last_seen = last_seen.cloned();
    let period = served.map_or(DEFAULT_HEARTBEAT_PERIOD_SECONDS, |s| {
        s.heartbeat_period_seconds
    });
    let mut status = age_device_status(&status, now, period);
    status.conditions = Some(device_conditions(&status, last_seen, served, now));
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

/// Conditions of a device at `now` (see [`device_condition`] for each type and
/// its reasons), from its status (whose `conditions` are the previous ones: a
/// condition keeps its transition time while its status holds), when it was last
/// heard from, and what the server serves it (`None`: the conditions that depend
/// on it are kept from before). Messages hold no times, so an unchanged device
/// gets identical conditions and its status is not rewritten.
pub fn device_conditions(
    status: &EdgeDeviceStatus,
    last_seen: Option<&Time>,
    served: Option<&ServedConfig>,
    now: &Time,
) -> Vec<Condition> {
    let previous: &[Condition] = status.conditions.as_deref().unwrap_or(&[]);
    let mut conditions = ConditionSet {
        previous,
        now,
        generation: None,
        conditions: Vec::with_capacity(5),
    };
    let period = served.map_or(DEFAULT_HEARTBEAT_PERIOD_SECONDS, |s| {
        s.heartbeat_period_seconds
    });
    let online = last_seen.map(|_| !is_stale(last_seen, now, period));
    match online {
        None => conditions.set_status(
            device_condition::ONLINE,
            "Unknown",
            "NeverHeardFrom",
            "the device has not sent a heartbeat".into(),
        ),
        Some(true) => conditions.set(
            device_condition::ONLINE,
            true,
            "HeartbeatReceived",
            format!("heartbeats expected every {period} s"),
        ),
        Some(false) => conditions.set(
            device_condition::ONLINE,
            false,
            "Offline",
            format!("no heartbeat for more than {UNKNOWN_AFTER_PERIODS} periods of {period} s"),
        ),
    }

    let failed: Vec<&str> = status
        .workloads
        .iter()
        .flatten()
        .filter(|w| {
            w.phase
                .as_deref()
                .is_some_and(|p| WorkloadPhase::from_reported(p) == WorkloadPhase::Failed)
        })
        .map(|w| w.name.as_str())
        .collect();
    let degraded = status.phase.as_deref() == Some(DEVICE_PHASE_DEGRADED) || !failed.is_empty();
    let was_degraded = previous
        .iter()
        .find(|c| c.type_ == device_condition::DEGRADED && c.status == "True");
    match (degraded, was_degraded) {
        (false, _) => conditions.set(device_condition::DEGRADED, false, "Healthy", String::new()),
        // The agent's reason stands while the device stays degraded.
        (true, Some(before)) => conditions.set(
            device_condition::DEGRADED,
            true,
            &before.reason,
            before.message.clone(),
        ),
        (true, None) if !failed.is_empty() => conditions.set(
            device_condition::DEGRADED,
            true,
            "WorkloadFailed",
            format!("failed workloads: {}", failed.join(", ")),
        ),
        (true, None) => conditions.set(
            device_condition::DEGRADED,
            true,
            "DeviceDegraded",
            "the device reports itself degraded".into(),
        ),
    }

    let Some(served) = served else {
        // Without the rendering the server cannot say more: keep what was said.
        for kept in previous.iter().filter(|c| {
            [
                device_condition::UPDATED,
                device_condition::SPEC_VALID,
                device_condition::MULTIPLE_OWNERS,
            ]
            .contains(&c.type_.as_str())
        }) {
            conditions.conditions.push(kept.clone());
        }
        return conditions.conditions;
    };
    let reported = status.last_synced_resource_version.as_deref();
    let healthy = online == Some(true) && !degraded;
    let (updated, reason, message) = match (&served.version, &served.spec_error) {
        (_, Some(_)) => (
            false,
            "OutOfDate",
            format!(
                "the configuration rendered for the device has errors (see {}); it runs {}",
                device_condition::SPEC_VALID,
                reported.unwrap_or("nothing")
            ),
        ),
        (Some(version), None) if reported == Some(version.as_str()) => (
            true,
            "UpToDate",
            format!("the device runs configuration {version}"),
        ),
        (Some(version), None) => (
            false,
            if healthy { "Updating" } else { "OutOfDate" },
            format!(
                "the device runs {}, the server sends {version}",
                reported.unwrap_or("nothing")
            ),
        ),
        (None, None) => (
            false,
            "OutOfDate",
            "no configuration can be sent to the device".to_owned(),
        ),
    };
    conditions.set(device_condition::UPDATED, updated, reason, message);
    match &served.spec_error {
        None => conditions.set(device_condition::SPEC_VALID, true, "Valid", String::new()),
        Some((reason, message)) => conditions.set(
            device_condition::SPEC_VALID,
            false,
            reason.as_str(),
            message.clone(),
        ),
    }
    match &served.owners_warning {
        None => conditions.set(
            device_condition::MULTIPLE_OWNERS,
            false,
            "SingleOwner",
            String::new(),
        ),
        Some(message) => conditions.set(
            device_condition::MULTIPLE_OWNERS,
            true,
            "SeveralDeviceSets",
            message.clone(),
        ),
    }
    conditions.conditions
}

/// What one target device runs of one workload, as the server counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceWorkloadState {
    /// Runs the workload's current revision.
    Current,
    /// Runs another revision (or one the server cannot tell).
    Older,
    /// Has not reported the workload running yet.
    Deploying,
    /// The workload failed there, or the device failed to apply the current
    /// revision; with the reason.
    Failed(String),
    /// Not heard from recently.
    Unknown,
}

/// What one target device says about one workload.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadReport<'a> {
    /// Phase string the device reported for the workload, if it reported it.
    pub reported_phase: Option<&'a str>,
    /// Revision of the workload the device runs, if known.
    pub revision: Option<&'a str>,
    /// When the device was last heard from.
    pub last_seen: Option<&'a Time>,
    /// The device's heartbeat period.
    pub heartbeat_period_seconds: i64,
    /// The reason of the device's `Degraded` condition, while it is degraded.
    pub failure: Option<&'a str>,
}

impl<'a> WorkloadReport<'a> {
    /// The report of `workload_name` in a device's status.
    pub fn from_device(device: &'a EdgeDevice, workload_name: &str) -> Self {
        let status = device.status.as_ref();
        let workload = status
            .and_then(|s| s.workloads.as_ref())
            .and_then(|w| w.iter().find(|w| w.name == workload_name));
        Self {
            reported_phase: workload.and_then(|w| w.phase.as_deref()),
            revision: workload.and_then(|w| w.revision.as_deref()),
            last_seen: status.and_then(|s| s.last_seen.as_ref()),
            heartbeat_period_seconds: heartbeat_period_of(device),
            failure: status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| {
                    c.iter()
                        .find(|c| c.type_ == device_condition::DEGRADED && c.status == "True")
                })
                .map(|c| c.reason.as_str()),
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

    /// What the device runs of the workload as of `now`, compared with its
    /// `current` revision (`None`: the workload cannot be rendered, so nothing a
    /// device runs is current). A degraded device not on the current revision
    /// failed to get there, with the reason it gave.
    pub fn state(&self, now: &Time, current: Option<&str>) -> DeviceWorkloadState {
        let phase = self.phase(now);
        let on_current = current.is_some() && self.revision == current;
        match phase {
            WorkloadPhase::Unknown => DeviceWorkloadState::Unknown,
            WorkloadPhase::Failed => DeviceWorkloadState::Failed(
                self.failure
                    .map(str::to_owned)
                    .unwrap_or_else(|| failed_phase_reason(self.reported_phase)),
            ),
            WorkloadPhase::Running if on_current => DeviceWorkloadState::Current,
            _ if !on_current && self.failure.is_some() => {
                DeviceWorkloadState::Failed(self.failure.unwrap_or_default().to_owned())
            }
            WorkloadPhase::Running => DeviceWorkloadState::Older,
            WorkloadPhase::Deploying => DeviceWorkloadState::Deploying,
        }
    }
}

/// `WorkloadExited` for a workload reported `exited`, and so on.
fn failed_phase_reason(phase: Option<&str>) -> String {
    let phase = phase.unwrap_or("failed");
    let mut chars = phase.chars();
    let capitalised: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars.map(|c| c.to_ascii_lowercase()))
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("Workload{capitalised}")
}

/// Builds conditions, keeping a previous condition's transition time while its
/// status holds.
pub(super) struct ConditionSet<'a> {
    pub(super) previous: &'a [Condition],
    pub(super) now: &'a Time,
    pub(super) generation: Option<i64>,
    pub(super) conditions: Vec<Condition>,
}

impl ConditionSet<'_> {
    pub(super) fn set(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        self.set_status(
            type_,
            if status { "True" } else { "False" },
            reason,
            message,
        );
    }

    pub(super) fn set_status(&mut self, type_: &str, status: &str, reason: &str, message: String) {
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

/// `EdgeWorkload.status` from its target devices' reports at `now`, the workload's
/// `current` revision (the content hash of the definition devices are sent; see
/// [`PreparedWorkload::version`](super::PreparedWorkload::version)), and the
/// rollout record ([`RolloutRecord`]) if one runs. Devices are counted by revision
/// ([`WorkloadReport::state`]) into `status.devices`, and by phase into
/// `status.phaseCounts`. Conditions keep their transition time while their status
/// holds:
///
/// - `Available`: `True` (`AllCurrent`) when every target runs the current
///   revision, else `False` (`NoTargets` or `NotAllCurrent`);
/// - `Progressing`: `True` while devices run an older revision or deploy
///   (`Updating`) or a rollout batch is under way (`RolloutInProgress`); `False`
///   when a rollout paused (`RolloutPaused`) or nothing is left to do (`Complete`);
/// - `Degraded`: `True` when devices failed (`DevicesFailed`, with the count of
///   each reason) or are silent (`DevicesUnreachable`), else `False` (`Healthy`).
///
/// `observedGeneration` is the generation `current` was computed from.
pub fn workload_status(
    workload: &EdgeWorkload,
    reports: &[WorkloadReport<'_>],
    current: Option<&str>,
    rollout: Option<&RolloutRecord>,
    now: &Time,
) -> EdgeWorkloadStatus {
    let mut counts = WorkloadPhaseCounts::default();
    let mut devices = WorkloadDeviceCounts::default();
    for report in reports {
        match report.phase(now) {
            WorkloadPhase::Deploying => counts.deploying += 1,
            WorkloadPhase::Running => counts.running += 1,
            WorkloadPhase::Failed => counts.failed += 1,
            WorkloadPhase::Unknown => counts.unknown += 1,
        }
        devices.targeted += 1;
        match report.state(now, current) {
            DeviceWorkloadState::Current => devices.current += 1,
            DeviceWorkloadState::Older => devices.older += 1,
            DeviceWorkloadState::Deploying => devices.deploying += 1,
            DeviceWorkloadState::Unknown => devices.unknown += 1,
            DeviceWorkloadState::Failed(reason) => {
                devices.failed += 1;
                *devices.failure_reasons.entry(reason).or_default() += 1;
            }
        }
    }
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
    let total = devices.targeted;
    let revision = current.unwrap_or("(none: the workload cannot be rendered)");
    let (available, reason) = if total == 0 {
        (false, "NoTargets")
    } else if devices.current == total {
        (true, "AllCurrent")
    } else {
        (false, "NotAllCurrent")
    };
    conditions.set(
        condition::AVAILABLE,
        available,
        reason,
        format!(
            "{} of {total} devices run revision {revision}",
            devices.current
        ),
    );

    let (progressing, reason, message) = match rollout {
        Some(record) if record.paused => (
            false,
            "RolloutPaused",
            format!(
                "rollout paused at batch {}: {}: {}",
                record.current_batch,
                record.reason.as_deref().unwrap_or("Paused"),
                record.message.as_deref().unwrap_or_default()
            ),
        ),
        Some(record) if !record.complete => (
            true,
            "RolloutInProgress",
            format!(
                "rolling out revision {}: batch {} of {}",
                record.current_revision.as_deref().unwrap_or_default(),
                record.current_batch,
                record.batches.len()
            ),
        ),
        _ if devices.older + devices.deploying > 0 => (
            true,
            "Updating",
            format!(
                "{} devices on an older revision, {} deploying",
                devices.older, devices.deploying
            ),
        ),
        _ => (false, "Complete", "nothing left to deploy".to_owned()),
    };
    conditions.set(condition::PROGRESSING, progressing, reason, message);

    let (degraded, reason) = if devices.failed > 0 {
        (true, "DevicesFailed")
    } else if devices.unknown > 0 {
        (true, "DevicesUnreachable")
    } else {
        (false, "Healthy")
    };
    let reasons: Vec<String> = devices
        .failure_reasons
        .iter()
        .map(|(reason, count)| format!("{reason}: {count}"))
        .collect();
    conditions.set(
        condition::DEGRADED,
        degraded,
        reason,
        if reasons.is_empty() {
            format!(
                "{} failed, {} not heard from",
                devices.failed, devices.unknown
            )
        } else {
            format!(
                "{} failed ({}), {} not heard from",
                devices.failed,
                reasons.join(", "),
                devices.unknown
            )
        },
    );

    EdgeWorkloadStatus {
        conditions: Some(conditions.conditions),
        current_batch: rollout.and_then(|r| i32::try_from(r.current_batch).ok()),
        observed_generation: generation,
        phase_counts: Some(counts),
        revision: current.map(str::to_owned),
        devices: Some(devices),
        rollout: rollout
            .and_then(|r| serde_json::to_value(r).ok())
            .or_else(|| workload.status.as_ref().and_then(|s| s.rollout.clone())),
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
        let first =
            device_status_from_heartbeat(None, &heartbeat(&[("w", "Running")]), &at(100), None);
        assert_eq!(first.phase.as_deref(), Some("up"));
        assert_eq!(first.last_seen, Some(at(100)));
        let second = device_status_from_heartbeat(
            Some(&first),
            &heartbeat(&[("w", "Running")]),
            &at(160),
            None,
        );
        let workloads = second.workloads.as_ref().expect("workloads");
        assert_eq!(workloads[0].last_transition_time, Some(at(100)));
        assert_eq!(second.last_seen, Some(at(160)));
        let third = device_status_from_heartbeat(
            Some(&second),
            &heartbeat(&[("w", "Exited")]),
            &at(220),
            None,
        );
        let workloads = third.workloads.as_ref().expect("workloads");
        assert_eq!(workloads[0].last_transition_time, Some(at(220)));
    }

    #[test]
    fn the_reported_configuration_version_is_kept_until_another_is_reported() {
        let first = device_status_from_heartbeat(
            None,
            &Heartbeat {
                version: Some("v-1".into()),
                ..heartbeat(&[])
            },
            &at(0),
            None,
        );
        assert_eq!(first.last_synced_resource_version.as_deref(), Some("v-1"));
        // A heartbeat without a version (or an empty one) leaves it.
        let second = device_status_from_heartbeat(Some(&first), &heartbeat(&[]), &at(60), None);
        assert_eq!(second.last_synced_resource_version.as_deref(), Some("v-1"));
        let third = device_status_from_heartbeat(
            Some(&second),
            &Heartbeat {
                version: Some("v-2".into()),
                ..heartbeat(&[])
            },
            &at(120),
            None,
        );
        assert_eq!(third.last_synced_resource_version.as_deref(), Some("v-2"));
    }

    #[test]
    fn silent_device_becomes_unknown_after_three_periods() {
        let status =
            device_status_from_heartbeat(None, &heartbeat(&[("w", "Running")]), &at(0), None);
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

    fn report<'a>(
        phase: Option<&'a str>,
        revision: Option<&'a str>,
        seen: &'a Time,
        failure: Option<&'a str>,
    ) -> WorkloadReport<'a> {
        WorkloadReport {
            reported_phase: phase,
            revision,
            last_seen: Some(seen),
            heartbeat_period_seconds: 60,
            failure,
        }
    }

    fn find<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"))
    }

    #[test]
    fn workload_status_counts_devices_by_revision() {
        let mut workload = EdgeWorkload::default();
        workload.metadata.generation = Some(4);
        let seen = at(1000);
        let old = at(0);
        let reports = [
            report(Some("Running"), Some("r2"), &seen, None),
            report(Some("running"), Some("r1"), &seen, None),
            report(Some("Exited"), Some("r2"), &seen, None),
            report(None, None, &seen, None),
            report(Some("Running"), Some("r1"), &seen, Some("ApplyFailed")),
            report(Some("Running"), Some("r2"), &old, None),
        ];
        let status = workload_status(&workload, &reports, Some("r2"), None, &at(1010));
        assert_eq!(
            status.phase_counts,
            Some(WorkloadPhaseCounts {
                deploying: 1,
                running: 3,
                failed: 1,
                unknown: 1
            })
        );
        let devices = status.devices.clone().expect("device counts");
        assert_eq!(
            (
                devices.targeted,
                devices.current,
                devices.older,
                devices.deploying,
                devices.failed,
                devices.unknown
            ),
            (6, 1, 1, 1, 2, 1)
        );
        assert_eq!(devices.failure_reasons.get("ApplyFailed"), Some(&1));
        assert_eq!(devices.failure_reasons.get("WorkloadExited"), Some(&1));
        assert_eq!(status.revision.as_deref(), Some("r2"));
        assert_eq!(status.observed_generation, Some(4));
        let conditions = status.conditions.expect("conditions");
        assert_eq!(find(&conditions, condition::AVAILABLE).status, "False");
        assert_eq!(find(&conditions, condition::PROGRESSING).reason, "Updating");
        let degraded = find(&conditions, condition::DEGRADED);
        assert_eq!(degraded.reason, "DevicesFailed");
        assert!(degraded.message.contains("ApplyFailed: 1"), "{degraded:?}");
    }

    #[test]
    fn a_device_still_on_the_previous_revision_is_not_available() {
        let workload = EdgeWorkload::default();
        let seen = at(1000);
        let updating = [
            report(Some("Running"), Some("new"), &seen, None),
            report(Some("Running"), Some("old"), &seen, None),
        ];
        let status = workload_status(&workload, &updating, Some("new"), None, &at(1010));
        let conditions = status.conditions.expect("conditions");
        assert_eq!(
            find(&conditions, condition::AVAILABLE).reason,
            "NotAllCurrent"
        );
        assert_eq!(find(&conditions, condition::PROGRESSING).status, "True");

        let done = [
            report(Some("Running"), Some("new"), &seen, None),
            report(Some("Running"), Some("new"), &seen, None),
        ];
        let mut workload = workload;
        workload.status = Some(workload_status(
            &workload,
            &done,
            Some("new"),
            None,
            &at(1010),
        ));
        let later = workload_status(&workload, &done, Some("new"), None, &at(1020));
        let conditions = later.conditions.expect("conditions");
        let available = find(&conditions, condition::AVAILABLE);
        assert_eq!(available.status, "True");
        assert_eq!(
            available.last_transition_time,
            at(1010),
            "unchanged status keeps its time"
        );
        assert_eq!(find(&conditions, condition::PROGRESSING).reason, "Complete");
        assert_eq!(find(&conditions, condition::DEGRADED).status, "False");
    }

    fn served(version: &str, revisions: &[(&str, &str)]) -> ServedConfig {
        ServedConfig {
            source: Some(super::super::ServedSource::Rendered),
            version: Some(version.into()),
            revisions: revisions
                .iter()
                .map(|(n, r)| ((*n).to_owned(), (*r).to_owned()))
                .collect(),
            heartbeat_period_seconds: 60,
            spec_error: None,
            owners_warning: None,
            device_set_revision: None,
        }
    }

    #[test]
    fn revisions_come_from_the_agent_or_from_the_configuration_version() {
        let on_v2 = served("v2", &[("w", "rev-2")]);
        // An agent of this SDK names the revision.
        let mut reported = heartbeat(&[("w", "Running")]);
        reported.workloads.as_mut().expect("workloads")[0].revision = Some("rev-own".into());
        let status = device_status_from_heartbeat(None, &reported, &at(0), Some(&on_v2));
        assert_eq!(
            status.workloads.as_ref().expect("workloads")[0]
                .revision
                .as_deref(),
            Some("rev-own")
        );
        // A Flotta agent reports only the version: the served revisions when it is
        // the served version, the previous ones while it stays the same, else none.
        let flotta = |version: &str| Heartbeat {
            version: Some(version.into()),
            ..heartbeat(&[("w", "Running")])
        };
        let on_served = device_status_from_heartbeat(None, &flotta("v2"), &at(0), Some(&on_v2));
        let revision_of =
            |s: &EdgeDeviceStatus| s.workloads.as_ref().expect("workloads")[0].revision.clone();
        assert_eq!(revision_of(&on_served).as_deref(), Some("rev-2"));
        let newer = served("v3", &[("w", "rev-3")]);
        let still =
            device_status_from_heartbeat(Some(&on_served), &flotta("v2"), &at(60), Some(&newer));
        assert_eq!(revision_of(&still).as_deref(), Some("rev-2"));
        let other =
            device_status_from_heartbeat(Some(&on_served), &flotta("v9"), &at(120), Some(&newer));
        assert_eq!(revision_of(&other), None);
    }

    #[test]
    fn device_conditions_follow_heartbeats_versions_and_time() {
        let served = served("v1", &[]);
        let status = device_status_from_heartbeat(
            None,
            &Heartbeat {
                version: Some("v1".into()),
                ..heartbeat(&[])
            },
            &at(0),
            Some(&served),
        );
        let conditions = status.conditions.clone().expect("conditions");
        assert_eq!(find(&conditions, device_condition::ONLINE).status, "True");
        assert_eq!(
            find(&conditions, device_condition::UPDATED).reason,
            "UpToDate"
        );
        assert_eq!(
            find(&conditions, device_condition::DEGRADED).status,
            "False"
        );
        assert_eq!(
            find(&conditions, device_condition::SPEC_VALID).status,
            "True"
        );
        // The same heartbeat later changes nothing: no store write.
        let again = device_status_from_heartbeat(
            Some(&status),
            &Heartbeat {
                version: Some("v1".into()),
                ..heartbeat(&[])
            },
            &at(60),
            Some(&served),
        );
        assert_eq!(again.conditions, status.conditions);

        // Silence: offline once three periods have passed, not before.
        let seen = at(0);
        let quiet = device_status_at(&status, Some(&seen), Some(&served), &at(180));
        assert_eq!(
            find(
                quiet.conditions.as_deref().unwrap_or(&[]),
                device_condition::ONLINE
            )
            .status,
            "True"
        );
        assert_eq!(offline_at(&seen, 60), 181);
        let gone = device_status_at(&status, Some(&seen), Some(&served), &at(181));
        let conditions = gone.conditions.clone().expect("conditions");
        let online = find(&conditions, device_condition::ONLINE);
        assert_eq!(
            (online.status.as_str(), online.reason.as_str()),
            ("False", "Offline")
        );
        assert_eq!(online.last_transition_time, at(181));
        assert_eq!(gone.phase.as_deref(), Some(DEVICE_PHASE_UNKNOWN));
        // Back: online again.
        let back = device_status_from_heartbeat(
            Some(&gone),
            &Heartbeat {
                version: Some("v1".into()),
                ..heartbeat(&[])
            },
            &at(300),
            Some(&served),
        );
        let online = find(
            back.conditions.as_deref().unwrap_or(&[]),
            device_condition::ONLINE,
        )
        .clone();
        assert_eq!(
            (online.status.as_str(), online.last_transition_time),
            ("True", at(300))
        );

        // A new version is being applied, then the device is degraded.
        let newer = served_with(&served, "v2");
        let updating = device_status_at(&back, Some(&at(300)), Some(&newer), &at(301));
        assert_eq!(
            find(
                updating.conditions.as_deref().unwrap_or(&[]),
                device_condition::UPDATED
            )
            .reason,
            "Updating"
        );
        let mut failed = Heartbeat {
            status: Some("degraded".into()),
            version: Some("v1".into()),
            ..heartbeat(&[])
        };
        failed.events = Some(vec![
            crate::wire::EventInfo {
                reason: Some("ApplyFailed".into()),
                message: Some("version v2: no such command".into()),
                type_: Some("warn".into()),
                ..Default::default()
            },
            crate::wire::EventInfo {
                reason: Some("RolledBack".into()),
                message: Some("from v2 to v1".into()),
                type_: Some("warn".into()),
                ..Default::default()
            },
        ]);
        let degraded =
            device_status_from_heartbeat(Some(&updating), &failed, &at(310), Some(&newer));
        let conditions = degraded.conditions.clone().expect("conditions");
        let condition = find(&conditions, device_condition::DEGRADED);
        assert_eq!(
            (
                condition.status.as_str(),
                condition.reason.as_str(),
                condition.message.as_str()
            ),
            ("True", "ApplyFailed", "version v2: no such command")
        );
        assert_eq!(
            find(&conditions, device_condition::UPDATED).reason,
            "OutOfDate"
        );
        // The reason stays while the device stays degraded, without events.
        let quiet = Heartbeat {
            status: Some("degraded".into()),
            version: Some("v1".into()),
            ..heartbeat(&[])
        };
        let still = device_status_from_heartbeat(Some(&degraded), &quiet, &at(320), Some(&newer));
        assert_eq!(still.conditions, degraded.conditions);
    }

    fn served_with(base: &ServedConfig, version: &str) -> ServedConfig {
        ServedConfig {
            version: Some(version.into()),
            ..base.clone()
        }
    }

    #[test]
    fn a_rendering_with_errors_serves_the_last_good_configuration() {
        use super::super::{ProblemReason, RenderProblem, RenderedConfig, ServedSource};
        let good = RenderedConfig::from_message(Default::default());
        let good_served = ServedConfig::decide(&good, None);
        assert_eq!(good_served.source, Some(ServedSource::Rendered));
        let mut bad = RenderedConfig::from_message(crate::wire::DeviceConfigurationMessage {
            device_id: Some("d".into()),
            ..Default::default()
        });
        bad.problems.push(RenderProblem {
            reason: ProblemReason::TemplateFailed,
            object: "EdgeDeviceSet/s".into(),
            field: "spec.template.spec.files[0].path".into(),
            message: "label 'site' is missing".into(),
        });
        let served = ServedConfig::decide(&bad, Some(&good_served));
        assert_eq!(served.source, Some(ServedSource::LastGood));
        assert_eq!(served.version, good_served.version);
        let nothing = ServedConfig::decide(&bad, None);
        assert_eq!(nothing.source, Some(ServedSource::Nothing));
        assert_eq!(nothing.version, None);

        let status = device_status_at(
            &EdgeDeviceStatus::default(),
            Some(&at(0)),
            Some(&served),
            &at(1),
        );
        let conditions = status.conditions.expect("conditions");
        let valid = find(&conditions, device_condition::SPEC_VALID);
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("False", "TemplateFailed")
        );
        assert!(
            valid.message.contains("label 'site' is missing"),
            "{valid:?}"
        );
        assert_eq!(
            find(&conditions, device_condition::UPDATED).reason,
            "OutOfDate"
        );
    }

    #[test]
    fn paused_rollout_shows_in_progressing() {
        let rollout = RolloutRecord {
            current_batch: 1,
            paused: true,
            reason: Some("BatchFailed".into()),
            ..Default::default()
        };
        let status = workload_status(&EdgeWorkload::default(), &[], None, Some(&rollout), &at(5));
        let conditions = status.conditions.expect("conditions");
        assert!(conditions.iter().any(|c| c.type_ == condition::PROGRESSING
            && c.status == "False"
            && c.reason == "RolloutPaused"));
        assert_eq!(status.current_batch, Some(1));
    }
}
