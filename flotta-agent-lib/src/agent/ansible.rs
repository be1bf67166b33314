//! The Ansible room: while the configuration carries `ansible-manager`, ask the
//! server for the device's playbook executions every period (directive
//! `ansible`), run each one not yet run at its revision through the
//! [`PlaybookRunner`](crate::ansible::PlaybookRunner), with its attempts, and
//! report its states in the heartbeats. Which executions a device gets, and what
//! its reports become on the server, is decided by [`flotta_core::ansible`].
//!
//! Finished executions are persisted with their revision and outcome
//! ([`StateItem::PlaybookExecutions`]), so a restart runs none twice, and one the
//! server still sends (its final report was lost with a restart) is reported
//! again instead of run; a run cut short by a restart is run again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use flotta_core::wire::{self, DeviceConfigurationMessage, PlaybookExecutionStatus};

use super::Agent;
use super::status::lock;
use crate::ansible::PlaybookRun;
use crate::state::StateItem;

/// A state to report for one execution, until a heartbeat carried its final one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaybookReport {
    pub state: &'static str,
    pub message: Option<String>,
}

/// A finished execution, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Finished {
    /// The revision run.
    revision: String,
    /// `SuccessfullyCompleted` or `CompletedWithError`.
    state: String,
    /// The recap or the reason.
    message: Option<String>,
}

impl Agent {
    /// Makes the Ansible loop follow the configuration now in force.
    pub(super) fn follow_ansible(&self, message: &DeviceConfigurationMessage) {
        let period = message
            .configuration
            .as_ref()
            .and_then(|c| c.ansible_manager.as_ref())
            .and_then(|m| m.period_seconds)
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(1).max(1)));
        self.ansible_period.send_if_modified(|current| {
            if *current == period {
                return false;
            }
            tracing::info!(?period, "ansible polling changed");
            *current = period;
            true
        });
    }

    /// Runs for as long as the agent runs; polls only while the configuration asks.
    pub(super) async fn ansible_loop(&self) {
        let mut periods = self.ansible_period.subscribe();
        loop {
            let period = *periods.borrow_and_update();
            let Some(period) = period else {
                if periods.changed().await.is_err() {
                    return std::future::pending().await;
                }
                continue;
            };
            self.poll_playbooks().await;
            tokio::select! {
                () = self.clock.sleep(period) => {}
                changed = periods.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        }
    }

    async fn poll_playbooks(&self) {
        let executions = match self.client.playbook_executions(&self.device_id).await {
            Ok(executions) => executions,
            Err(error) => {
                tracing::warn!(%error, "cannot fetch playbook executions");
                return;
            }
        };
        let mut done = self.finished_playbooks().await;
        for execution in executions {
            let (Some(name), Some(playbook)) = (
                execution.name.clone(),
                execution.ansible_playbook_string.clone(),
            ) else {
                continue;
            };
            let revision = execution.revision.clone().unwrap_or_else(|| {
                // Flotta's server sends no revision: the playbook's text stands in.
                flotta_core::ansible::text_revision(&playbook)
            });
            if let Some(finished) = done.get(&name).filter(|f| f.revision == revision) {
                // Run already; the server missed the final report: say it again.
                let state = if finished.state == "SuccessfullyCompleted" {
                    "SuccessfullyCompleted"
                } else {
                    "CompletedWithError"
                };
                self.report_playbook(&name, state, finished.message.clone());
                continue;
            }
            let (state, message) = self.run_execution(&name, playbook, &execution).await;
            done.insert(
                name,
                Finished {
                    revision,
                    state: state.to_owned(),
                    message,
                },
            );
            if let Err(error) = self
                .state
                .save(
                    StateItem::PlaybookExecutions,
                    &serde_json::to_vec(&done).unwrap_or_default(),
                )
                .await
            {
                tracing::warn!(%error, "cannot record the finished playbook executions");
            }
        }
    }

    /// The executions run to their end, by name.
    async fn finished_playbooks(&self) -> BTreeMap<String, Finished> {
        match self.state.load(StateItem::PlaybookExecutions).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(%error, "finished playbook executions unreadable: starting afresh");
                BTreeMap::new()
            }),
            Ok(None) => BTreeMap::new(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the finished playbook executions");
                BTreeMap::new()
            }
        }
    }

    /// Runs an execution with its attempts, reporting each state; returns the
    /// final state and its message.
    async fn run_execution(
        &self,
        name: &str,
        playbook: String,
        execution: &wire::PlaybookExecution,
    ) -> (&'static str, Option<String>) {
        self.report_playbook(name, "Deploying", None);
        let run = PlaybookRun {
            name: name.to_owned(),
            playbook,
            timeout: execution
                .timeout_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            check: execution.check.unwrap_or(false),
            become_: execution.become_.unwrap_or(false),
            become_method: execution.become_method.clone(),
            become_user: execution.become_user.clone(),
        };
        let attempts = execution
            .attempts
            .unwrap_or(1)
            .clamp(1, flotta_core::ansible::MAX_ATTEMPTS);
        let workdir = self.ansible_dir.join(sanitized(name));
        let mut last = None;
        for attempt in 1..=attempts {
            let message = (attempt > 1).then(|| format!("attempt {attempt} of {attempts}"));
            self.report_playbook(name, "Running", message);
            tracing::info!(execution = %name, attempt, attempts, "running playbook");
            let outcome = self.playbooks.run(&run, &workdir).await;
            if outcome.succeeded {
                tracing::info!(execution = %name, summary = %outcome.message, "playbook succeeded");
                let message = Some(outcome.message);
                self.report_playbook(name, "SuccessfullyCompleted", message.clone());
                return ("SuccessfullyCompleted", message);
            }
            tracing::warn!(execution = %name, attempt, reason = %outcome.message, "playbook failed");
            last = Some(outcome.message);
        }
        let reason = last.unwrap_or_default();
        let message = if attempts > 1 {
            format!("failed {attempts} times; last: {reason}")
        } else {
            reason
        };
        let message = Some(message);
        self.report_playbook(name, "CompletedWithError", message.clone());
        ("CompletedWithError", message)
    }

    /// Records a state for the next heartbeat, and sends one now.
    fn report_playbook(&self, name: &str, state: &'static str, message: Option<String>) {
        lock(&self.shared.playbooks).insert(name.to_owned(), PlaybookReport { state, message });
        self.shared.heartbeat_now.notify_one();
    }

    /// The reports for the next heartbeat.
    pub(super) fn playbook_reports(&self) -> Vec<PlaybookExecutionStatus> {
        lock(&self.shared.playbooks)
            .iter()
            .map(|(name, report)| PlaybookExecutionStatus {
                name: Some(name.clone()),
                status: Some(report.state.to_owned()),
                message: report.message.clone(),
                ..Default::default()
            })
            .collect()
    }

    /// A heartbeat carrying `sent` was delivered: final states reported are done.
    pub(super) fn playbook_reports_delivered(&self, sent: &[PlaybookExecutionStatus]) {
        let mut reports = lock(&self.shared.playbooks);
        for report in sent {
            let (Some(name), Some(state)) = (report.name.as_deref(), report.status.as_deref())
            else {
                continue;
            };
            let same = reports
                .get(name)
                .is_some_and(|r| r.state == state && r.message == report.message);
            if same && flotta_core::ansible::is_final(state) {
                reports.remove(name);
            }
        }
    }
}

/// A directory name for an execution's files.
fn sanitized(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
