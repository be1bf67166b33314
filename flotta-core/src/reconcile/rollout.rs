//! Staged rollouts of a workload version across its target devices (beyond Flotta,
//! after Flight Control).
//!
//! [`decide_rollout`] is a pure function of the workload's [`RolloutPolicy`], its target
//! devices and what they report; the server calls it whenever a heartbeat or the
//! workload changes, and renders the new workload version only for the devices it
//! returns in [`RolloutDecision::assigned`].
//!
//! Rules:
//! - Targets are ordered by name, devices already given the new version first, so the
//!   make-up of a batch does not change while the rollout runs.
//! - Batches are formed in order: each takes, among the targets no earlier batch took,
//!   those its `selector` matches (all when absent), at most `limit` of them (a count
//!   or a percentage of all targets, rounded up; no limit when absent). Targets left
//!   over form a final batch.
//! - A batch succeeds when at least `successThreshold` (default `100%`) of its devices
//!   run the new version. The next batch starts only then.
//! - A batch fails when so many of its devices failed that the threshold can no longer
//!   be met: the rollout pauses, and no further device is given the new version until
//!   the policy or the workload changes.
//! - `maxUnavailable` caps the devices not running (failed, deploying, unknown, or given
//!   the new version and not yet running it). A device that is running is given the
//!   new version only while the cap allows; a device that is already unavailable may
//!   always be given it, since that cannot make things worse.

use std::collections::BTreeMap;

use crate::model::{IntOrString, RolloutPolicy};
use crate::selector::{Selector, SelectorError};

use super::WorkloadPhase;

/// Why a rollout policy could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// A count or percentage field holds something else.
    #[error(
        "rolloutPolicy.{field}: '{value}' is neither a non-negative count nor a percentage from 0% to 100%"
    )]
    InvalidQuantity {
        /// Path of the field, e.g. `batches[1].limit`.
        field: String,
        /// The value as written.
        value: String,
    },
    /// A batch selector is not a valid label selector.
    #[error("rolloutPolicy.batches[{batch}].selector is invalid")]
    InvalidSelector {
        /// Index of the batch.
        batch: usize,
        /// The selector problem.
        #[source]
        source: SelectorError,
    },
}

/// One target device of a rollout, as the server knows it.
#[derive(Clone, Copy, Debug)]
pub struct RolloutDevice<'a> {
    /// Device name.
    pub name: &'a str,
    /// Device labels (for batch selectors).
    pub labels: &'a BTreeMap<String, String>,
    /// Workload version the server currently gives the device, if any.
    pub assigned_version: Option<&'a str>,
    /// Workload version the device reports running, if any.
    pub reported_version: Option<&'a str>,
    /// Phase of the workload on the device, as last reported (and aged).
    pub phase: WorkloadPhase,
}

impl RolloutDevice<'_> {
    fn runs(&self, version: &str) -> bool {
        self.reported_version == Some(version) && self.phase == WorkloadPhase::Running
    }

    fn is_assigned(&self, version: &str) -> bool {
        self.assigned_version == Some(version) || self.reported_version == Some(version)
    }

    fn failed_on(&self, version: &str) -> bool {
        self.is_assigned(version) && self.phase == WorkloadPhase::Failed
    }

    fn is_unavailable(&self, version: &str) -> bool {
        self.phase != WorkloadPhase::Running
            || (self.assigned_version == Some(version) && self.reported_version != Some(version))
    }
}

/// Where a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutState {
    /// A batch is being rolled out.
    Progressing,
    /// The batch at this index failed; nothing more is rolled out.
    Paused {
        /// Index of the failed batch.
        batch: usize,
    },
    /// Every target runs the new version (or enough of the last batch does).
    Complete,
}

/// Progress of one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchProgress {
    /// Devices in the batch.
    pub size: usize,
    /// Devices of the batch given the new version (after this decision).
    pub assigned: usize,
    /// Devices of the batch running the new version.
    pub succeeded: usize,
    /// Devices of the batch that failed on the new version.
    pub failed: usize,
    /// Devices that must succeed for the batch to succeed.
    pub required: usize,
}

/// Status of a rollout after a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutStatus {
    /// Index of the batch in progress (of the last one when complete).
    pub current_batch: usize,
    /// Progress of every batch, in order.
    pub batches: Vec<BatchProgress>,
    /// Overall state.
    pub state: RolloutState,
}

/// What the server does now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutDecision {
    /// Devices that get the new version now (those that had it and those newly given
    /// it), sorted by name.
    pub assigned: Vec<String>,
    /// Devices given the new version by this decision, sorted by name.
    pub newly_assigned: Vec<String>,
    /// The rollout's status.
    pub status: RolloutStatus,
}

