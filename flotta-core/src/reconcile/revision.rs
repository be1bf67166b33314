//! Workload revisions and the enforced rollout between them.
//!
//! Every change of a workload that alters what devices run (its rendered wire form,
//! hashed into a [`ConfigVersion`](super::ConfigVersion)) is an immutable
//! [`WorkloadRevision`]. The server keeps, in the workload's `status.rollout`, a
//! [`RolloutRecord`]: the current revision, the previous (stable) one, the devices
//! given the current revision so far, the batches released and a bounded history
//! of revisions. [`step_rollout`] moves the record forward from what the target
//! devices report; [`assigned_revision`] tells, per device, which revision the
//! server renders for it. The server performs both; neither rule lives elsewhere.
//!
//! Rules of [`step_rollout`]:
//! - A new revision (the workload's rendered form changed) starts a rollout from the
//!   *previous* revision: the current one when its rollout completed, else the
//!   previous one of the superseded rollout (so a bad revision replaced half-way is
//!   never the fallback). The first revision of a workload, a workload without
//!   `rolloutPolicy`, and a revision equal to the previous one (an undo of an
//!   unfinished rollout) go to every target at once: there is nothing staged to keep.
//! - Batches are formed as [`decide_rollout`](super::decide_rollout) forms them:
//!   targets ordered by name, devices already given the new revision first.
//! - Batch 0 is released when the rollout starts. Batch `i + 1` is released once
//!   batch `i` has `successThreshold` of its devices running the new revision and,
//!   with `manualApproval`, an operator approved batch `i + 1`.
//! - Within released batches, a device is given the new revision while
//!   `maxUnavailable` allows it: a target is unavailable when it does not run the
//!   workload, or was given a revision it does not run yet. A device already
//!   unavailable may always be given it.
//! - The rollout pauses (nothing more is given or released) when an operator pauses
//!   it (`PausedByOperator`), when the current batch can no longer reach its
//!   threshold (`BatchFailed`, naming the failing devices and reasons), when the
//!   batch overran `progressDeadlineSeconds` (`ProgressDeadlineExceeded`), or while
//!   the next batch awaits approval (`AwaitingApproval`). Devices already given the
//!   new revision keep it; the failure pause lifts by itself if the failing devices
//!   recover; otherwise `undo` or a fixed revision is the way on.
//! - A device that joins mid-rollout belongs to whichever batch the ordering puts it
//!   in: in a released batch it is given the new revision (within `maxUnavailable`),
//!   otherwise it runs the previous revision like the rest of its batch. So a new
//!   device never runs a revision a batch it belongs to has not been released for.
//! - The rollout completes when every target was given the new revision and the
//!   last batch reached its threshold; from then on every target, present or
//!   future, runs the current revision.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{EdgeWorkload, EdgeWorkloadSpec, RolloutPolicy};

use super::render::prepare_workload;
use super::rollout::{RolloutError, form_batches, quantity, threshold_percent};
use super::status::DeviceWorkloadState;

/// Revisions kept in a workload's history (the previous revision is always kept,
/// whatever its age).
pub const REVISION_HISTORY_LIMIT: usize = 10;

/// Field of `EdgeWorkload.status` holding the [`RolloutRecord`].
pub const ROLLOUT_STATUS_FIELD: &str = "rollout";

/// Prefix of the annotations that steer a rollout; devices are not sent them, so
/// setting them makes no new revision.
pub const ROLLOUT_ANNOTATION_PREFIX: &str = "rollout.flotta.io/";

/// Annotation an operator sets to `"true"` to pause a workload's rollout.
pub const PAUSED_ANNOTATION: &str = "rollout.flotta.io/paused";

/// Annotation recording an operator's approval of a batch: `REVISION/BATCH`, the
/// 0-based index of the last batch approved for that revision.
pub const APPROVED_ANNOTATION: &str = "rollout.flotta.io/approved";

/// One immutable revision of a workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRevision {
    /// Content hash of the workload's rendered form.
    pub revision: String,
    /// The workload's `metadata.generation` when the revision was first seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The spec of that generation, rendered for devices still assigned it.
    pub spec: EdgeWorkloadSpec,
}

