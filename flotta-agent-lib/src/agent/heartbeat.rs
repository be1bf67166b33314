//! The heartbeat loop: look at the device's report every period (jittered) and send
//! it when it changed (queued events included) or when the configuration's longest
//! silence (`max_silence_seconds`) passed; every period when no silence is named,
//! and while the configuration poll fails (the long-poll shows nothing then).
//! Between heartbeats the pending configuration long-poll keeps the device's
//! last-seen time current on the server. Back off while the server is unreachable,
//! deliver the queue after.
//! Each workload is reported with the revision the agent applied (the fingerprint of
//! its definition), so the server can tell an old pod spec from the current one.

use std::sync::atomic::Ordering;
use std::time::Duration;

use flotta_core::reconcile::WorkloadPhase;
use flotta_core::wire::{EventInfo, Heartbeat, UpgradeStatus, WorkloadStatus};

use super::Agent;
use super::status::{AgentEvent, HeartbeatResult, lock};

impl Agent {
    async fn heartbeat_content(&self, events: Vec<EventInfo>) -> Heartbeat {
        let (workloads, degraded) = match self.runtime.list().await {
            Ok(list) => {
                let degraded = list.iter().any(|w| w.phase == WorkloadPhase::Failed);
                // The revision is the fingerprint of the definition the agent applied
                // (empty while an apply is under way: no revision then).
                let applied = lock(&self.applied).0.clone();
                let uploads = lock(&self.last_data_upload).clone();
                let statuses = list
                    .into_iter()
                    .map(|w| WorkloadStatus {
                        revision: applied.get(&w.name).filter(|r| !r.is_empty()).cloned(),
                        last_data_upload: uploads
                            .get(&w.name)
                            .map(|at| flotta_core::timestamp::rfc3339(*at)),
                        name: Some(w.name),
                        status: Some(w.phase.as_str().to_owned()),
                        ..Default::default()
                    })
                    .collect();
                (Some(statuses), degraded)
            }
            Err(error) => {
                tracing::warn!(%error, "could not list workloads for the heartbeat");
                (None, true)
            }
        };
        let status = lock(&self.shared.status).clone();
        let last_upgrade = lock(&self.shared.last_upgrade).clone();
        let current_commit = self.os_updater.current_commit().await.ok().flatten();
        let os_update = status.os_update.clone();
        let upgrade = (current_commit.is_some() || last_upgrade.is_some() || os_update.is_some())
            .then(|| {
                let (succeeded, at) = last_upgrade.map_or((None, None), |(ok, at)| {
                    (Some(if ok { "succeeded" } else { "failed" }), Some(at))
                });
                UpgradeStatus {
                    current_commit_id: current_commit,
                    last_upgrade_status: succeeded.map(str::to_owned),
                    last_upgrade_time: at,
                    phase: os_update.as_ref().map(|u| u.phase.as_str().to_owned()),
                    target: os_update.as_ref().map(|u| u.target.clone()),
                    message: os_update.and_then(|u| u.message),
                    ..Default::default()
                }
            });
        let include_hardware = *lock(&self.shared.heartbeat_hardware);
        let hardware = if include_hardware {
            Some(self.hardware.probe().await)
        } else {
            None
        };
        Heartbeat {
            hardware,
            status: Some(
                if degraded
                    || status.failed_version.is_some()
                    || status.prefetch_error.is_some()
                    || os_failed(&status)
                {
                    "degraded"
                } else {
                    "up"
                }
                .to_owned(),
            ),
            version: status.config_version,
            workloads,
            upgrade,
            events: Some(events).filter(|e| !e.is_empty()),
            playbook_executions: Some(self.playbook_reports()).filter(|p| !p.is_empty()),
            ..Default::default()
        }
    }

