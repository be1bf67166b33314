//! The logs loop: follows the [`LogsPlan`] of the configuration in force and, for
//! each forwarded workload, sends each container's new log lines to its syslog
//! server, committing a file's cursor only once its lines were sent. With no
//! `logCollection` in use nothing runs: the loop waits for a plan without timers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotta_core::wire::DeviceConfigurationMessage;

use super::Agent;
use crate::logs::syslog::{self, Origin};
use crate::logs::{LogForward, LogsPlan, SyslogSender, Tail, cri_message};
use crate::runtime::LogFormat;

/// Time between two reads of the log files.
const POLL: Duration = Duration::from_millis(500);
/// Lines read and sent per container per poll: [`MAX_LINES_PER_SECOND`] over the
/// poll period.
///
/// [`MAX_LINES_PER_SECOND`]: crate::logs::plan::MAX_LINES_PER_SECOND
const LINES_PER_POLL: usize = crate::logs::plan::MAX_LINES_PER_SECOND as usize / 2;
/// The longest wait before a failed send is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One container's log file and where its lines go.
struct Follower {
    tail: Tail,
    sender: SyslogSender,
    origin: Origin,
}

impl Agent {
    /// The reasons the log forwarding `message` asks cannot be carried out here:
    /// the configuration's own problems, a runtime that cannot give workload logs,
    /// no directory for the cursors.
    pub(super) fn unforwardable_logs(&self, message: &DeviceConfigurationMessage) -> Vec<String> {
        let plan = match LogsPlan::from_message(message) {
            Ok(plan) => plan,
            Err(problems) => return problems,
        };
        if plan.is_empty() {
            return Vec::new();
        }
        let workloads: Vec<&str> = plan.forwards.iter().map(|f| f.workload.as_str()).collect();
        let mut refused = Vec::new();
        if !self.runtime.collects_logs() {
            refused.push(format!(
                "logCollection of workloads {}: this agent's workload runtime cannot give their logs",
                workloads.join(", ")
            ));
        }
        if self.logs_dir.is_none() {
            refused.push(format!(
                "logCollection of workloads {}: the agent has no state directory to keep its place in the logs",
                workloads.join(", ")
            ));
        }
        refused
    }