impl WorkloadRevision {
    /// The revision `workload` is now: the content hash of its rendered form (as
    /// devices report it), its generation and spec. `None` when the workload cannot
    /// be rendered on its own (then it is not rolled out in stages).
    pub fn of(workload: &EdgeWorkload) -> Option<Self> {
        let revision = prepare_workload(workload, &[], &[]).version()?;
        Some(Self {
            revision: revision.to_string(),
            generation: workload.metadata.generation,
            spec: workload.spec.clone(),
        })
    }

    /// The workload with its spec replaced by this revision's.
    pub fn apply_to(&self, workload: &EdgeWorkload) -> EdgeWorkload {
        EdgeWorkload {
            spec: self.spec.clone(),
            ..workload.clone()
        }
    }
}

/// Progress of one batch, as written in `status.rollout.batches`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    /// Target devices in the batch.
    pub targeted: u32,
    /// Devices of the batch given the current revision.
    pub updated: u32,
    /// Devices of the batch running the current revision.
    pub succeeded: u32,
    /// Devices of the batch given the current revision that failed on it.
    pub failed: u32,
    /// Devices neither succeeded nor failed.
    pub pending: u32,
    /// Devices that must succeed for the batch to succeed.
    pub required: u32,
    /// Whether the batch is released.
    pub released: bool,
}

/// The state of a workload's rollout, kept in `status.rollout` so that it survives
/// restarts and every replica renders the same assignment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// The revision being rolled out (or rolled out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The revision devices not yet given the current one run, and `undo`'s target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<String>,
    /// Whether every target runs the current revision from now on.
    #[serde(default)]
    pub complete: bool,
    /// Devices given the current revision, sorted (empty once complete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updated: Vec<String>,
    /// Batches released so far.
    #[serde(default)]
    pub released_batches: u32,
    /// Index of the batch in progress (the last one once complete).
    #[serde(default)]
    pub current_batch: u32,
    /// When the current batch was released (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_released_at: Option<i64>,
    /// Whether the rollout is paused.
    #[serde(default)]
    pub paused: bool,
    /// Why it is paused: `PausedByOperator`, `BatchFailed`,
    /// `ProgressDeadlineExceeded` or `AwaitingApproval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details of the pause, e.g. the failing devices and their reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Progress of every batch, in order.
    #[serde(default)]
    pub batches: Vec<BatchRecord>,
    /// Revisions, oldest first, the current one last.
    #[serde(default)]
    pub revisions: Vec<WorkloadRevision>,
}

impl RolloutRecord {
    /// Reads the record from a workload's stored status (`None` when absent or
    /// unreadable: the workload is then treated as never rolled out).
    pub fn from_status(status: Option<&serde_json::Value>) -> Option<Self> {
        status
            .and_then(|s| s.get(ROLLOUT_STATUS_FIELD))
            .and_then(|r| serde_json::from_value(r.clone()).ok())
    }

    /// The record in `workload`'s status.
    pub fn of(workload: &EdgeWorkload) -> Option<Self> {
        workload
            .status
            .as_ref()
            .and_then(|s| s.extra.get(ROLLOUT_STATUS_FIELD))
            .and_then(|r| serde_json::from_value(r.clone()).ok())
    }

    /// A revision of the history.
    pub fn revision(&self, revision: &str) -> Option<&WorkloadRevision> {
        self.revisions.iter().rev().find(|r| r.revision == revision)
    }

    /// The previous revision's entry: what `undo` brings back.
    pub fn undo_target(&self) -> Option<&WorkloadRevision> {
        self.previous_revision
            .as_deref()
            .and_then(|r| self.revision(r))
            .or_else(|| {
                // A completed rollout without a recorded previous revision: the
                // newest other revision of the history.
                let current = self.current_revision.as_deref();
                self.revisions
                    .iter()
                    .rev()
                    .find(|r| Some(r.revision.as_str()) != current)
            })
    }

    /// What rendering needs of the record; a change of it re-renders the targets.
    pub fn assignment_key(&self) -> (Option<&str>, Option<&str>, bool, &[String]) {
        (
            self.current_revision.as_deref(),
            self.previous_revision.as_deref(),
            self.complete,
            &self.updated,
        )
    }
}

/// Operator controls of a rollout, read from the workload's annotations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RolloutControls {
    /// Paused by an operator.
    pub paused: bool,
    /// Index of the last batch an operator approved for the live revision.
    pub approved_batch: Option<u32>,
}

