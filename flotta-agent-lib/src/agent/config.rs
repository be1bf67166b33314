//! The configuration loop: long-poll the configuration, apply its plan through the
//! runtime and the OS updater, roll back to the last good configuration when an
//! apply fails, and remember which definition each workload was applied from.

use std::time::Duration;

use flotta_client::ConfigPoll;
use flotta_core::reconcile::{
    Action, ConfigVersion, ObservedOs, ObservedState, ObservedWorkload, RenderedConfig, SecretData,
    WorkloadInputs, file_write, fingerprint, plan, rollback_plan,
};
use flotta_core::wire::{DeviceConfigurationMessage, HeartbeatConfiguration, Secret, Workload};

use super::Agent;
use super::status::{AgentEvent, lock};
use crate::error::{AgentError, ApplyError, RetryLater};
use crate::files::WrittenFiles;
use crate::state::{AppliedWorkloads, PersistedConfig, StateItem, load_config, load_text};

/// The longest wait before a version outside its window is looked at again.
const WINDOW_RECHECK: Duration = Duration::from_secs(60);

mod overlay;

impl Agent {
    /// Brings the runtime back to the persisted current configuration (after a
    /// restart or power loss), before the server is reachable.
    pub(super) async fn converge_persisted(&self) -> Result<(), AgentError> {
        let _applying = self.apply_lock.lock().await;
        self.load_applied().await?;
        self.load_written().await?;
        let failed = load_text(self.state.as_ref(), StateItem::FailedVersion).await?;
        let Some(current) = load_config(self.state.as_ref(), StateItem::CurrentConfig).await?
        else {
            *lock(&self.shared.poll_version) = failed.clone();
            self.shared.update(|s| s.failed_version = failed);
            return Ok(());
        };
        self.follow_heartbeat(
            current
                .message
                .configuration
                .as_ref()
                .and_then(|c| c.heartbeat.as_ref()),
        );
        self.follow_metrics(&current.message);
        self.follow_ansible(&current.message);
        self.follow_logs(&current.message);
        self.follow_data(&current.message);
        let config = RenderedConfig::from_message(current.message.clone());
        self.clean_file_leftovers(&config);
        match self.observe(&config, &config).await {
            Ok(observed) => {
                // The OS is not restored from the persisted configuration: an
                // update in flight is the OS update record's to carry on, and a
                // target that failed or was superseded is not tried again from here.
                let actions: Vec<Action> = plan(&config, &config, &observed)
                    .into_iter()
                    .filter(|a| !matches!(a, Action::UpgradeOs { .. }))
                    .collect();
                if let Err(error) = self.execute(&actions, secrets_of(&config)).await {
                    tracing::warn!(%error, "could not restore the persisted configuration");
                }
            }
            Err(error) => tracing::warn!(%error, "could not list the runtime's workloads"),
        }
        *lock(&self.shared.poll_version) = failed.clone().or(Some(current.version.clone()));
        self.shared.update(|s| {
            s.config_version = Some(current.version);
            s.failed_version = failed;
        });
        Ok(())
    }

    /// Long-polls the configuration and converges on it, for as long as the agent
    /// runs; failures back off by [`AgentTiming::retry`](super::AgentTiming).
    pub(super) async fn config_loop(&self) {
        let mut failures = 0u32;
        // A version waiting for its window: when to look at it again. Meanwhile
        // the loop keeps long-polling (named as known, so only a change answers).
        let mut waiting: Option<(time::OffsetDateTime, String, DeviceConfigurationMessage)> = None;
        loop {
            let result = match waiting.take() {
                Some((at, version, message)) if self.clock.now() >= at => {
                    self.converge(version, message).await
                }
                Some((at, version, message)) => {
                    let left = Duration::try_from(at - self.clock.now()).unwrap_or_default();
                    let result = self.poll_config_within(left).await;
                    // A new configuration replaces the waiting one.
                    if lock(&self.shared.poll_version).as_deref() == Some(version.as_str()) {
                        waiting = Some((at, version, message));
                    }
                    result
                }
                None => self.poll_config().await,
            };
            match result {
                Ok(()) => failures = 0,
                Err(RetryLater::Window {
                    wait,
                    version,
                    message,
                }) => {
                    // Not a failure: the version waits for its window.
                    failures = 0;
                    *lock(&self.shared.poll_version) = Some(version.clone());
                    waiting = Some((self.clock.now() + wait, version, *message));
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.retry_delay(failures);
                    tracing::debug!(%error, ?delay, failures, "configuration poll backs off");
                    self.clock.sleep(delay).await;
                }
            }
        }
    }