    /// Makes the logs loop follow the configuration now in force (a configuration
    /// it cannot carry out was refused before it was applied).
    pub(super) fn follow_logs(&self, message: &DeviceConfigurationMessage) {
        let plan = LogsPlan::from_message(message)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Arc::new);
        self.logs_plan.send_if_modified(|current| {
            if current.as_deref() == plan.as_deref() {
                return false;
            }
            tracing::info!(
                workloads = plan.as_ref().map_or(0, |p| p.forwards.len()),
                "log forwarding plan changed"
            );
            *current = plan;
            true
        });
    }

    /// Runs for as long as the agent runs; restarts forwarding with each new plan
    /// (cursors are on disk, so nothing sent is sent again and nothing is skipped).
    pub(super) async fn logs_loop(&self) {
        let mut plans = self.logs_plan.subscribe();
        loop {
            let plan = plans.borrow_and_update().clone();
            match plan {
                None => self.shared.update(|s| s.logs = None),
                Some(plan) => {
                    self.shared
                        .update(|s| s.logs = Some(s.logs.take().unwrap_or_default()));
                    let forwarding = futures::future::join_all(
                        plan.forwards.iter().map(|f| self.forward_logs(f)),
                    );
                    tokio::select! {
                        _ = forwarding => {}
                        changed = plans.changed() => {
                            if changed.is_ok() {
                                continue;
                            }
                        }
                    }
                }
            }
            if plans.changed().await.is_err() {
                // The agent holds the sender for its whole life: not reached.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Forwards one workload's logs until the plan changes.
    async fn forward_logs(&self, forward: &LogForward) {
        let Some(dir) = self.logs_dir.clone() else {
            return;
        };
        let mut followers: BTreeMap<String, Follower> = BTreeMap::new();
        let mut failures: u32 = 0;
        loop {
            for (container, path) in self.runtime.log_files(&forward.workload) {
                let same_file = followers
                    .get(&container)
                    .is_some_and(|f| f.tail.path() == path);
                if !same_file {
                    let cursor = cursor_file(&dir, &forward.workload, &container);
                    let mut sender =
                        SyslogSender::new(forward.target.address.clone(), forward.target.transport);
                    if let Some(ca) = &forward.target.ca_pem {
                        // Checked when the plan was made: the version was refused
                        // otherwise.
                        match sender.with_ca(ca) {
                            Ok(with_ca) => sender = with_ca,
                            Err(reason) => {
                                tracing::error!(%reason, "syslog CA");
                                return;
                            }
                        }
                    }
                    followers.insert(
                        container.clone(),
                        Follower {
                            tail: Tail::open(path, cursor),
                            sender,
                            origin: Origin {
                                device: self.device_id.clone(),
                                namespace: self.namespace.clone(),
                                workload: forward.workload.clone(),
                                container,
                            },
                        },
                    );
                }
            }
            let mut failed = None;
            for follower in followers.values_mut() {
                if let Err(reason) = self.forward_some(follower, forward).await {
                    failed = Some(reason);
                    break;
                }
            }
            let wait = match failed {
                None => {
                    if failures > 0 {
                        self.shared.report(
                            "LogForwardingResumed",
                            format!(
                                "workload {}: logs reach {} again",
                                forward.workload, forward.target.address
                            ),
                            false,
                        );
                        self.shared.update(|s| {
                            if let Some(logs) = s.logs.as_mut() {
                                logs.last_error = None;
                            }
                        });
                    }
                    failures = 0;
                    POLL
                }
                Some(reason) => {
                    if failures == 0 {
                        tracing::warn!(workload = %forward.workload, %reason, "log forwarding failed");
                        self.shared.report(
                            "LogForwardingFailed",
                            format!(
                                "workload {}: {reason}; lines wait in its log files and are sent when {} answers",
                                forward.workload, forward.target.address
                            ),
                            true,
                        );
                    }
                    self.shared.update(|s| {
                        if let Some(logs) = s.logs.as_mut() {
                            logs.last_error = Some(reason.clone());
                        }
                    });
                    failures = failures.saturating_add(1);
                    backoff(failures)
                }
            };
            self.clock.sleep(wait).await;
        }
    }

    /// Reads a batch of one container's lines and sends it; the cursor moves only
    /// when the batch was sent.
    async fn forward_some(
        &self,
        follower: &mut Follower,
        forward: &LogForward,
    ) -> Result<(), String> {
        let buffer = forward.target.buffer_bytes;
        let lines = follower
            .tail
            .read(LINES_PER_POLL, buffer)
            .map_err(|e| format!("cannot read {}: {e}", follower.tail.path().display()))?;
        if lines.skipped_bytes > 0 {
            self.shared.report(
                "LogLinesDropped",
                format!(
                    "workload {} container {}: {} bytes of log skipped unsent, beyond the {} MiB buffer of logCollection {}",
                    forward.workload,
                    follower.origin.container,
                    lines.skipped_bytes,
                    buffer / (1024 * 1024),
                    forward.target.name
                ),
                true,
            );
            self.shared.update(|s| {
                if let Some(logs) = s.logs.as_mut() {
                    logs.skipped_bytes += lines.skipped_bytes;
                }
            });
        }
        if !lines.lines.is_empty() {
            let now = self.clock.now();
            let format = self.runtime.log_format();
            let messages: Vec<Vec<u8>> = lines
                .lines
                .iter()
                .map(|line| {
                    let text = match format {
                        LogFormat::Cri => cri_message(line),
                        LogFormat::Plain => line.as_slice(),
                    };
                    syslog::message(&follower.origin, now, text)
                })
                .collect();
            follower
                .sender
                .send(&messages)
                .await
                .map_err(|e| format!("cannot send to {}: {e}", forward.target.address))?;
            let sent = messages.len() as u64;
            self.shared.update(|s| {
                if let Some(logs) = s.logs.as_mut() {
                    logs.forwarded_lines += sent;
                }
            });
        }
        follower
            .tail
            .commit(lines.next)
            .map_err(|e| format!("cannot record the log cursor: {e}"))
    }
}

/// Where the cursor of `container` of `workload` is kept.
fn cursor_file(dir: &std::path::Path, workload: &str, container: &str) -> PathBuf {
    dir.join(workload).join(format!("{container}.cursor.json"))
}

/// 1 s, 2 s, 4 s … up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}