/// Parses a count or percentage of `total` (rounded up). `None` when absent.
pub(super) fn quantity(
    value: Option<&IntOrString>,
    total: usize,
    field: &str,
) -> Result<Option<usize>, RolloutError> {
    let invalid = |text: String| RolloutError::InvalidQuantity {
        field: field.to_owned(),
        value: text,
    };
    match value {
        None => Ok(None),
        Some(IntOrString::Int(count)) => usize::try_from(*count)
            .map(Some)
            .map_err(|_| invalid(count.to_string())),
        Some(IntOrString::String(text)) => {
            let percent = text
                .strip_suffix('%')
                .and_then(|digits| digits.trim().parse::<usize>().ok())
                .filter(|percent| *percent <= 100);
            match percent {
                Some(percent) => Ok(Some((total * percent).div_ceil(100))),
                None => match text.trim().parse::<usize>() {
                    Ok(count) => Ok(Some(count)),
                    Err(_) => Err(invalid(text.clone())),
                },
            }
        }
    }
}

/// The policy's `successThreshold` as a percentage (default 100).
pub(super) fn threshold_percent(policy: &RolloutPolicy) -> Result<usize, RolloutError> {
    match policy.success_threshold.as_ref() {
        None => Ok(100),
        Some(IntOrString::String(text)) => text
            .strip_suffix('%')
            .and_then(|digits| digits.trim().parse::<usize>().ok())
            .filter(|percent| *percent <= 100)
            .ok_or_else(|| RolloutError::InvalidQuantity {
                field: "successThreshold".into(),
                value: text.clone(),
            }),
        Some(IntOrString::Int(percent)) => usize::try_from(*percent)
            .ok()
            .filter(|percent| *percent <= 100)
            .ok_or_else(|| RolloutError::InvalidQuantity {
                field: "successThreshold".into(),
                value: percent.to_string(),
            }),
    }
}

/// Splits targets (given by their labels, in rollout order) into the policy's
/// batches: indexes into `labels`. Each batch takes, among the targets no earlier
/// batch took, those its selector matches, at most its limit; the rest form a final
/// batch. There is always at least one batch.
pub(super) fn form_batches(
    policy: &RolloutPolicy,
    labels: &[&BTreeMap<String, String>],
) -> Result<Vec<Vec<usize>>, RolloutError> {
    let total = labels.len();
    let mut taken = vec![false; total];
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for (batch_index, batch) in policy.batches.iter().flatten().enumerate() {
        let selector = match &batch.selector {
            None => None,
            Some(selector) => Some(Selector::try_from(selector).map_err(|source| {
                RolloutError::InvalidSelector {
                    batch: batch_index,
                    source,
                }
            })?),
        };
        let limit = quantity(
            batch.limit.as_ref(),
            total,
            &format!("batches[{batch_index}].limit"),
        )?
        .unwrap_or(usize::MAX);
        let mut members = Vec::new();
        for (position, device_labels) in labels.iter().enumerate() {
            if members.len() >= limit {
                break;
            }
            let is_free = taken.get(position).is_some_and(|taken| !taken);
            if is_free && selector.as_ref().is_none_or(|s| s.matches(*device_labels)) {
                members.push(position);
            }
        }
        for &position in &members {
            if let Some(slot) = taken.get_mut(position) {
                *slot = true;
            }
        }
        batches.push(members);
    }
    let rest: Vec<usize> = (0..total)
        .filter(|position| taken.get(*position).is_some_and(|taken| !taken))
        .collect();
    if !rest.is_empty() || batches.is_empty() {
        batches.push(rest);
    }
    Ok(batches)
}

