//! Workload and device-set revisions and the enforced rollout between them.
//!
//! A device set's changes follow the same rules through [`RolloutSubject`]: its
//! revision is a [`SetRevision`] (the part of its spec members run), its targets are
//! its members (see [`super::set_rollout_targets`]), and [`for_device`] gives each
//! member the set as its assigned revision has it. Below, "workload" stands for
//! either.
//!
//! Every change of a workload that alters what devices run (its rendered wire form,
//! hashed into a [`ConfigVersion`]) is an immutable
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

use crate::model::{
    EdgeDeviceSet, EdgeDeviceSetSpec, EdgeWorkload, EdgeWorkloadSpec, Resource, RolloutPolicy,
};

use super::render::prepare_workload;
use super::rollout::{RolloutError, form_batches, quantity, threshold_percent};
use super::status::DeviceWorkloadState;
use super::version::ConfigVersion;

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

/// An entry of a rollout's revision history: a workload's [`WorkloadRevision`] or a
/// device set's [`SetRevision`].
pub trait RevisionEntry:
    Clone + Default + PartialEq + Serialize + serde::de::DeserializeOwned + JsonSchema
{
    /// The revision's content hash.
    fn id(&self) -> &str;
    /// Takes `live`'s spec, of the same content hash (e.g. after a policy edit),
    /// keeping when the revision was first seen.
    fn refresh(&mut self, live: &Self);
}

/// An object whose changes are rolled out in stages: [`EdgeWorkload`] and
/// [`EdgeDeviceSet`]. Its rollout record lives in `status.rollout` and its
/// operator controls in its `rollout.flotta.io/` annotations.
pub trait RolloutSubject: Resource + Clone {
    /// The kind of revision its history keeps.
    type Revision: RevisionEntry;
    /// The revision the object is now; `None` when it cannot be rendered on its own.
    fn live_revision(&self) -> Option<Self::Revision>;
    /// Its `rolloutPolicy`, if any.
    fn rollout_policy(&self) -> Option<&RolloutPolicy>;
    /// The rollout record stored in its status, unparsed.
    fn stored_record(&self) -> Option<&serde_json::Value>;
    /// The object as rendered for a device assigned `revision`.
    fn with_revision(&self, revision: &Self::Revision) -> Self;
    /// The object as `undo` writes it: what devices run comes back from
    /// `revision`; which devices it reaches and how it rolls out stay as they are.
    fn undo_to(&self, revision: &Self::Revision) -> Self;
}

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

impl RevisionEntry for WorkloadRevision {
    fn id(&self) -> &str {
        &self.revision
    }

    fn refresh(&mut self, live: &Self) {
        self.spec.clone_from(&live.spec);
    }
}

impl RolloutSubject for EdgeWorkload {
    type Revision = WorkloadRevision;

    fn live_revision(&self) -> Option<WorkloadRevision> {
        WorkloadRevision::of(self)
    }

    fn rollout_policy(&self) -> Option<&RolloutPolicy> {
        self.spec.rollout_policy.as_ref()
    }

    fn stored_record(&self) -> Option<&serde_json::Value> {
        self.status.as_ref()?.rollout.as_ref()
    }

    fn with_revision(&self, revision: &WorkloadRevision) -> Self {
        revision.apply_to(self)
    }

    fn undo_to(&self, revision: &WorkloadRevision) -> Self {
        let mut undone = revision.apply_to(self);
        undone
            .spec
            .rollout_policy
            .clone_from(&self.spec.rollout_policy);
        undone
            .spec
            .device_selector
            .clone_from(&self.spec.device_selector);
        undone.spec.device.clone_from(&self.spec.device);
        undone
    }
}

/// One immutable revision of a device set: the part of its spec that reaches the
/// member devices (its sections and `template.spec`). Which devices are members
/// (`selector`), how changes roll out (`rolloutPolicy`) and the labels and
/// annotations the template gives members (`template.metadata`) are not staged:
/// they apply to every member at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetRevision {
    /// Content hash of the staged part of the spec.
    pub revision: String,
    /// The set's `metadata.generation` when the revision was first seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The staged part of the spec of that generation.
    pub spec: EdgeDeviceSetSpec,
}

impl SetRevision {
    /// The revision `set` is now; `None` when its spec cannot be encoded.
    pub fn of(set: &EdgeDeviceSet) -> Option<Self> {
        let spec = Self::staged(&set.spec);
        let revision = ConfigVersion::of(&spec).ok()?;
        Some(Self {
            revision: revision.to_string(),
            generation: set.metadata.generation,
            spec,
        })
    }