    /// Takes on a configuration's heartbeat settings: the period, the long-poll
    /// wait, the longest silence and the hardware inventory. Whether the period
    /// or the silence changed.
    fn follow_heartbeat(&self, heartbeat: Option<&HeartbeatConfiguration>) -> bool {
        let settings = heartbeat_settings(heartbeat);
        let period = settings.period.unwrap_or(self.timing.heartbeat_period);
        let silence = settings.max_silence;
        *lock(&self.shared.long_poll) = settings.long_poll;
        *lock(&self.shared.heartbeat_hardware) = includes_hardware(heartbeat);
        let old_period = std::mem::replace(&mut *lock(&self.shared.heartbeat_period), period);
        let old_silence = std::mem::replace(&mut *lock(&self.shared.max_silence), silence);
        old_period != period || old_silence != silence
    }

    /// One long-poll, and the apply of what it brought.
    async fn poll_config(&self) -> Result<(), RetryLater> {
        self.poll_config_within(self.timing.config_wait).await
    }

    /// [`poll_config`](Self::poll_config) waiting at most `wait` on the server:
    /// the configuration's long-poll wait (60 s until one is named), within
    /// [`AgentTiming::config_wait`](super::AgentTiming).
    async fn poll_config_within(&self, wait: Duration) -> Result<(), RetryLater> {
        let known = lock(&self.shared.poll_version).clone();
        let named = lock(&self.shared.long_poll).unwrap_or(DEFAULT_LONG_POLL);
        let wait = wait
            .min(named)
            .min(self.timing.config_wait)
            .max(Duration::from_secs(1));
        let poll = self
            .client
            .get_config(&self.device_id, known.as_deref(), Some(wait))
            .await;
        // The server marks its answers while a control command waits.
        if self.client.take_control_pending() {
            self.shared.control_check.notify_one();
        }
        // And asks for a report when it judges the status against something new.
        if self.client.take_report_wanted() {
            self.shared
                .report_now
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.shared.heartbeat_now.notify_one();
        }
        let was_failing = self
            .shared
            .poll_failing
            .swap(poll.is_err(), std::sync::atomic::Ordering::SeqCst);
        if was_failing && poll.is_ok() {
            // Back in contact: report at once, whatever changed meanwhile.
            self.shared
                .report_now
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.shared.heartbeat_now.notify_one();
        }
        match poll {
            Ok(ConfigPoll::NotModified) => Ok(()),
            Ok(ConfigPoll::Config { etag, message }) => {
                match message.content_as::<DeviceConfigurationMessage>() {
                    Ok(desired) => self.converge(etag, desired).await,
                    Err(error) => {
                        self.reject(etag, error.to_string()).await;
                        Ok(())
                    }
                }
            }
            Err(error) => {
                self.shared.refused(error.status());
                tracing::warn!(%error, "configuration poll failed");
                Err(RetryLater::Request(error))
            }
        }
    }

    /// Records `version` as failed so the next polls name it and get 304.
    async fn remember_failed(&self, version: &str) {
        *lock(&self.shared.poll_version) = Some(version.to_owned());
        self.shared
            .update(|s| s.failed_version = Some(version.to_owned()));
        if let Err(error) = self
            .state
            .save(StateItem::FailedVersion, version.as_bytes())
            .await
        {
            self.shared
                .state_write_failed(StateItem::FailedVersion, &error);
        }
    }