/// Decides which of a workload's target devices run `target_version` now, under
/// `policy` (all at once when `None`), and reports the rollout's status. See the
/// module documentation for the rules.
pub fn decide_rollout(
    policy: Option<&RolloutPolicy>,
    target_version: &str,
    devices: &[RolloutDevice<'_>],
) -> Result<RolloutDecision, RolloutError> {
    let total = devices.len();
    let mut order: Vec<&RolloutDevice<'_>> = devices.iter().collect();
    order.sort_unstable_by(|a, b| {
        b.is_assigned(target_version)
            .cmp(&a.is_assigned(target_version))
            .then_with(|| a.name.cmp(b.name))
    });

    let default_policy = RolloutPolicy::default();
    let policy = policy.unwrap_or(&default_policy);
    let max_unavailable = quantity(policy.max_unavailable.as_ref(), total, "maxUnavailable")?;
    let threshold_percent = threshold_percent(policy)?;
    let labelled: Vec<&BTreeMap<String, String>> = order.iter().map(|d| d.labels).collect();
    let batches = form_batches(policy, &labelled)?;

    let mut unavailable = order
        .iter()
        .filter(|device| device.is_unavailable(target_version))
        .count();
    let mut assigned: Vec<bool> = order
        .iter()
        .map(|device| device.is_assigned(target_version))
        .collect();
    let mut newly_assigned = Vec::new();
    let mut state = RolloutState::Complete;
    let mut current_batch = batches.len().saturating_sub(1);
    let mut progress = Vec::with_capacity(batches.len());

    let mut rolling = true;
    for (batch_index, members) in batches.iter().enumerate() {
        let size = members.len();
        let required = (size * threshold_percent).div_ceil(100);
        let succeeded = members
            .iter()
            .filter_map(|&p| order.get(p))
            .filter(|d| d.runs(target_version))
            .count();
        let failed = members
            .iter()
            .filter_map(|&p| order.get(p))
            .filter(|d| d.failed_on(target_version))
            .count();
        if rolling {
            if size - failed < required {
                state = RolloutState::Paused { batch: batch_index };
                current_batch = batch_index;
                rolling = false;
            } else {
                for &position in members {
                    let (Some(device), Some(slot)) =
                        (order.get(position), assigned.get_mut(position))
                    else {
                        continue;
                    };
                    if *slot {
                        continue;
                    }
                    let already_unavailable = device.is_unavailable(target_version);
                    if !already_unavailable {
                        if max_unavailable.is_some_and(|cap| unavailable >= cap) {
                            continue;
                        }
                        unavailable += 1;
                    }
                    *slot = true;
                    newly_assigned.push(device.name.to_owned());
                }
                if succeeded < required {
                    state = RolloutState::Progressing;
                    current_batch = batch_index;
                    rolling = false;
                }
            }
        }
        let assigned_in_batch = members
            .iter()
            .filter(|&&p| assigned.get(p).copied().unwrap_or(false))
            .count();
        progress.push(BatchProgress {
            size,
            assigned: assigned_in_batch,
            succeeded,
            failed,
            required,
        });
    }

    let mut assigned_names: Vec<String> = order
        .iter()
        .zip(&assigned)
        .filter(|(_, assigned)| **assigned)
        .map(|(device, _)| device.name.to_owned())
        .collect();
    assigned_names.sort_unstable();
    newly_assigned.sort_unstable();
    Ok(RolloutDecision {
        assigned: assigned_names,
        newly_assigned,
        status: RolloutStatus {
            current_batch,
            batches: progress,
            state,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LabelSelector, RolloutBatch};

    struct Fleet {
        names: Vec<String>,
        labels: Vec<BTreeMap<String, String>>,
        assigned: Vec<Option<&'static str>>,
        reported: Vec<Option<&'static str>>,
        phases: Vec<WorkloadPhase>,
    }

    impl Fleet {
        fn running_old(count: usize) -> Self {
            Self {
                names: (0..count).map(|i| format!("dev-{i:03}")).collect(),
                labels: (0..count)
                    .map(|i| BTreeMap::from([("ring".to_owned(), (i % 3).to_string())]))
                    .collect(),
                assigned: vec![Some("v1"); count],
                reported: vec![Some("v1"); count],
                phases: vec![WorkloadPhase::Running; count],
            }
        }

        fn devices(&self) -> Vec<RolloutDevice<'_>> {
            (0..self.names.len())
                .map(|i| RolloutDevice {
                    name: &self.names[i],
                    labels: &self.labels[i],
                    assigned_version: self.assigned[i],
                    reported_version: self.reported[i],
                    phase: self.phases[i],
                })
                .collect()
        }

        fn set(&mut self, name: &str, reported: &'static str, phase: WorkloadPhase) {
            let i = self
                .names
                .iter()
                .position(|n| n == name)
                .expect("device exists");
            self.assigned[i] = Some(reported);
            self.reported[i] = Some(reported);
            self.phases[i] = phase;
        }
    }

    fn policy(
        limits: &[IntOrString],
        threshold: &str,
        max_unavailable: Option<i32>,
    ) -> RolloutPolicy {
        RolloutPolicy {
            batches: Some(
                limits
                    .iter()
                    .map(|limit| RolloutBatch {
                        limit: Some(limit.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            success_threshold: Some(IntOrString::String(threshold.into())),
            max_unavailable: max_unavailable.map(IntOrString::Int),
            ..Default::default()
        }
    }

    #[test]
    fn without_policy_every_device_gets_the_version() {
        let fleet = Fleet::running_old(5);
        let decision = decide_rollout(None, "v2", &fleet.devices()).expect("valid");
        assert_eq!(decision.assigned.len(), 5);
        assert_eq!(decision.newly_assigned.len(), 5);
        assert_eq!(decision.status.state, RolloutState::Progressing);
    }

    #[test]
    fn batches_advance_only_after_success() {
        let mut fleet = Fleet::running_old(10);
        let policy = policy(
            &[IntOrString::Int(2), IntOrString::String("50%".into())],
            "100%",
            None,
        );
        let first = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        assert_eq!(first.newly_assigned, ["dev-000", "dev-001"]);
        assert_eq!(first.status.current_batch, 0);

        fleet.set("dev-000", "v2", WorkloadPhase::Running);
        let waiting = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        assert_eq!(waiting.newly_assigned, ["dev-001"]);
        assert_eq!(waiting.status.current_batch, 0);

        fleet.set("dev-001", "v2", WorkloadPhase::Running);
        let second = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        assert_eq!(second.status.current_batch, 1);
        assert_eq!(second.newly_assigned.len(), 5, "50% of 10 targets");
        assert_eq!(second.status.batches[1].size, 5);
        assert_eq!(second.status.batches[2].size, 3);

        for name in second.assigned.clone() {
            fleet.set(&name, "v2", WorkloadPhase::Running);
        }
        let third = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        assert_eq!(third.status.current_batch, 2);
        assert_eq!(third.newly_assigned.len(), 3);
        for name in third.assigned.clone() {
            fleet.set(&name, "v2", WorkloadPhase::Running);
        }
        let done = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        assert_eq!(done.status.state, RolloutState::Complete);
        assert!(done.newly_assigned.is_empty());
        assert_eq!(done.assigned.len(), 10);
    }

    #[test]
    fn a_failed_batch_pauses_the_rollout() {
        let mut fleet = Fleet::running_old(6);
        let policy = policy(&[IntOrString::Int(2)], "100%", None);
        fleet.set("dev-000", "v2", WorkloadPhase::Running);
        fleet.set("dev-001", "v2", WorkloadPhase::Failed);
        let decision = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        assert_eq!(decision.status.state, RolloutState::Paused { batch: 0 });
        assert!(decision.newly_assigned.is_empty());
        assert_eq!(decision.assigned, ["dev-000", "dev-001"]);
    }

    #[test]
    fn a_lower_threshold_tolerates_failures() {
        let mut fleet = Fleet::running_old(4);
        let policy = policy(&[IntOrString::Int(2)], "50%", None);
        fleet.set("dev-000", "v2", WorkloadPhase::Running);
        fleet.set("dev-001", "v2", WorkloadPhase::Failed);
        let decision = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        assert_eq!(decision.status.current_batch, 1);
        assert_eq!(decision.newly_assigned, ["dev-002", "dev-003"]);
    }

    #[test]
    fn max_unavailable_caps_new_assignments() {
        let mut fleet = Fleet::running_old(10);
        fleet.phases[9] = WorkloadPhase::Unknown;
        let policy = policy(&[], "100%", Some(3));
        let decision = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        // One device is already down: two more may go, plus the down one itself.
        assert_eq!(decision.newly_assigned, ["dev-000", "dev-001", "dev-009"]);
    }

    #[test]
    fn batch_selectors_pick_labelled_devices() {
        let fleet = Fleet::running_old(9);
        let policy = RolloutPolicy {
            batches: Some(vec![RolloutBatch {
                selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("ring".into(), "0".into())])),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let decision = decide_rollout(Some(&policy), "v2", &fleet.devices()).expect("valid");
        assert_eq!(decision.newly_assigned, ["dev-000", "dev-003", "dev-006"]);
    }

    #[test]
    fn invalid_quantities_are_errors() {
        let fleet = Fleet::running_old(2);
        let bad = policy(&[IntOrString::String("lots".into())], "100%", None);
        assert!(matches!(
            decide_rollout(Some(&bad), "v2", &fleet.devices()),
            Err(RolloutError::InvalidQuantity { field, .. }) if field == "batches[0].limit"
        ));
        let bad = policy(&[], "150%", None);
        assert!(matches!(
            decide_rollout(Some(&bad), "v2", &fleet.devices()),
            Err(RolloutError::InvalidQuantity { field, .. }) if field == "successThreshold"
        ));
    }
}