    /// The part of `spec` a set revision holds (see the type's documentation).
    pub fn staged(spec: &EdgeDeviceSetSpec) -> EdgeDeviceSetSpec {
        let mut staged = EdgeDeviceSetSpec {
            selector: None,
            rollout_policy: None,
            ..spec.clone()
        };
        if let Some(template) = staged.template.as_mut() {
            template.metadata = None;
            if template.spec.is_none() && template.extra.is_empty() {
                staged.template = None;
            }
        }
        staged
    }

    /// `set` with the staged part of its spec replaced by this revision's; its
    /// membership, policy and template metadata stay as they are.
    pub fn apply_to(&self, set: &EdgeDeviceSet) -> EdgeDeviceSet {
        let mut spec = self.spec.clone();
        spec.selector.clone_from(&set.spec.selector);
        spec.rollout_policy.clone_from(&set.spec.rollout_policy);
        let metadata = set.spec.template.as_ref().and_then(|t| t.metadata.clone());
        if let Some(metadata) = metadata {
            spec.template.get_or_insert_with(Default::default).metadata = Some(metadata);
        }
        EdgeDeviceSet {
            spec,
            ..set.clone()
        }
    }
}

impl RevisionEntry for SetRevision {
    fn id(&self) -> &str {
        &self.revision
    }

    fn refresh(&mut self, live: &Self) {
        self.spec.clone_from(&live.spec);
    }
}

impl RolloutSubject for EdgeDeviceSet {
    type Revision = SetRevision;

    fn live_revision(&self) -> Option<SetRevision> {
        SetRevision::of(self)
    }

    fn rollout_policy(&self) -> Option<&RolloutPolicy> {
        self.spec.rollout_policy.as_ref()
    }

    fn stored_record(&self) -> Option<&serde_json::Value> {
        self.status.as_ref()?.rollout.as_ref()
    }

    fn with_revision(&self, revision: &SetRevision) -> Self {
        revision.apply_to(self)
    }

    fn undo_to(&self, revision: &SetRevision) -> Self {
        revision.apply_to(self)
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

/// The state of a workload's or device set's rollout, kept in `status.rollout` so
/// that it survives restarts and every replica renders the same assignment. `R` is
/// the kind of revision its history keeps ([`WorkloadRevision`] or [`SetRevision`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord<R = WorkloadRevision> {
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
    pub revisions: Vec<R>,
}

impl<R: RevisionEntry> RolloutRecord<R> {
    /// Reads the record from an object's stored status (`None` when absent or
    /// unreadable: the object is then treated as never rolled out).
    pub fn from_status(status: Option<&serde_json::Value>) -> Option<Self> {
        status
            .and_then(|s| s.get(ROLLOUT_STATUS_FIELD))
            .and_then(|r| serde_json::from_value(r.clone()).ok())
    }

    /// The record in the status of `subject` (a workload or a device set).
    pub fn of<T: RolloutSubject<Revision = R>>(subject: &T) -> Option<Self> {
        subject
            .stored_record()
            .and_then(|r| serde_json::from_value(r.clone()).ok())
    }

    /// A revision of the history.
    pub fn revision(&self, revision: &str) -> Option<&R> {
        self.revisions.iter().rev().find(|r| r.id() == revision)
    }