impl RolloutControls {
    /// The controls set on `workload` for its live `revision` (an approval given
    /// for another revision does not count).
    pub fn of(workload: &EdgeWorkload, revision: &str) -> Self {
        let annotations = workload.metadata.annotations.as_ref();
        let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
        Self {
            paused: get(PAUSED_ANNOTATION) == Some("true"),
            approved_batch: get(APPROVED_ANNOTATION)
                .and_then(|v| v.rsplit_once('/'))
                .filter(|(rev, _)| *rev == revision)
                .and_then(|(_, batch)| batch.parse().ok()),
        }
    }
}

/// The annotations that approve the next batch of the rollout in `record`.
pub fn approve_next_batch(record: &RolloutRecord) -> Option<(&'static str, String)> {
    let revision = record.current_revision.as_deref()?;
    if record.complete {
        return None;
    }
    Some((
        APPROVED_ANNOTATION,
        format!("{revision}/{}", record.released_batches),
    ))
}

/// One target device of a rollout step.
#[derive(Clone, Debug)]
pub struct RolloutTarget<'a> {
    /// Device name.
    pub name: &'a str,
    /// Device labels (for batch selectors).
    pub labels: &'a BTreeMap<String, String>,
    /// What the device runs, compared with the live revision.
    pub state: DeviceWorkloadState,
}

/// What [`assigned_revision`] renders for a device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AssignedRevision<'a> {
    /// The workload as it is now.
    Live,
    /// An earlier revision of the history.
    Earlier(&'a WorkloadRevision),
}

/// The revision the server renders for `device`, a target of a workload whose live
/// rendered form is `live` and whose rollout is `record` (see the module rules).
pub fn assigned_revision<'a>(
    record: Option<&'a RolloutRecord>,
    live: Option<&str>,
    device: &str,
) -> AssignedRevision<'a> {
    let Some(record) = record else {
        return AssignedRevision::Live;
    };
    let Some(current) = record.current_revision.as_deref() else {
        return AssignedRevision::Live;
    };
    let on_current = record.complete
        || record
            .updated
            .binary_search_by(|d| d.as_str().cmp(device))
            .is_ok();
    let wanted = if on_current {
        current
    } else {
        record.previous_revision.as_deref().unwrap_or(current)
    };
    if Some(wanted) == live {
        return AssignedRevision::Live;
    }
    record
        .revision(wanted)
        .map_or(AssignedRevision::Live, AssignedRevision::Earlier)
}

/// `workload` as the server renders it for `device`, one of its targets: with the
/// spec of the revision its rollout assigns the device ([`assigned_revision`]).
pub fn workload_for_device<'a>(workload: &'a EdgeWorkload, device: &str) -> Cow<'a, EdgeWorkload> {
    let record = RolloutRecord::of(workload);
    let live = WorkloadRevision::of(workload).map(|r| r.revision);
    match assigned_revision(record.as_ref(), live.as_deref(), device) {
        AssignedRevision::Live => Cow::Borrowed(workload),
        AssignedRevision::Earlier(revision) => Cow::Owned(revision.apply_to(workload)),
    }
}

/// What a rollout step changed, for logs and events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutChanges {
    /// A new revision started a rollout.
    pub new_revision: bool,
    /// Batches released by this step (indexes).
    pub released: Vec<u32>,
    /// Devices given the current revision by this step.
    pub newly_updated: Vec<String>,
    /// The rollout paused with this reason in this step.
    pub paused: Option<String>,
    /// The rollout completed in this step.
    pub completed: bool,
}

fn available(state: &DeviceWorkloadState, updated: bool) -> bool {
    match state {
        DeviceWorkloadState::Current => true,
        DeviceWorkloadState::Older => !updated,
        _ => false,
    }
}

fn start_revision(record: &mut RolloutRecord, live: &WorkloadRevision, has_policy: bool) {
    let previous = match record.current_revision.take() {
        None => None,
        Some(current) if record.complete => Some(current),
        Some(_) => record.previous_revision.take(),
    };
    record.revisions.retain(|r| r.revision != live.revision);
    record.revisions.push(live.clone());
    while record.revisions.len() > REVISION_HISTORY_LIMIT {
        let keep = previous.as_deref();
        match record
            .revisions
            .iter()
            .position(|r| Some(r.revision.as_str()) != keep)
        {
            Some(oldest) => {
                record.revisions.remove(oldest);
            }
            None => break,
        }
    }
    record.complete =
        !has_policy || previous.is_none() || previous.as_deref() == Some(live.revision.as_str());
    record.current_revision = Some(live.revision.clone());
    record.previous_revision = previous;
    record.updated.clear();
    record.released_batches = 0;
    record.current_batch = 0;
    record.batch_released_at = None;
    record.paused = false;
    record.reason = None;
    record.message = None;
}