    async fn reject(&self, version: String, reason: String) {
        tracing::warn!(%version, %reason, "configuration rejected");
        self.shared.report(
            "ConfigRejected",
            format!("version {version}: {reason}"),
            true,
        );
        self.remember_failed(&version).await;
        self.shared.update(|s| s.counters.applies_failed += 1);
        self.shared
            .emit(AgentEvent::ApplyFailed { version, reason });
    }

    /// Persists a configuration; a failure is reported (event, status) and returned.
    async fn save_config(
        &self,
        item: StateItem,
        config: &PersistedConfig,
    ) -> Result<(), RetryLater> {
        self.state
            .save(item, &config.encode())
            .await
            .map_err(|source| {
                self.shared.state_write_failed(item, &source);
                RetryLater::State { item, source }
            })
    }

    async fn load_or_empty(&self, item: StateItem) -> PersistedConfig {
        match load_config(self.state.as_ref(), item).await {
            Ok(config) => config.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "ignoring unusable persisted configuration");
                PersistedConfig::default()
            }
        }
    }

    /// What the device has: the runtime's workloads, the OS as the updater reports
    /// it against `desired`'s target, and the rest as `base` says.
    async fn observe(
        &self,
        base: &RenderedConfig,
        desired: &RenderedConfig,
    ) -> Result<ObservedState, ApplyError> {
        let mut observed = ObservedState::from_config(base);
        let listed = self.runtime.list().await?;
        observed.workloads = {
            let applied = lock(&self.applied);
            listed
                .into_iter()
                .map(|w| {
                    // What the agent applied under this name; `None` for a workload
                    // it did not start, which planning leaves alone.
                    let fingerprint = applied.0.get(&w.name).cloned();
                    (
                        w.name,
                        ObservedWorkload {
                            fingerprint: fingerprint.map(ConfigVersion::from_received),
                            phase: w.phase,
                        },
                    )
                })
                .collect()
        };
        let target = desired
            .message
            .configuration
            .as_ref()
            .and_then(|c| c.os.as_ref());
        if let Some(target) = target
            && let Ok(booted) = self.os_updater.booted().await
            && let Some(running) = booted.booted
        {
            // The updater knows better than the last configuration whether the
            // target is reached (it was not when `automatically_upgrade` was off,
            // or the update was rolled back).
            observed.os = if running.runs(target) {
                ObservedOs {
                    commit_id: target.commit_id.clone(),
                    image: target.image.clone(),
                }
            } else {
                ObservedOs {
                    commit_id: Some(running.id),
                    image: None,
                }
            };
        }
        Ok(observed)
    }

    /// Applies a configuration; on failure rolls back to the last good one. `Err`
    /// when state could not be persisted: nothing was applied (or the apply is not
    /// recorded) and the same version is tried again after a backoff.
    async fn converge(
        &self,
        version: String,
        message: DeviceConfigurationMessage,
    ) -> Result<(), RetryLater> {
        let _applying = self.apply_lock.lock().await;
        let desired = PersistedConfig { version, message };
        // Never run a configuration the device could not restore after a restart.
        self.save_config(StateItem::DesiredConfig, &desired).await?;
        let current = self.load_or_empty(StateItem::CurrentConfig).await;
        let current_rendered = RenderedConfig::from_message(current.message);
        let desired_rendered = RenderedConfig::from_message(desired.message.clone());
        let actions = match self.observe(&current_rendered, &desired_rendered).await {
            Ok(observed) => Ok(plan(&current_rendered, &desired_rendered, &observed)),
            Err(error) => Err(error),
        };
        if let Ok(actions) = &actions {
            let mut refused = self.refusals(actions, secrets_of(&desired_rendered));
            refused.extend(unusable_schedules(&desired_rendered));
            refused.extend(self.unforwardable_logs(&desired_rendered.message));
            refused.extend(self.unuploadable_data(&desired_rendered.message));
            if !refused.is_empty() {
                // Nothing of the version is applied: the device stays as it is.
                for reason in &refused {
                    self.shared.report("ActionRefused", reason.clone(), true);
                }
                self.reject(desired.version, refused.join("; ")).await;
                self.shared.heartbeat_now.notify_one();
                return Ok(());
            }
        }
        if let Ok(actions) = &actions
            && !actions.is_empty()
        {
            let policy = desired_rendered
                .message
                .configuration
                .as_ref()
                .and_then(|c| c.update_policy.as_ref());
            self.wait_for_window(
                &desired.version,
                &desired.message,
                "download",
                policy.and_then(|p| p.download_schedule.as_ref()),
            )?;
        }
        if let Ok(actions) = &actions {
            // Everything the version needs is downloaded before anything of it is
            // applied: a failure leaves the running version as it is, and the same
            // version is tried again after a backoff.
            if let Err(reason) = self.prefetch(actions, secrets_of(&desired_rendered)).await {
                tracing::warn!(version = %desired.version, %reason, "prefetch failed");
                self.shared.report(
                    "PrefetchFailed",
                    format!("version {}: {reason}", desired.version),
                    true,
                );
                self.shared
                    .update(|s| s.prefetch_error = Some(reason.clone()));
                self.shared.emit(AgentEvent::PrefetchFailed {
                    version: desired.version.clone(),
                    reason: reason.clone(),
                });
                self.shared.heartbeat_now.notify_one();
                return Err(RetryLater::Prefetch { reason });
            }
            self.shared.update(|s| s.prefetch_error = None);
            if !actions.is_empty() {
                let policy = desired_rendered
                    .message
                    .configuration
                    .as_ref()
                    .and_then(|c| c.update_policy.as_ref());
                self.wait_for_window(
                    &desired.version,
                    &desired.message,
                    "update",
                    policy.and_then(|p| p.update_schedule.as_ref()),
                )?;
            }
        }
        self.shared.update(|s| s.waiting_for_window = None);
        let outcome = match actions {
            Ok(actions) => self.execute(&actions, secrets_of(&desired_rendered)).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => {
                self.save_config(StateItem::CurrentConfig, &desired).await?;
                self.save_config(StateItem::LastGoodConfig, &desired)
                    .await?;
                if let Err(error) = self.state.remove(StateItem::FailedVersion).await {
                    tracing::warn!(%error, "could not clear the failed version");
                }
                *lock(&self.shared.poll_version) = Some(desired.version.clone());
                self.follow_metrics(&desired.message);
                self.follow_ansible(&desired.message);
                self.follow_logs(&desired.message);
                self.follow_data(&desired.message);
                self.shared.update(|s| {
                    s.config_version = Some(desired.version.clone());
                    s.failed_version = None;
                    s.state_error = None;
                    s.counters.applies_succeeded += 1;
                });
                tracing::info!(version = %desired.version, "configuration applied");
                self.shared.report(
                    "ConfigApplied",
                    format!("version {}", desired.version),
                    false,
                );
                self.shared.emit(AgentEvent::ConfigApplied {
                    version: desired.version,
                });
            }
            Err(error) => {
                self.roll_back(desired, desired_rendered, error.to_string())
                    .await;
            }
        }
        self.shared.heartbeat_now.notify_one();
        Ok(())
    }

    async fn roll_back(
        &self,
        failed: PersistedConfig,
        failed_rendered: RenderedConfig,
        reason: String,
    ) {
        tracing::warn!(version = %failed.version, %reason, "apply failed; rolling back");
        self.shared.update(|s| s.counters.applies_failed += 1);
        self.shared.report(
            "ApplyFailed",
            format!("version {}: {reason}", failed.version),
            true,
        );
        self.shared.emit(AgentEvent::ApplyFailed {
            version: failed.version.clone(),
            reason,
        });
        let last_good = self.load_or_empty(StateItem::LastGoodConfig).await;
        let last_good_rendered = RenderedConfig::from_message(last_good.message.clone());
        let complete = match self.observe(&failed_rendered, &last_good_rendered).await {
            Ok(observed) => {
                let actions = rollback_plan(&failed_rendered, &last_good_rendered, &observed);
                match self
                    .execute(&actions, secrets_of(&last_good_rendered))
                    .await
                {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::error!(%error, "rollback incomplete");
                        false
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "rollback impossible");
                false
            }
        };
        // Failures are reported by save_config; the rollback itself stands.
        let _ = self.save_config(StateItem::CurrentConfig, &last_good).await;
        self.follow_metrics(&last_good.message);
        self.follow_ansible(&last_good.message);
        self.follow_logs(&last_good.message);
        self.follow_data(&last_good.message);
        self.shared.update(|s| {
            s.config_version = Some(last_good.version.clone()).filter(|v| !v.is_empty());
        });
        self.shared.report(
            "RolledBack",
            format!(
                "from {} to {} ({})",
                failed.version,
                last_good.version,
                if complete { "complete" } else { "incomplete" }
            ),
            !complete,
        );
        self.shared.emit(AgentEvent::RolledBack {
            failed_version: failed.version.clone(),
            to_version: last_good.version,
            complete,
        });
        // Last: a status naming the failed version tells that the rollback is over
        // and its event out.
        self.remember_failed(&failed.version).await;
    }

    /// What of `actions` this agent cannot do, one line per action naming it and
    /// why: a file outside the allowed roots or not decodable, a secret that does not
    /// decode, a workload whose inputs do not resolve, an action it does not know.
    /// A version with any is refused whole.
    fn refusals(&self, actions: &[Action], secrets: &[Secret]) -> Vec<String> {
        let mut refused = Vec::new();
        for action in actions {
            let problem = match action {
                Action::WriteFile { file } => file_write(file, &self.file_roots)
                    .err()
                    .map(|e| format!("WriteFile {e}")),
                Action::PutSecret { secret } => SecretData::from_wire(secret)
                    .err()
                    .map(|e| format!("PutSecret: {e}")),
                Action::StartWorkload { workload } | Action::ReplaceWorkload { workload } => {
                    WorkloadInputs::resolve(workload, secrets).err().map(|e| {
                        format!(
                            "workload {}: {e}",
                            workload.name.as_deref().unwrap_or_default()
                        )
                    })
                }
                // A commit hosted at Flotta's `hostedObjectsURL` is pulled from
                // there by backends that can; others refuse the version rather than
                // stage something else.
                Action::UpgradeOs { os } => os
                    .hosted_objects_url
                    .as_ref()
                    .filter(|_| !self.os_updater.pulls_hosted_objects())
                    .map(|url| {
                        format!(
                            "UpgradeOs: hostedObjectsURL {url:?} is not supported by this agent's OS backend"
                        )
                    }),
                // Block-device mounts are not carried out: a version asking for
                // them is refused rather than run without them.
                Action::ApplySettings { settings } => settings
                    .mounts
                    .as_ref()
                    .filter(|mounts| !mounts.is_empty())
                    .map(|mounts| {
                        let folders: Vec<&str> = mounts
                            .iter()
                            .filter_map(|m| m.directory.as_deref())
                            .collect();
                        format!(
                            "ApplySettings: configuration.mounts ({}) is not supported: this agent does not mount block devices",
                            folders.join(", ")
                        )
                    }),
                Action::RemoveWorkload { .. }
                | Action::RemoveSecret { .. }
                | Action::RemoveFile { .. }
                | Action::SetHeartbeat { .. } => None,
                other => Some(format!("this agent cannot carry out {other:?}")),
            };
            refused.extend(problem);
        }
        refused
    }

    /// `Err` (wait, then try the version again) when `schedule` is closed now;
    /// the status and an event say so, once per version and window.
    fn wait_for_window(
        &self,
        version: &str,
        message_of_version: &DeviceConfigurationMessage,
        which: &'static str,
        schedule: Option<&flotta_core::wire::UpdateSchedule>,
    ) -> Result<(), RetryLater> {
        let Some(schedule) = schedule else {
            return Ok(());
        };
        let now = self.clock.now();
        // A version whose schedule does not parse here was refused before this.
        let Ok(parsed) = schedule.parse() else {
            return Ok(());
        };
        if parsed.is_open(now) {
            return Ok(());
        }
        let opens = parsed.next_opening(now);
        let message = format!(
            "version {version}: waiting for the {which} window ({}{})",
            schedule.at,
            opens.map_or_else(String::new, |at| format!(
                ", opens {}",
                flotta_core::timestamp::rfc3339(at)
            ))
        );
        let changed =
            lock(&self.shared.status).waiting_for_window.as_deref() != Some(message.as_str());
        if changed {
            tracing::info!(%message, "outside the window");
            self.shared
                .report("WaitingForUpdateWindow", message.clone(), false);
            self.shared
                .update(|s| s.waiting_for_window = Some(message.clone()));
            self.shared.emit(AgentEvent::WaitingForWindow {
                version: version.to_owned(),
                message,
            });
            self.shared.heartbeat_now.notify_one();
        }
        let wait = opens
            .and_then(|at| Duration::try_from(at - now).ok())
            .unwrap_or(WINDOW_RECHECK)
            .min(WINDOW_RECHECK);
        Err(RetryLater::Window {
            wait,
            version: version.to_owned(),
            message: Box::new(message_of_version.clone()),
        })
    }

    /// Downloads what `actions` need: the images of the workloads they start or
    /// replace (with each workload's registry credentials), and the OS target
    /// (staged only), after checking the disk space the builder asks for.
    async fn prefetch(&self, actions: &[Action], secrets: &[Secret]) -> Result<(), String> {
        let fetches = actions.iter().any(|a| {
            matches!(
                a,
                Action::StartWorkload { .. }
                    | Action::ReplaceWorkload { .. }
                    | Action::UpgradeOs { .. }
            )
        });
        if !fetches {
            return Ok(());
        }
        if let Some((path, needed)) = &self.prefetch_min_free {
            crate::files::check_free_space(path, *needed)?;
        }
        for action in actions {
            match action {
                Action::StartWorkload { workload } | Action::ReplaceWorkload { workload } => {
                    let inputs = WorkloadInputs::resolve(workload, secrets).map_err(|e| {
                        format!(
                            "workload {}: {e}",
                            workload.name.as_deref().unwrap_or_default()
                        )
                    })?;
                    self.runtime
                        .prefetch(workload, &inputs)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Action::UpgradeOs { os } => {
                    self.stage_os(os).await.map_err(|e| e.to_string())?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Carries out `actions` in order, stopping at the first failure; `secrets` are
    /// those of the configuration the actions lead to, which workloads read.
    async fn execute(&self, actions: &[Action], secrets: &[Secret]) -> Result<(), ApplyError> {
        for action in actions {
            match action {
                Action::RemoveWorkload { name } => self.remove_workload(name).await?,
                Action::StartWorkload { workload } | Action::ReplaceWorkload { workload } => {
                    self.apply_workload(workload, secrets).await?;
                }
                // Secrets live in the persisted configuration (the state directory,
                // owner-only) and reach workloads through their inputs at apply; a
                // secret that does not decode was refused before anything ran.
                Action::PutSecret { .. } | Action::RemoveSecret { .. } => {}
                Action::WriteFile { file } => self.write_overlay_file(file).await?,
                Action::RemoveFile { path } => self.remove_overlay_file(path).await?,
                Action::ApplySettings { settings } => {
                    tracing::info!("device settings applied");
                    *lock(&self.settings) = Some((**settings).clone());
                }
                Action::SetHeartbeat { heartbeat } => {
                    if self.follow_heartbeat(heartbeat.as_ref()) {
                        // The control loop may be waiting out the old silence:
                        // poll now and wait the new one from there.
                        self.shared.control_check.notify_one();
                    }
                }
                Action::UpgradeOs { os } => self.upgrade_os(os).await?,
                other => {
                    // `refusals` refused the version before anything ran.
                    return Err(ApplyError::Unsupported {
                        action: format!("{other:?}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads the record of applied workloads (after a restart).
    async fn load_applied(&self) -> Result<(), AgentError> {
        let item = StateItem::AppliedWorkloads;
        let record = match self.state.load(item).await? {
            Some(bytes) => AppliedWorkloads::decode(item, &bytes)?,
            None => AppliedWorkloads::default(),
        };
        *lock(&self.applied) = record;
        Ok(())
    }

    /// Changes the record of applied workloads and persists it; a failure to persist
    /// is reported, and the record in memory stands.
    async fn record_applied(&self, change: impl FnOnce(&mut AppliedWorkloads)) {
        let bytes = {
            let mut applied = lock(&self.applied);
            change(&mut applied);
            applied.encode()
        };
        let item = StateItem::AppliedWorkloads;
        if let Err(error) = self.state.save(item, &bytes).await {
            self.shared.state_write_failed(item, &error);
        }
    }

    /// Applies `workload` through the runtime and records its fingerprint. Until the
    /// apply is done the record says "unknown", so an apply cut short by a crash is
    /// repeated.
    async fn apply_workload(
        &self,
        workload: &Workload,
        secrets: &[Secret],
    ) -> Result<(), ApplyError> {
        let inputs =
            WorkloadInputs::resolve(workload, secrets).map_err(|e| ApplyError::Inputs {
                workload: workload.name.clone().unwrap_or_default(),
                reason: e.to_string(),
            })?;
        let Some(name) = workload.name.clone().filter(|n| !n.is_empty()) else {
            // The runtime says why it cannot run a nameless workload.
            self.runtime.apply_with(workload, &inputs).await?;
            return Ok(());
        };
        self.record_applied(|a| {
            a.0.insert(name.clone(), String::new());
        })
        .await;
        self.runtime.apply_with(workload, &inputs).await?;
        let applied = fingerprint(workload);
        self.record_applied(|a| {
            a.0.insert(name, applied.as_str().to_owned());
        })
        .await;
        Ok(())
    }

    /// Removes workload `name` through the runtime and from the record.
    pub(super) async fn remove_workload(&self, name: &str) -> Result<(), ApplyError> {
        self.runtime.remove(name).await?;
        self.record_applied(|a| {
            a.0.remove(name);
        })
        .await;
        Ok(())
    }

    /// Names of the workloads the agent applied and did not remove.
    pub(super) fn applied_names(&self) -> Vec<String> {
        lock(&self.applied).0.keys().cloned().collect()
    }
}

/// The secrets a configuration carries.
fn secrets_of(config: &RenderedConfig) -> &[Secret] {
    config.message.secrets.as_deref().unwrap_or_default()
}

fn file_error(path: &str, reason: String) -> ApplyError {
    ApplyError::File {
        path: path.to_owned(),
        reason,
    }
}

/// The long-poll wait until a configuration names one.
const DEFAULT_LONG_POLL: Duration = Duration::from_secs(60);

/// What the heartbeat settings of a configuration name, each only when positive.
#[derive(Debug, Default, PartialEq, Eq)]
struct HeartbeatSettings {
    period: Option<Duration>,
    long_poll: Option<Duration>,
    max_silence: Option<Duration>,
}

fn heartbeat_settings(heartbeat: Option<&HeartbeatConfiguration>) -> HeartbeatSettings {
    let seconds = |value: fn(&HeartbeatConfiguration) -> Option<i64>| {
        heartbeat
            .and_then(value)
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
    };
    HeartbeatSettings {
        period: seconds(|h| h.period_seconds),
        long_poll: seconds(|h| h.long_poll_seconds),
        max_silence: seconds(|h| h.max_silence_seconds),
    }
}

/// Whether heartbeat settings ask for the hardware inventory in every heartbeat
/// (`hardware_profile.include`; the `delta` scope is sent in full).
fn includes_hardware(heartbeat: Option<&HeartbeatConfiguration>) -> bool {
    heartbeat
        .and_then(|h| h.hardware_profile.as_ref())
        .and_then(|p| p.include)
        .unwrap_or(false)
}

/// The update schedules of `rendered` this device cannot evaluate (a time zone its
/// zoneinfo database lacks, though the server's has it): the version is refused
/// with why, rather than applied outside the windows its author set.
fn unusable_schedules(rendered: &RenderedConfig) -> Vec<String> {
    let Some(policy) = rendered
        .message
        .configuration
        .as_ref()
        .and_then(|c| c.update_policy.as_ref())
    else {
        return Vec::new();
    };
    [
        ("downloadSchedule", policy.download_schedule.as_ref()),
        ("updateSchedule", policy.update_schedule.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, schedule)| {
        let error = schedule?.parse().err()?;
        Some(format!("updatePolicy.{name}: {error}"))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_in_a_zone_this_device_does_not_know_refuses_the_version() {
        let schedule = |zone: &str| flotta_core::wire::UpdateSchedule {
            at: "0 3 * * *".into(),
            time_zone: Some(zone.into()),
            start_grace_duration: "1h".into(),
            ..Default::default()
        };
        let message = DeviceConfigurationMessage {
            configuration: Some(flotta_core::wire::DeviceConfiguration {
                update_policy: Some(flotta_core::wire::UpdatePolicy {
                    download_schedule: Some(schedule("UTC")),
                    update_schedule: Some(schedule("Mars/Olympus_Mons")),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let refused = unusable_schedules(&RenderedConfig::from_message(message));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].starts_with("updatePolicy.updateSchedule: time zone \"Mars/Olympus_Mons\""),
            "{refused:?}"
        );
    }

    #[test]
    fn heartbeat_settings_come_from_the_configuration_when_positive() {
        assert_eq!(heartbeat_settings(None), HeartbeatSettings::default());
        let named = flotta_core::wire::HeartbeatConfiguration {
            period_seconds: Some(15),
            long_poll_seconds: Some(37),
            max_silence_seconds: Some(900),
            ..Default::default()
        };
        assert_eq!(
            heartbeat_settings(Some(&named)),
            HeartbeatSettings {
                period: Some(Duration::from_secs(15)),
                long_poll: Some(Duration::from_secs(37)),
                max_silence: Some(Duration::from_secs(900)),
            }
        );
        let nonsense = flotta_core::wire::HeartbeatConfiguration {
            period_seconds: Some(-1),
            long_poll_seconds: Some(0),
            max_silence_seconds: Some(-5),
            ..Default::default()
        };
        assert_eq!(
            heartbeat_settings(Some(&nonsense)),
            HeartbeatSettings::default()
        );
    }

    #[test]
    fn hardware_is_sent_only_when_the_profile_asks() {
        use flotta_core::wire::{HardwareProfileConfiguration, HeartbeatConfiguration};
        let with = |include| HeartbeatConfiguration {
            hardware_profile: Some(HardwareProfileConfiguration {
                include,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!includes_hardware(None));
        assert!(!includes_hardware(Some(&HeartbeatConfiguration::default())));
        assert!(!includes_hardware(Some(&with(None))));
        assert!(!includes_hardware(Some(&with(Some(false)))));
        assert!(includes_hardware(Some(&with(Some(true)))));
    }
}