    /// The previous revision's entry: what `undo` brings back.
    pub fn undo_target(&self) -> Option<&R> {
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
                    .find(|r| Some(r.id()) != current)
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

/// Operator controls of a rollout, read from the object's annotations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RolloutControls {
    /// Paused by an operator.
    pub paused: bool,
    /// Index of the last batch an operator approved for the live revision.
    pub approved_batch: Option<u32>,
}

impl RolloutControls {
    /// The controls set on `object` (a workload or a device set) for its live
    /// `revision` (an approval given for another revision does not count).
    pub fn of(object: &impl Resource, revision: &str) -> Self {
        let annotations = object.metadata().annotations.as_ref();
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
pub fn approve_next_batch<R>(record: &RolloutRecord<R>) -> Option<(&'static str, String)> {
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
pub enum AssignedRevision<'a, R = WorkloadRevision> {
    /// The object as it is now.
    Live,
    /// An earlier revision of the history.
    Earlier(&'a R),
}

/// The revision the server renders for `device`, a target of a workload (or member
/// of a set) whose live revision is `live` and whose rollout is `record` (see the
/// module rules).
pub fn assigned_revision<'a, R: RevisionEntry>(
    record: Option<&'a RolloutRecord<R>>,
    live: Option<&str>,
    device: &str,
) -> AssignedRevision<'a, R> {
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
    for_device(workload, device).0
}

/// `subject` (a workload or a device set) as the server renders it for `device`:
/// with the spec of the revision its rollout assigns the device
/// ([`assigned_revision`]), and that revision's content hash when a rollout record
/// exists (`None` before the server recorded one).
pub fn for_device<'a, T: RolloutSubject>(
    subject: &'a T,
    device: &str,
) -> (Cow<'a, T>, Option<String>) {
    let Some(record) = RolloutRecord::of(subject) else {
        return (Cow::Borrowed(subject), None);
    };
    let live = subject.live_revision();
    let live_id = live.as_ref().map(|r| r.id().to_owned());
    match assigned_revision(Some(&record), live_id.as_deref(), device) {
        AssignedRevision::Live => (Cow::Borrowed(subject), live_id),
        AssignedRevision::Earlier(revision) => (
            Cow::Owned(subject.with_revision(revision)),
            Some(revision.id().to_owned()),
        ),
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

fn start_revision<R: RevisionEntry>(record: &mut RolloutRecord<R>, live: &R, has_policy: bool) {
    let previous = match record.current_revision.take() {
        None => None,
        Some(current) if record.complete => Some(current),
        Some(_) => record.previous_revision.take(),
    };
    record.revisions.retain(|r| r.id() != live.id());
    record.revisions.push(live.clone());
    while record.revisions.len() > REVISION_HISTORY_LIMIT {
        let keep = previous.as_deref();
        match record.revisions.iter().position(|r| Some(r.id()) != keep) {
            Some(oldest) => {
                record.revisions.remove(oldest);
            }
            None => break,
        }
    }
    record.complete = !has_policy || previous.is_none() || previous.as_deref() == Some(live.id());
    record.current_revision = Some(live.id().to_owned());
    record.previous_revision = previous;
    record.updated.clear();
    record.released_batches = 0;
    record.current_batch = 0;
    record.batch_released_at = None;
    record.paused = false;
    record.reason = None;
    record.message = None;
}

/// Moves a workload's (or device set's) rollout one step: from the stored `record`
/// (`None` when it was never rolled out), the `live` revision, the policy, the
/// target devices' states, the operator's `controls` and the time `now` (Unix
/// seconds). Returns the record to store and what changed. See the module rules.
pub fn step_rollout<R: RevisionEntry>(
    policy: Option<&RolloutPolicy>,
    record: Option<&RolloutRecord<R>>,
    live: &R,
    targets: &[RolloutTarget<'_>],
    controls: RolloutControls,
    now: i64,
) -> Result<(RolloutRecord<R>, RolloutChanges), RolloutError> {
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
    if record.current_revision.as_deref() != Some(live.id()) {
        start_revision(&mut record, live, has_policy);
        changes.new_revision = true;
    } else if let Some(entry) = record
        .revisions
        .iter_mut()
        .rev()
        .find(|r| r.id() == live.id())
    {
        // Same rendered form, maybe another spec (a policy edit): keep the newest.
        entry.refresh(live);
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
                        live.id(),
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
                        live.id(),
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

    #[test]
    fn a_set_revision_is_what_reaches_members_and_undo_keeps_membership() {
        let set = |selector: &str, policy: bool, label: &str, period: i64| -> EdgeDeviceSet {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDeviceSet",
                "metadata": {"name": "lab"},
                "spec": {
                    "selector": {"matchLabels": {"site": selector}},
                    "rolloutPolicy": if policy { serde_json::json!({"batches": [{"limit": 1}]}) } else { serde_json::Value::Null },
                    "heartbeat": {"periodSeconds": period},
                    "template": {"metadata": {"labels": {"team": label}}},
                },
            }))
            .expect("set")
        };
        let base = SetRevision::of(&set("a", true, "x", 60)).expect("encodes");
        // Membership, policy and template metadata make no new revision.
        assert_eq!(
            SetRevision::of(&set("b", false, "y", 60))
                .expect("encodes")
                .revision,
            base.revision
        );
        assert!(
            base.spec.template.is_none(),
            "metadata-only template dropped"
        );
        // A section members run does.
        let changed = set("a", true, "x", 30);
        assert_ne!(
            SetRevision::of(&changed).expect("encodes").revision,
            base.revision
        );
        // Going back to `base` keeps today's selector, policy and template labels.
        let undone = changed.undo_to(&base);
        assert_eq!(undone.spec.selector, changed.spec.selector);
        assert_eq!(undone.spec.rollout_policy, changed.spec.rollout_policy);
        assert_eq!(
            undone.spec.heartbeat.and_then(|h| h.period_seconds),
            Some(60)
        );
        assert_eq!(
            undone
                .spec
                .template
                .and_then(|t| t.metadata)
                .and_then(|m| m.labels)
                .and_then(|l| l.get("team").cloned())
                .as_deref(),
            Some("x")
        );
    }
}
