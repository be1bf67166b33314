//! The OS update across the reboot: staged → rebooting (persisted before the
//! reboot is requested) → booted into the target → health window → committed, or
//! rolled back through the backend and rebooted. Every step is persisted in
//! [`StateItem::OsUpdate`] before it is taken, and an agent starting with a record
//! carries it on ([`resume_step`] decides how).

use std::time::Duration;

use flotta_core::timestamp::rfc3339;
use flotta_core::wire::OsInformation;

use super::Agent;
use super::status::{AgentEvent, OsUpdateStatus, lock};
use crate::error::ApplyError;
use crate::os::{OsHealth, OsUpdatePhase, OsUpdateRecord, ResumeStep, resume_step};
use crate::state::StateItem;

/// How long the agent waits for a heartbeat to carry the state out before it
/// reboots the device.
const FLUSH_BEFORE_REBOOT: Duration = Duration::from_secs(3);

impl Agent {
    /// Carries on the persisted OS update, if any, then waits forever (a branch of
    /// [`Agent::run`]'s loops).
    pub(super) async fn os_update_loop(&self) {
        if let Err(error) = self.resume_os_update().await {
            tracing::warn!(%error, "OS update");
        }
        std::future::pending::<()>().await;
    }

    async fn resume_os_update(&self) -> Result<(), ApplyError> {
        let _applying = self.apply_lock.lock().await;
        let Some(mut record) = self.load_os_record().await else {
            return Ok(());
        };
        self.show_os(&record);
        let os = self.os_updater.booted().await?;
        let step = resume_step(&record, &os, self.clock.now());
        tracing::info!(
            phase = record.phase.as_str(),
            ?step,
            "resuming the OS update"
        );
        match step {
            ResumeStep::Nothing => Ok(()),
            ResumeStep::RebootAgain => {
                record.reboot_attempts = record.reboot_attempts.saturating_add(1);
                self.save_os(&record).await?;
                if record.phase == OsUpdatePhase::Rebooting {
                    self.activate_and_wait(record).await
                } else {
                    self.reboot_after_rollback(record).await
                }
            }
            ResumeStep::CheckHealth { remaining } => {
                if record.phase == OsUpdatePhase::Rebooting {
                    record.phase = OsUpdatePhase::HealthCheck;
                    record.health_started_at = Some(rfc3339(self.clock.now()));
                    record.boots = 1;
                } else {
                    record.boots = record.boots.saturating_add(1);
                }
                let phase = record.phase;
                self.enter_os_phase(&mut record, phase, None).await?;
                self.health_window(record, remaining).await
            }
            ResumeStep::Fail { reason } => self.fail_os_update(record, reason).await,
            ResumeStep::RollBackAgain => {
                let reason = record.message.clone().unwrap_or_default();
                self.roll_back_os(record, reason).await
            }
            ResumeStep::FinishRollback => {
                let reason = record.message.clone().unwrap_or_default();
                self.finish_os_rollback(record, reason).await;
                Ok(())
            }
        }
    }