    pub(super) async fn heartbeat_loop(&self) {
        let mut failures = 0u32;
        // The last report delivered (without its events) and when.
        let mut delivered: Option<(Heartbeat, time::OffsetDateTime)> = None;
        loop {
            let batch = lock(&self.shared.pending).take();
            let content = self.heartbeat_content(batch.wire_events()).await;
            let now = self.clock.now();
            let silence = *lock(&self.shared.max_silence);
            let unseen = self.shared.poll_failing.load(Ordering::SeqCst);
            let forced = self.shared.report_now.swap(false, Ordering::SeqCst);
            if failures == 0
                && !unseen
                && !forced
                && !heartbeat_due(&content, delivered.as_ref(), silence, now)
            {
                lock(&self.shared.pending).restore(batch);
                let delay = jittered(*lock(&self.shared.heartbeat_period), super::random());
                tokio::select! {
                    () = self.clock.sleep(delay) => {}
                    () = self.shared.heartbeat_now.notified() => {}
                }
                continue;
            }
            match self.client.heartbeat(&self.device_id, &content).await {
                Ok(()) => {
                    delivered = Some((
                        Heartbeat {
                            events: None,
                            ..content.clone()
                        },
                        now,
                    ));
                    if let Some(sent) = &content.playbook_executions {
                        self.playbook_reports_delivered(sent);
                    }
                    let after_outage = failures > 0;
                    failures = 0;
                    {
                        let mut pending = lock(&self.shared.pending);
                        pending.delivered();
                        self.shared.count_queue(&pending);
                    }
                    self.shared.queue_changed.notify_one();
                    self.shared.update(|s| {
                        s.last_heartbeat = Some(HeartbeatResult::Delivered { at: now });
                        s.counters.heartbeats_sent += 1;
                    });
                    self.shared.emit(AgentEvent::HeartbeatDelivered);
                    if after_outage || batch.dropped > 0 {
                        tracing::info!(
                            events = batch.events.len(),
                            dropped = batch.dropped,
                            "delivered what was queued while the server was unreachable"
                        );
                        self.shared.emit(AgentEvent::QueueDelivered {
                            events: batch.events.len(),
                            dropped: batch.dropped,
                        });
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    self.shared.refused(error.status());
                    {
                        let mut pending = lock(&self.shared.pending);
                        pending.restore(batch);
                        self.shared.count_queue(&pending);
                    }
                    self.shared.queue_changed.notify_one();
                    let reason = error.to_string();
                    tracing::warn!(%reason, failures, "heartbeat failed");
                    self.shared.update(|s| {
                        s.last_heartbeat = Some(HeartbeatResult::Failed {
                            at: now,
                            reason: reason.clone(),
                            consecutive_failures: failures,
                        });
                        s.counters.heartbeats_failed += 1;
                    });
                    self.shared.emit(AgentEvent::HeartbeatFailed { reason });
                }
            }
            let delay = if failures == 0 {
                jittered(*lock(&self.shared.heartbeat_period), super::random())
            } else {
                self.retry_delay(failures)
            };
            tokio::select! {
                () = self.clock.sleep(delay) => {}
                () = self.shared.heartbeat_now.notified(), if failures == 0 => {}
            }
        }
    }
}

/// Whether a heartbeat with `content` is to be sent, given the last one delivered
/// (without its events) and the longest silence the configuration allows: always
/// when nothing was delivered yet or no silence is named, else when the report
/// changed (queued events make it change) or the silence has passed.
fn heartbeat_due(
    content: &Heartbeat,
    delivered: Option<&(Heartbeat, time::OffsetDateTime)>,
    max_silence: Option<Duration>,
    now: time::OffsetDateTime,
) -> bool {
    let (Some((last, at)), Some(max_silence)) = (delivered, max_silence) else {
        return true;
    };
    last != content || Duration::try_from(now - *at).unwrap_or_default() >= max_silence
}

/// `period` spread by ±10 % according to `random` (uniform over `u32`), so devices
/// started together do not stay in step.
pub(super) fn jittered(period: Duration, random: u32) -> Duration {
    let fraction = f64::from(random) / f64::from(u32::MAX);
    period.mul_f64(0.9 + 0.2 * fraction)
}

/// Whether the last OS update failed (rolled back or kept broken): the device does
/// not run its desired OS, and says so until a new target is committed.
fn os_failed(status: &super::AgentStatus) -> bool {
    status.os_update.as_ref().is_some_and(|u| {
        matches!(
            u.phase,
            crate::os::OsUpdatePhase::RolledBack | crate::os::OsUpdatePhase::Failed
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_due_on_change_or_after_the_longest_silence() {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let report = Heartbeat {
            status: Some("up".into()),
            version: Some("v1".into()),
            ..Default::default()
        };
        let silence = Some(Duration::from_secs(900));
        let last = (report.clone(), at);
        let later = |s: i64| at + time::Duration::seconds(s);
        assert!(heartbeat_due(&report, None, silence, at), "first");
        assert!(!heartbeat_due(&report, Some(&last), silence, later(899)));
        assert!(heartbeat_due(&report, Some(&last), silence, later(900)));
        assert!(
            heartbeat_due(&report, Some(&last), None, later(1)),
            "no silence named"
        );
        let changed = Heartbeat {
            version: Some("v2".into()),
            ..report.clone()
        };
        assert!(heartbeat_due(&changed, Some(&last), silence, later(1)));
        let with_events = Heartbeat {
            events: Some(vec![EventInfo::default()]),
            ..report.clone()
        };
        assert!(heartbeat_due(&with_events, Some(&last), silence, later(1)));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let period = Duration::from_secs(100);
        assert_eq!(jittered(period, 0), Duration::from_secs(90));
        assert_eq!(jittered(period, u32::MAX), Duration::from_secs(110));
        let mid = jittered(period, u32::MAX / 2);
        assert!(mid > Duration::from_secs(99) && mid < Duration::from_secs(101));
    }
}
