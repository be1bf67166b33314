//! The persisted OS update ([`OsUpdateRecord`]) and the pure decision of what an
//! agent starting with one does next ([`resume_step`]).

use std::time::Duration;

use flotta_core::wire::OsInformation;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::BootedOs;
use crate::state::{StateError, StateItem};

/// Starts of the agent in a new deployment, or reboots asked for, before the
/// update counts as failed: greenboot's boot counter.
pub const MAX_BOOTS: u32 = 3;

/// The window when the target sets no `rollbackAfterSeconds`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// Where an OS update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum OsUpdatePhase {
    /// The backend is staging the target.
    Staging,
    /// The target is staged; the running system is untouched.
    Staged,
    /// The reboot into the target is requested (persisted before it is).
    Rebooting,
    /// The device runs the target; its health checks run within the window.
    HealthCheck,
    /// The target stays: the update is done.
    Committed,
    /// The target failed; the backend is rolling back.
    RollingBack,
    /// The rollback is done and the reboot into the previous deployment requested.
    RollbackRebooting,
    /// The device is back on the previous deployment; the target is not tried
    /// again until the desired OS changes.
    RolledBack,
    /// The target failed and stays (`automaticRollback: false`), or the rollback
    /// could not finish; not tried again until the desired OS changes.
    Failed,
}

impl OsUpdatePhase {
    /// The name in heartbeats and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staging => "Staging",
            Self::Staged => "Staged",
            Self::Rebooting => "Rebooting",
            Self::HealthCheck => "HealthCheck",
            Self::Committed => "Committed",
            Self::RollingBack => "RollingBack",
            Self::RollbackRebooting => "RollbackRebooting",
            Self::RolledBack => "RolledBack",
            Self::Failed => "Failed",
        }
    }

    /// Whether the update is over (committed, rolled back or failed).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Committed | Self::RolledBack | Self::Failed)
    }
}

/// One OS update as persisted in the state directory
/// ([`StateItem::OsUpdate`]), rewritten atomically at each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OsUpdateRecord {
    /// The target, as the configuration gave it.
    pub target: OsInformation,
    /// The deployment booted when the update started.
    pub previous: Option<String>,
    /// Where the update stands.
    pub phase: OsUpdatePhase,
    /// When the last reboot was requested (RFC 3339, wall clock: it must survive
    /// the reboot).
    #[serde(default)]
    pub reboot_requested_at: Option<String>,
    /// Reboots requested for the current phase.
    #[serde(default)]
    pub reboot_attempts: u32,
    /// When the health window opened (RFC 3339).
    #[serde(default)]
    pub health_started_at: Option<String>,
    /// Starts of the agent in the target during the health window.
    #[serde(default)]
    pub boots: u32,
    /// Why the update failed, with the failing check's output.
    #[serde(default)]
    pub message: Option<String>,
}

impl OsUpdateRecord {
    /// A record for `target` about to be staged over `previous`.
    pub fn new(target: OsInformation, previous: Option<String>) -> Self {
        Self {
            target,
            previous,
            phase: OsUpdatePhase::Staging,
            reboot_requested_at: None,
            reboot_attempts: 0,
            health_started_at: None,
            boots: 0,
            message: None,
        }
    }

    /// The target's name: its commit, else its image.
    pub fn target_name(&self) -> String {
        target_name(&self.target)
    }

    /// Whether `other` is this record's target (commit and image; the other
    /// settings do not make another target).
    pub fn is_target(&self, other: &OsInformation) -> bool {
        self.target.commit_id == other.commit_id && self.target.image == other.image
    }

    /// `rollbackAfterSeconds`, or [`DEFAULT_WINDOW`] when unset or not positive.
    pub fn window(&self) -> Duration {
        self.target
            .rollback_after_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(DEFAULT_WINDOW, Duration::from_secs)
    }

    /// `automaticRollback`; a target that does not say rolls back.
    pub fn rolls_back(&self) -> bool {
        self.target.automatic_rollback.unwrap_or(true)
    }

    /// Encodes for the state store.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decodes what [`encode`](Self::encode) wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let record: Self =
            crate::state::decode_json(bytes, StateItem::OsUpdate, "not an OS update record")?;
        for (field, value) in [
            ("rebootRequestedAt", &record.reboot_requested_at),
            ("healthStartedAt", &record.health_started_at),
        ] {
            if let Some(value) = value
                && parse_time(value).is_none()
            {
                return Err(StateError::Corrupt {
                    item: StateItem::OsUpdate,
                    reason: format!("{field} is not an RFC 3339 time: {value:?}"),
                    source: None,
                });
            }
        }
        Ok(record)
    }

    fn since(&self, at: Option<&String>, now: OffsetDateTime) -> Duration {
        at.and_then(|at| parse_time(at))
            .map_or(Duration::ZERO, |at| {
                Duration::try_from(now - at).unwrap_or(Duration::ZERO)
            })
    }
}