    /// The persisted update; an unreadable record is reported and treated as none
    /// (the device keeps what it runs).
    async fn load_os_record(&self) -> Option<OsUpdateRecord> {
        match self.state.load(StateItem::OsUpdate).await {
            Ok(Some(bytes)) => match OsUpdateRecord::decode(&bytes) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::error!(%error, "ignoring the unusable OS update record");
                    self.shared
                        .report("OsUpdateRecordUnusable", error.to_string(), true);
                    None
                }
            },
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "cannot read the OS update record");
                None
            }
        }
    }

    /// Persists `record`; the step that follows is not taken without it.
    async fn save_os(&self, record: &OsUpdateRecord) -> Result<(), ApplyError> {
        self.state
            .save(StateItem::OsUpdate, &record.encode())
            .await
            .map_err(|source| {
                self.shared.state_write_failed(StateItem::OsUpdate, &source);
                ApplyError::Os(crate::os::OsError::Failed {
                    operation: "persist the OS update",
                    reason: source.to_string(),
                })
            })
    }

    fn show_os(&self, record: &OsUpdateRecord) {
        let status = OsUpdateStatus {
            phase: record.phase,
            target: record.target_name(),
            message: record.message.clone(),
        };
        self.shared.update(|s| s.os_update = Some(status));
    }

    /// Moves `record` to `phase`, persists it, then shows and reports it.
    async fn enter_os_phase(
        &self,
        record: &mut OsUpdateRecord,
        phase: OsUpdatePhase,
        message: Option<String>,
    ) -> Result<(), ApplyError> {
        record.phase = phase;
        if message.is_some() {
            record.message = message;
        }
        self.save_os(record).await?;
        self.show_os(record);
        let target = record.target_name();
        tracing::info!(phase = phase.as_str(), %target, "OS update");
        let (reason, warning) = match phase {
            OsUpdatePhase::Staging => ("OsUpdateStaging", false),
            OsUpdatePhase::Staged => ("OsUpdateStaged", false),
            OsUpdatePhase::Rebooting => ("OsRebooting", false),
            OsUpdatePhase::HealthCheck => ("OsHealthCheck", false),
            OsUpdatePhase::Committed => ("OsUpgraded", false),
            // Steps towards the outcome; the outcome (OsUpgradeFailed) is the
            // warning, so that it is what the server shows first.
            OsUpdatePhase::RollingBack => ("OsRollingBack", false),
            OsUpdatePhase::RollbackRebooting => ("OsRollbackRebooting", false),
            OsUpdatePhase::RolledBack | OsUpdatePhase::Failed => ("OsUpgradeFailed", true),
        };
        let text = match (&record.message, phase) {
            (Some(why), OsUpdatePhase::RolledBack) => format!(
                "{target}: {why}; rolled back to {}",
                record
                    .previous
                    .as_deref()
                    .unwrap_or("the previous deployment")
            ),
            (Some(why), OsUpdatePhase::Failed) => format!("{target}: {why}; not rolled back"),
            (Some(why), OsUpdatePhase::RollingBack | OsUpdatePhase::RollbackRebooting) => {
                format!("{target}: {why}")
            }
            (_, OsUpdatePhase::HealthCheck) => {
                format!(
                    "{target} booted (start {} in the health window)",
                    record.boots
                )
            }
            _ => target.clone(),
        };
        self.shared.report(reason, text, warning);
        self.shared.emit(AgentEvent::OsUpdate(OsUpdateStatus {
            phase,
            target,
            message: record.message.clone(),
        }));
        self.shared.heartbeat_now.notify_one();
        Ok(())
    }

    /// Gives a heartbeat a moment to carry the queued events out before a reboot.
    async fn flush_before_reboot(&self) {
        let mut events = self.shared.events.subscribe();
        self.shared.heartbeat_now.notify_one();
        let delivered = async {
            while let Ok(event) = events.recv().await {
                if matches!(event, AgentEvent::HeartbeatDelivered) {
                    return;
                }
            }
        };
        tokio::select! {
            () = delivered => {}
            () = self.clock.sleep(FLUSH_BEFORE_REBOOT) => {}
        }
    }

    /// Stages `os` (the OS part of the prefetch): `None` when there is nothing to
    /// do (a target that failed before, an update under way), else the record,
    /// persisted as staged. A staging failure leaves the device as it was and
    /// removes the record.
    pub(super) async fn stage_os(
        &self,
        os: &OsInformation,
    ) -> Result<Option<OsUpdateRecord>, ApplyError> {
        let existing = self.load_os_record().await.filter(|r| r.is_target(os));
        if let Some(record) = &existing {
            self.show_os(record);
            match record.phase {
                OsUpdatePhase::RolledBack | OsUpdatePhase::Failed => {
                    tracing::info!(
                        target = %record.target_name(),
                        "this OS target failed before; not tried again until the desired OS changes"
                    );
                    return Ok(None);
                }
                OsUpdatePhase::Staging | OsUpdatePhase::Staged | OsUpdatePhase::Committed => {}
                // Carried on by the resume at start, which held the apply lock.
                _ => return Ok(None),
            }
        }
        let booted = self.os_updater.booted().await?;
        let mut record = match existing {
            Some(mut record) if record.phase != OsUpdatePhase::Committed => {
                record.target = os.clone();
                record
            }
            _ => OsUpdateRecord::new(os.clone(), booted.booted.as_ref().map(|d| d.id.clone())),
        };
        let staged = record.phase == OsUpdatePhase::Staged
            && booted.staged.as_ref().is_some_and(|d| d.runs(os));
        if staged {
            return Ok(Some(record));
        }
        self.enter_os_phase(&mut record, OsUpdatePhase::Staging, None)
            .await?;
        if let Err(error) = self.os_updater.stage(os).await {
            // Nothing changed on the device: the record goes.
            let _ = self.state.remove(StateItem::OsUpdate).await;
            self.shared.update(|s| s.os_update = None);
            return Err(error.into());
        }
        self.enter_os_phase(&mut record, OsUpdatePhase::Staged, None)
            .await?;
        Ok(Some(record))
    }

    /// Carries out [`Action::UpgradeOs`](flotta_core::reconcile::Action): the
    /// target staged (normally by the prefetch), it reboots into it; the rest
    /// happens after the boot. A target that failed before is not tried again
    /// (`Ok`, nothing done) until the desired OS changes.
    pub(super) async fn upgrade_os(&self, os: &OsInformation) -> Result<(), ApplyError> {
        let Some(mut record) = self.stage_os(os).await? else {
            return Ok(());
        };
        record.reboot_requested_at = Some(rfc3339(self.clock.now()));
        record.reboot_attempts = 1;
        self.enter_os_phase(&mut record, OsUpdatePhase::Rebooting, None)
            .await?;
        self.activate_and_wait(record).await
    }

    /// Asks the backend to boot into the staged target, then waits for the reboot
    /// (the process normally ends here). A backend that switched without a reboot
    /// goes straight to the health window; no reboot within the window fails.
    async fn activate_and_wait(&self, mut record: OsUpdateRecord) -> Result<(), ApplyError> {
        self.flush_before_reboot().await;
        if let Err(error) = self.os_updater.activate().await {
            return self
                .fail_os_update(
                    record,
                    format!("the reboot into the target failed: {error}"),
                )
                .await;
        }
        let window = record.window();
        let now_runs = |booted: &crate::os::BootedOs| {
            booted
                .booted
                .as_ref()
                .is_some_and(|d| d.runs(&record.target))
        };
        if self.os_updater.booted().await.is_ok_and(|b| now_runs(&b)) {
            record.phase = OsUpdatePhase::HealthCheck;
            record.health_started_at = Some(rfc3339(self.clock.now()));
            record.boots = 1;
            self.enter_os_phase(&mut record, OsUpdatePhase::HealthCheck, None)
                .await?;
            return self.health_window(record, window).await;
        }
        tracing::info!(?window, "waiting for the reboot into the OS target");
        self.clock.sleep(window).await;
        if self.os_updater.booted().await.is_ok_and(|b| now_runs(&b)) {
            record.health_started_at = Some(rfc3339(self.clock.now()));
            record.boots = 1;
            self.enter_os_phase(&mut record, OsUpdatePhase::HealthCheck, None)
                .await?;
            return self.health_window(record, window).await;
        }
        let reason = format!(
            "no boot into {} within {} s of the reboot request",
            record.target_name(),
            window.as_secs()
        );
        self.fail_os_update(record, reason).await
    }

    /// Runs the health checks until a round passes (commit) or `remaining` has
    /// passed (fail with the last failing check's output). At least one round runs.
    async fn health_window(
        &self,
        mut record: OsUpdateRecord,
        remaining: Duration,
    ) -> Result<(), ApplyError> {
        let deadline = self.clock.now() + remaining;
        loop {
            match self.health_round().await {
                Ok(()) => {
                    *lock(&self.shared.last_upgrade) = Some((true, rfc3339(self.clock.now())));
                    record.message = None;
                    return self
                        .enter_os_phase(&mut record, OsUpdatePhase::Committed, None)
                        .await;
                }
                Err(failure) => {
                    let now = self.clock.now();
                    if now >= deadline {
                        return self.fail_os_update(record, failure).await;
                    }
                    tracing::info!(%failure, "OS health check failed; trying again");
                    let wait = Duration::try_from(deadline - now)
                        .unwrap_or(Duration::ZERO)
                        .min(self.health_checks.interval);
                    self.clock.sleep(wait).await;
                }
            }
        }
    }

    /// One round: the backend's judgement, then greenboot's scripts and the user's
    /// checks; `Err` names the failing check and its output.
    async fn health_round(&self) -> Result<(), String> {
        match self.os_updater.health().await {
            Ok(OsHealth::Healthy) => {}
            Ok(_) => return Err("the OS backend reports the system unhealthy".into()),
            Err(error) => return Err(error.to_string()),
        }
        let warnings = self
            .health_checks
            .run_round()
            .await
            .map_err(|failure| failure.to_string())?;
        for warning in warnings {
            self.shared
                .report("OsHealthWarning", warning.to_string(), true);
        }
        Ok(())
    }

    /// The update failed: roll back when `automaticRollback` allows, else keep the
    /// target and report. Returns the failure as an apply error.
    async fn fail_os_update(
        &self,
        mut record: OsUpdateRecord,
        reason: String,
    ) -> Result<(), ApplyError> {
        tracing::warn!(target = %record.target_name(), %reason, "OS update failed");
        *lock(&self.shared.last_upgrade) = Some((false, rfc3339(self.clock.now())));
        if !record.rolls_back() {
            self.enter_os_phase(&mut record, OsUpdatePhase::Failed, Some(reason))
                .await?;
            return Err(ApplyError::OsUnhealthy {
                target: record.target_name(),
                rolled_back: false,
            });
        }
        self.enter_os_phase(
            &mut record,
            OsUpdatePhase::RollingBack,
            Some(reason.clone()),
        )
        .await?;
        self.roll_back_os(record, reason).await
    }

    /// Rolls back through the backend; reboots when the device runs the target,
    /// finishes at once when the target never booted (only its staged deployment
    /// is dropped).
    async fn roll_back_os(
        &self,
        mut record: OsUpdateRecord,
        reason: String,
    ) -> Result<(), ApplyError> {
        let runs_target = self
            .os_updater
            .booted()
            .await
            .ok()
            .and_then(|b| b.booted)
            .is_some_and(|d| d.runs(&record.target));
        if let Err(error) = self.os_updater.rollback().await {
            let why = format!("{reason}; the rollback failed: {error}");
            self.enter_os_phase(&mut record, OsUpdatePhase::Failed, Some(why))
                .await?;
            return Err(ApplyError::OsUnhealthy {
                target: record.target_name(),
                rolled_back: false,
            });
        }
        if !runs_target {
            self.finish_os_rollback(record.clone(), reason).await;
            return Err(ApplyError::OsUnhealthy {
                target: record.target_name(),
                rolled_back: true,
            });
        }
        record.reboot_requested_at = Some(rfc3339(self.clock.now()));
        record.reboot_attempts = 1;
        self.enter_os_phase(&mut record, OsUpdatePhase::RollbackRebooting, None)
            .await?;
        self.reboot_after_rollback(record).await
    }

    /// Reboots into the previous deployment and waits for the process to end; a
    /// reboot that does not come within the window leaves the update failed.
    async fn reboot_after_rollback(&self, mut record: OsUpdateRecord) -> Result<(), ApplyError> {
        self.flush_before_reboot().await;
        let result = self.os_updater.reboot().await;
        let window = record.window();
        if result.is_ok() {
            self.clock.sleep(window).await;
        }
        let why = match result {
            Ok(()) => format!(
                "{}; no reboot into the previous deployment within {} s",
                record.message.clone().unwrap_or_default(),
                window.as_secs()
            ),
            Err(error) => format!(
                "{}; the reboot after the rollback failed: {error}",
                record.message.clone().unwrap_or_default()
            ),
        };
        self.enter_os_phase(&mut record, OsUpdatePhase::Failed, Some(why))
            .await?;
        Err(ApplyError::OsUnhealthy {
            target: record.target_name(),
            rolled_back: false,
        })
    }

    /// The device is back on the previous deployment.
    async fn finish_os_rollback(&self, mut record: OsUpdateRecord, reason: String) {
        *lock(&self.shared.last_upgrade) = Some((false, rfc3339(self.clock.now())));
        if let Err(error) = self
            .enter_os_phase(&mut record, OsUpdatePhase::RolledBack, Some(reason))
            .await
        {
            tracing::error!(%error, "could not record the finished OS rollback");
        }
    }
}