/// Moves a workload's rollout one step: from the stored `record` (`None` when the
/// workload was never rolled out), the `live` revision, the policy, the target
/// devices' states, the operator's `controls` and the time `now` (Unix seconds).
/// Returns the record to store and what changed. See the module rules.
pub fn step_rollout(
    policy: Option<&RolloutPolicy>,
    record: Option<&RolloutRecord>,
    live: &WorkloadRevision,
    targets: &[RolloutTarget<'_>],
    controls: RolloutControls,
    now: i64,
) -> Result<(RolloutRecord, RolloutChanges), RolloutError> {
    let default_policy = RolloutPolicy::default();
    let has_policy = policy.is_some();
    let policy = policy.unwrap_or(&default_policy);
    let threshold = threshold_percent(policy)?;
    let max_unavailable = quantity(
        policy.max_unavailable.as_ref(),
        targets.len(),
        "maxUnavailable",
    )?;

    let mut record = record.cloned().unwrap_or_default();
    let mut changes = RolloutChanges::default();
    if record.current_revision.as_deref() != Some(live.revision.as_str()) {
        start_revision(&mut record, live, has_policy);
        changes.new_revision = true;
    } else if let Some(entry) = record
        .revisions
        .iter_mut()
        .rev()
        .find(|r| r.revision == live.revision)
    {
        // Same rendered form, maybe another spec (a policy edit): keep the newest.
        entry.spec.clone_from(&live.spec);
    } else {
        record.revisions.push(live.clone());
    }

    let mut updated: BTreeSet<String> = record.updated.iter().cloned().collect();
    let mut order: Vec<&RolloutTarget<'_>> = targets.iter().collect();
    order.sort_by(|a, b| {
        updated
            .contains(b.name)
            .cmp(&updated.contains(a.name))
            .then_with(|| a.name.cmp(b.name))
    });
    let labels: Vec<&BTreeMap<String, String>> = order.iter().map(|t| t.labels).collect();
    let batches = form_batches(policy, &labels)?;
    let last_batch = u32::try_from(batches.len().saturating_sub(1)).unwrap_or(u32::MAX);

    if !record.complete {
        if record.released_batches == 0 {
            record.released_batches = 1;
            record.batch_released_at = Some(now);
            changes.released.push(0);
        }
        let mut unavailable = order
            .iter()
            .filter(|t| !available(&t.state, updated.contains(t.name)))
            .count();
        let was_paused = record.paused.then(|| record.reason.clone()).flatten();
        record.paused = false;
        record.reason = None;
        record.message = None;
        loop {
            let index = record.released_batches.saturating_sub(1).min(last_batch);
            record.current_batch = index;
            let members: Vec<&RolloutTarget<'_>> = batches
                .get(index as usize)
                .map(|m| m.iter().filter_map(|&p| order.get(p).copied()).collect())
                .unwrap_or_default();
            let required = (members.len() * threshold).div_ceil(100);
            let succeeded = members
                .iter()
                .filter(|t| t.state == DeviceWorkloadState::Current)
                .count();
            let failing: Vec<String> = members
                .iter()
                .filter(|t| updated.contains(t.name))
                .filter_map(|t| match &t.state {
                    DeviceWorkloadState::Failed(reason) => Some(format!("{}: {reason}", t.name)),
                    _ => None,
                })
                .collect();
            let pause = if controls.paused {
                Some((
                    "PausedByOperator",
                    "paused by an operator (flotta rollout resume continues it)".to_owned(),
                ))
            } else if members.len() - failing.len() < required {
                Some((
                    "BatchFailed",
                    format!(
                        "batch {index}: {} of {} devices failed on revision {} ({}); {} must succeed",
                        failing.len(),
                        members.len(),
                        live.revision,
                        failing.join(", "),
                        required
                    ),
                ))
            } else if succeeded < required
                && policy.progress_deadline_seconds.is_some_and(|deadline| {
                    record
                        .batch_released_at
                        .is_some_and(|at| now.saturating_sub(at) > deadline)
                })
            {
                Some((
                    "ProgressDeadlineExceeded",
                    format!(
                        "batch {index}: {succeeded} of {required} required devices run revision {} after {}s",
                        live.revision,
                        policy.progress_deadline_seconds.unwrap_or_default()
                    ),
                ))
            } else {
                None
            };
            if let Some((reason, message)) = pause {
                record.paused = true;
                record.reason = Some(reason.to_owned());
                record.message = Some(message);
                break;
            }
            // Give the released batches' devices the new revision within the cap.
            for members in batches.iter().take(record.released_batches as usize) {
                for target in members.iter().filter_map(|&p| order.get(p)) {
                    if updated.contains(target.name) {
                        continue;
                    }
                    if available(&target.state, false) {
                        if max_unavailable.is_some_and(|cap| unavailable >= cap) {
                            continue;
                        }
                        unavailable += 1;
                    }
                    updated.insert(target.name.to_owned());
                    changes.newly_updated.push(target.name.to_owned());
                }
            }
            if succeeded < required {
                break;
            }
            if index >= last_batch {
                if order.iter().all(|t| updated.contains(t.name)) {
                    record.complete = true;
                    changes.completed = true;
                }
                break;
            }
            let next = index + 1;
            if policy.manual_approval == Some(true)
                && controls
                    .approved_batch
                    .is_none_or(|approved| approved < next)
            {
                record.paused = true;
                record.reason = Some("AwaitingApproval".to_owned());
                record.message = Some(format!(
                    "batch {index} succeeded; batch {next} waits for approval (flotta rollout approve)"
                ));
                break;
            }
            record.released_batches = next + 1;
            record.batch_released_at = Some(now);
            changes.released.push(next);
        }
        if record.paused && was_paused != record.reason {
            changes.paused.clone_from(&record.reason);
        }
    }

    record.batches = batches
        .iter()
        .enumerate()
        .map(|(i, members)| {
            let members: Vec<&RolloutTarget<'_>> = members
                .iter()
                .filter_map(|&p| order.get(p).copied())
                .collect();
            let on_current = |t: &RolloutTarget<'_>| record.complete || updated.contains(t.name);
            let succeeded = members
                .iter()
                .filter(|t| t.state == DeviceWorkloadState::Current)
                .count();
            let failed = members
                .iter()
                .filter(|t| on_current(t) && matches!(t.state, DeviceWorkloadState::Failed(_)))
                .count();
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            BatchRecord {
                targeted: count(members.len()),
                updated: count(members.iter().filter(|t| on_current(t)).count()),
                succeeded: count(succeeded),
                failed: count(failed),
                pending: count(members.len().saturating_sub(succeeded + failed)),
                required: count((members.len() * threshold).div_ceil(100)),
                released: record.complete
                    || u32::try_from(i).is_ok_and(|i| i < record.released_batches),
            }
        })
        .collect();
    if record.complete {
        record.updated.clear();
        record.current_batch = last_batch;
        record.released_batches = record.released_batches.max(last_batch + 1);
        record.paused = false;
        record.reason = None;
        record.message = None;
    } else {
        record.updated = updated.into_iter().collect();
    }
    changes.newly_updated.sort();
    Ok((record, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IntOrString, RolloutBatch};

    struct Fleet {
        names: Vec<String>,
        labels: BTreeMap<String, String>,
        states: Vec<DeviceWorkloadState>,
    }

    impl Fleet {
        fn on_old(count: usize) -> Self {
            Self {
                names: (0..count).map(|i| format!("dev-{i:02}")).collect(),
                labels: BTreeMap::new(),
                states: vec![DeviceWorkloadState::Older; count],
            }
        }

        fn targets(&self) -> Vec<RolloutTarget<'_>> {
            self.names
                .iter()
                .zip(&self.states)
                .map(|(name, state)| RolloutTarget {
                    name,
                    labels: &self.labels,
                    state: state.clone(),
                })
                .collect()
        }

        /// Devices given the current revision start running it.
        fn converge(&mut self, record: &RolloutRecord) {
            for (name, state) in self.names.iter().zip(&mut self.states) {
                if record.complete || record.updated.contains(name) {
                    *state = DeviceWorkloadState::Current;
                }
            }
        }
    }

    fn revision(name: &str) -> WorkloadRevision {
        WorkloadRevision {
            revision: name.into(),
            generation: Some(1),
            spec: EdgeWorkloadSpec::default(),
        }
    }

    fn two_batches(manual: bool) -> RolloutPolicy {
        RolloutPolicy {
            batches: Some(vec![RolloutBatch {
                limit: Some(IntOrString::String("50%".into())),
                ..Default::default()
            }]),
            manual_approval: manual.then_some(true),
            ..Default::default()
        }
    }

    /// A record where `v1` rolled out completely.
    fn settled(policy: &RolloutPolicy, fleet: &Fleet) -> RolloutRecord {
        let (record, _) = step_rollout(
            Some(policy),
            None,
            &revision("v1"),
            &fleet.targets(),
            RolloutControls::default(),
            0,
        )
        .expect("valid");
        assert!(record.complete, "the first revision goes out at once");
        record
    }

    #[test]
    fn batches_are_released_one_after_the_other() {
        let policy = two_batches(false);
        let mut fleet = Fleet::on_old(4);
        let record = settled(&policy, &fleet);
        let step = |record: &RolloutRecord, fleet: &Fleet| {
            step_rollout(
                Some(&policy),
                Some(record),
                &revision("v2"),
                &fleet.targets(),
                RolloutControls::default(),
                10,
            )
            .expect("valid")
        };
        let (record, changes) = step(&record, &fleet);
        assert!(changes.new_revision);
        assert_eq!(record.previous_revision.as_deref(), Some("v1"));
        assert_eq!(record.updated, ["dev-00", "dev-01"]);
        assert_eq!(
            assigned_revision(Some(&record), Some("v2"), "dev-03"),
            AssignedRevision::Earlier(&record.revisions[0])
        );
        assert_eq!(
            assigned_revision(Some(&record), Some("v2"), "dev-00"),
            AssignedRevision::Live
        );
        fleet.converge(&record);
        let (record, changes) = step(&record, &fleet);
        assert_eq!(changes.released, [1]);
        assert_eq!(record.updated.len(), 4);
        fleet.converge(&record);
        let (record, changes) = step(&record, &fleet);
        assert!(changes.completed && record.complete);
        assert!(record.updated.is_empty());
        assert_eq!(record.batches[1].succeeded, 2);
    }

    #[test]
    fn a_failed_batch_pauses_and_undo_goes_back_at_once() {
        let policy = two_batches(false);
        let mut fleet = Fleet::on_old(4);
        let record = settled(&policy, &fleet);
        let controls = RolloutControls::default();
        let (record, _) = step_rollout(
            Some(&policy),
            Some(&record),
            &revision("v2"),
            &fleet.targets(),
            controls,
            1,
        )
        .expect("valid");
        fleet.states[0] = DeviceWorkloadState::Failed("WorkloadExited".into());
        let (record, changes) = step_rollout(
            Some(&policy),
            Some(&record),
            &revision("v2"),
            &fleet.targets(),
            controls,
            2,
        )
        .expect("valid");
        assert!(record.paused);
        assert_eq!(record.reason.as_deref(), Some("BatchFailed"));
        assert!(
            record
                .message
                .as_deref()
                .is_some_and(|m| m.contains("dev-00: WorkloadExited"))
        );
        assert_eq!(changes.paused.as_deref(), Some("BatchFailed"));
        assert_eq!(
            record.updated,
            ["dev-00", "dev-01"],
            "batch 2 keeps the old revision"
        );
        // Undo: the live spec is the previous revision's again.
        let undo = record.undo_target().expect("previous kept").clone();
        assert_eq!(undo.revision, "v1");
        let (record, _) = step_rollout(
            Some(&policy),
            Some(&record),
            &undo,
            &fleet.targets(),
            controls,
            3,
        )
        .expect("valid");
        assert!(
            record.complete,
            "undoing an unfinished rollout returns every device at once"
        );
        assert_eq!(
            assigned_revision(Some(&record), Some("v1"), "dev-00"),
            AssignedRevision::Live
        );
    }

    #[test]
    fn manual_approval_and_operator_pause_hold_the_next_batch() {
        let policy = two_batches(true);
        let mut fleet = Fleet::on_old(4);
        let record = settled(&policy, &fleet);
        let mut controls = RolloutControls::default();
        let (record, _) = step_rollout(
            Some(&policy),
            Some(&record),
            &revision("v2"),
            &fleet.targets(),
            controls,
            1,
        )
        .expect("valid");
        fleet.converge(&record);
        let (record, _) = step_rollout(
            Some(&policy),
            Some(&record),
            &revision("v2"),
            &fleet.targets(),
            controls,
            2,
        )
        .expect("valid");
        assert_eq!(record.reason.as_deref(), Some("AwaitingApproval"));
        assert_eq!(record.updated.len(), 2);
        let (key, value) = approve_next_batch(&record).expect("in progress");
        assert_eq!((key, value.as_str()), (APPROVED_ANNOTATION, "v2/1"));
        controls.approved_batch = Some(1);
        controls.paused = true;
        let (record, _) = step_rollout(
            Some(&policy),
            Some(&record),
            &revision("v2"),
            &fleet.targets(),
            controls,
            3,
        )
        .expect("valid");
        assert_eq!(record.reason.as_deref(), Some("PausedByOperator"));
        assert_eq!(record.updated.len(), 2);
        controls.paused = false;
        let (record, changes) = step_rollout(
            Some(&policy),
            Some(&record),
            &revision("v2"),
            &fleet.targets(),
            controls,
            4,
        )
        .expect("valid");
        assert_eq!(changes.released, [1]);
        assert_eq!(record.updated.len(), 4);
        assert!(!record.paused);
    }

    #[test]
    fn the_progress_deadline_pauses_a_slow_batch() {
        let policy = RolloutPolicy {
            progress_deadline_seconds: Some(60),
            ..two_batches(false)
        };
        let fleet = Fleet::on_old(4);
        let record = settled(&policy, &fleet);
        let controls = RolloutControls::default();
        let (record, _) = step_rollout(
            Some(&policy),
            Some(&record),
            &revision("v2"),
            &fleet.targets(),
            controls,
            100,
        )
        .expect("valid");
        let (record, _) = step_rollout(
            Some(&policy),
            Some(&record),
            &revision("v2"),
            &fleet.targets(),
            controls,
            161,
        )
        .expect("valid");
        assert_eq!(record.reason.as_deref(), Some("ProgressDeadlineExceeded"));
    }

    #[test]
    fn a_superseded_rollout_falls_back_on_the_stable_revision_and_history_is_bounded() {
        let policy = two_batches(false);
        let fleet = Fleet::on_old(4);
        let mut record = settled(&policy, &fleet);
        let controls = RolloutControls::default();
        for i in 2..20 {
            (record, _) = step_rollout(
                Some(&policy),
                Some(&record),
                &revision(&format!("v{i}")),
                &fleet.targets(),
                controls,
                i,
            )
            .expect("valid");
            // No device ever ran anything after v1, so v1 stays the fallback.
            assert_eq!(record.previous_revision.as_deref(), Some("v1"));
        }
        assert_eq!(record.revisions.len(), REVISION_HISTORY_LIMIT);
        assert!(
            record.revision("v1").is_some(),
            "the previous revision is kept"
        );
    }

    #[test]
    fn rollout_controls_make_no_new_revision() {
        let mut workload: EdgeWorkload = serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeWorkload",
            "metadata": {"name": "w", "annotations": {"team": "cams"}},
            "spec": {"type": "pod", "device": "d",
                "pod": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        }))
        .expect("workload");
        let before = WorkloadRevision::of(&workload).expect("renders").revision;
        if let Some(annotations) = workload.metadata.annotations.as_mut() {
            annotations.insert(PAUSED_ANNOTATION.into(), "true".into());
            annotations.insert(APPROVED_ANNOTATION.into(), format!("{before}/1"));
        }
        assert_eq!(
            WorkloadRevision::of(&workload).expect("renders").revision,
            before
        );
    }

    #[test]
    fn controls_read_the_annotations_of_the_live_revision() {
        let mut workload = EdgeWorkload::default();
        workload.metadata.annotations = Some(BTreeMap::from([
            (PAUSED_ANNOTATION.to_owned(), "true".to_owned()),
            (APPROVED_ANNOTATION.to_owned(), "v2/3".to_owned()),
        ]));
        assert_eq!(
            RolloutControls::of(&workload, "v2"),
            RolloutControls {
                paused: true,
                approved_batch: Some(3)
            }
        );
        assert_eq!(RolloutControls::of(&workload, "v3").approved_batch, None);
    }
}