/// A target's name: its commit, else its image.
pub fn target_name(target: &OsInformation) -> String {
    target
        .commit_id
        .clone()
        .or_else(|| target.image.clone())
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// What an agent starting with a persisted update does next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeStep {
    /// Nothing now: the update is over, or the configuration's apply carries it
    /// on (staging, staged).
    Nothing,
    /// The reboot did not happen (the agent was killed before it, or it was lost):
    /// request it again.
    RebootAgain,
    /// The device runs the target: run the health checks until `remaining` has
    /// passed (at least one round).
    CheckHealth {
        /// Time left of the health window.
        remaining: Duration,
    },
    /// The update failed: roll back (when `automaticRollback` allows) and report.
    Fail {
        /// Why.
        reason: String,
    },
    /// A rollback was interrupted: do it again, then reboot.
    RollBackAgain,
    /// The device is back on the previous deployment: the rollback is done.
    FinishRollback,
}

/// What an agent starting with `record` does next, given the deployments the
/// backend reports and the time.
pub fn resume_step(record: &OsUpdateRecord, os: &BootedOs, now: OffsetDateTime) -> ResumeStep {
    let target = &record.target;
    let runs_target = os.booted.as_ref().is_some_and(|d| d.runs(target));
    let booted_name = os
        .booted
        .as_ref()
        .map_or_else(|| "an unknown deployment".to_owned(), |d| d.id.clone());
    let window = record.window();
    match record.phase {
        OsUpdatePhase::Staging
        | OsUpdatePhase::Staged
        | OsUpdatePhase::Committed
        | OsUpdatePhase::RolledBack
        | OsUpdatePhase::Failed => ResumeStep::Nothing,
        OsUpdatePhase::Rebooting if runs_target => ResumeStep::CheckHealth { remaining: window },
        OsUpdatePhase::Rebooting => {
            let waited = record.since(record.reboot_requested_at.as_ref(), now);
            let staged = os.staged.as_ref().is_some_and(|d| d.runs(target));
            if waited >= window {
                ResumeStep::Fail {
                    reason: format!(
                        "no boot into {} within {} s of the reboot request (the device runs {booted_name})",
                        record.target_name(),
                        window.as_secs()
                    ),
                }
            } else if !staged {
                ResumeStep::Fail {
                    reason: format!(
                        "the device booted {booted_name}, not {}, and nothing is staged any more",
                        record.target_name()
                    ),
                }
            } else if record.reboot_attempts >= MAX_BOOTS {
                ResumeStep::Fail {
                    reason: format!(
                        "{} reboots requested without booting into {}",
                        record.reboot_attempts,
                        record.target_name()
                    ),
                }
            } else {
                ResumeStep::RebootAgain
            }
        }
        OsUpdatePhase::HealthCheck if !runs_target => ResumeStep::Fail {
            reason: format!(
                "the device runs {booted_name} instead of {} during the health window",
                record.target_name()
            ),
        },
        OsUpdatePhase::HealthCheck if record.boots >= MAX_BOOTS => ResumeStep::Fail {
            reason: format!(
                "{} started {} times without passing its health checks",
                record.target_name(),
                record.boots
            ),
        },
        OsUpdatePhase::HealthCheck => ResumeStep::CheckHealth {
            remaining: window.saturating_sub(record.since(record.health_started_at.as_ref(), now)),
        },
        OsUpdatePhase::RollingBack => ResumeStep::RollBackAgain,
        OsUpdatePhase::RollbackRebooting => {
            let back = os
                .booted
                .as_ref()
                .is_some_and(|d| Some(&d.id) == record.previous.as_ref());
            if back || !runs_target {
                ResumeStep::FinishRollback
            } else if record.reboot_attempts >= MAX_BOOTS {
                ResumeStep::Fail {
                    reason: format!(
                        "{} reboots requested without leaving {}",
                        record.reboot_attempts,
                        record.target_name()
                    ),
                }
            } else {
                ResumeStep::RebootAgain
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::Deployment;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000 + seconds)
    }

    fn stamp(seconds: i64) -> Option<String> {
        Some(flotta_core::timestamp::rfc3339(at(seconds)))
    }

    fn record(phase: OsUpdatePhase) -> OsUpdateRecord {
        let mut record = OsUpdateRecord::new(
            OsInformation {
                commit_id: Some("c2".into()),
                rollback_after_seconds: Some(60),
                ..Default::default()
            },
            Some("c1".into()),
        );
        record.phase = phase;
        record.reboot_requested_at = stamp(0);
        record.health_started_at = stamp(10);
        record
    }

    fn os(booted: &str, staged: Option<&str>) -> BootedOs {
        BootedOs {
            booted: Some(Deployment::commit(booted)),
            staged: staged.map(Deployment::commit),
            rollback: None,
        }
    }

    #[test]
    fn each_phase_resumes_with_the_right_step() {
        use OsUpdatePhase as P;
        use ResumeStep as S;
        let cases = [
            (P::Staging, os("c1", None), 5, S::Nothing),
            (P::Staged, os("c1", Some("c2")), 5, S::Nothing),
            (P::Committed, os("c2", None), 5, S::Nothing),
            (
                P::Rebooting,
                os("c2", None),
                5,
                S::CheckHealth {
                    remaining: Duration::from_secs(60),
                },
            ),
            (P::Rebooting, os("c1", Some("c2")), 5, S::RebootAgain),
            (
                P::HealthCheck,
                os("c2", None),
                30,
                S::CheckHealth {
                    remaining: Duration::from_secs(40),
                },
            ),
            (
                P::HealthCheck,
                os("c2", None),
                500,
                S::CheckHealth {
                    remaining: Duration::ZERO,
                },
            ),
            (P::RollingBack, os("c2", None), 5, S::RollBackAgain),
            (P::RollbackRebooting, os("c1", None), 5, S::FinishRollback),
            (P::RollbackRebooting, os("c2", None), 5, S::RebootAgain),
        ];
        for (phase, deployments, now, expected) in cases {
            assert_eq!(
                resume_step(&record(phase), &deployments, at(now)),
                expected,
                "{phase:?} with {deployments:?}"
            );
        }
    }

    #[test]
    fn a_reboot_that_never_comes_or_boots_elsewhere_fails() {
        let step = resume_step(
            &record(OsUpdatePhase::Rebooting),
            &os("c1", Some("c2")),
            at(61),
        );
        assert!(
            matches!(&step, ResumeStep::Fail { reason } if reason.contains("no boot into c2 within 60 s")),
            "{step:?}"
        );
        let step = resume_step(&record(OsUpdatePhase::Rebooting), &os("c1", None), at(5));
        assert!(
            matches!(&step, ResumeStep::Fail { reason } if reason.contains("nothing is staged")),
            "{step:?}"
        );
        let mut retried = record(OsUpdatePhase::Rebooting);
        retried.reboot_attempts = MAX_BOOTS;
        assert!(matches!(
            resume_step(&retried, &os("c1", Some("c2")), at(5)),
            ResumeStep::Fail { .. }
        ));
    }

    #[test]
    fn the_boot_counter_and_a_fallback_during_the_window_fail() {
        let mut booted = record(OsUpdatePhase::HealthCheck);
        booted.boots = MAX_BOOTS;
        let step = resume_step(&booted, &os("c2", None), at(20));
        assert!(
            matches!(&step, ResumeStep::Fail { reason } if reason.contains("started 3 times")),
            "{step:?}"
        );
        let step = resume_step(&record(OsUpdatePhase::HealthCheck), &os("c1", None), at(20));
        assert!(
            matches!(&step, ResumeStep::Fail { reason } if reason.contains("runs c1 instead of c2")),
            "{step:?}"
        );
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_clear_errors() {
        let original = record(OsUpdatePhase::HealthCheck);
        assert_eq!(
            OsUpdateRecord::decode(&original.encode()).expect("decodes"),
            original
        );
        for (input, expected) in [
            (&b"{"[..], "os-update.json"),
            (br#"{"target": {}, "phase": "Sideways"}"#, "unknown variant"),
            (
                br#"{"target": {}, "phase": "staged", "extra": 1}"#,
                "unknown field",
            ),
            (
                br#"{"target": {}, "phase": "rebooting", "rebootRequestedAt": "yesterday"}"#,
                "rebootRequestedAt is not an RFC 3339 time",
            ),
        ] {
            let error = OsUpdateRecord::decode(input).expect_err("refused");
            let text = format!("{error}: {error:?}");
            assert!(text.contains(expected), "{text}");
        }
        let mut defaults = record(OsUpdatePhase::Staged);
        defaults.target.rollback_after_seconds = Some(-5);
        assert_eq!(defaults.window(), DEFAULT_WINDOW);
        assert!(defaults.rolls_back());
        defaults.target.automatic_rollback = Some(false);
        assert!(!defaults.rolls_back());
    }
}
