//! The metrics loop: follows the [`MetricsPlan`] of the configuration in force,
//! collects the system, agent and workload metrics on their intervals into the
//! on-disk buffer, and pushes batches from the buffer to the remote-write receiver,
//! releasing them only once acknowledged. With no `metrics` section nothing runs:
//! the loop waits for a plan without timers and opens no file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotta_core::wire::DeviceConfigurationMessage;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::Agent;
use super::status::{AgentEvent, AgentStatus, MetricsStatus, lock};
use crate::metrics::scrape::Scraper;
use crate::metrics::{
    self, MetricsBuffer, MetricsError, MetricsPlan, Point, PushError, Receiver, ScrapeTarget,
};

/// The longest a system collection or a scrape may take.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(10);

type SharedBuffer = Arc<Mutex<MetricsBuffer>>;

/// A source collected on its own interval.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// System metrics (when on) and the agent's own.
    Device,
    /// A workload endpoint: index into the plan's targets.
    Target(usize),
}

impl Agent {
    /// Makes the metrics loop follow the configuration now in force.
    pub(super) fn follow_metrics(&self, message: &DeviceConfigurationMessage) {
        let plan = MetricsPlan::from_message(message).map(Arc::new);
        self.metrics_plan.send_if_modified(|current| {
            if current.as_deref() == plan.as_deref() {
                return false;
            }
            tracing::info!(on = plan.is_some(), "metrics plan changed");
            *current = plan;
            true
        });
    }

    /// Runs for as long as the agent runs; restarts collection and pushing with
    /// each new plan, keeping the buffer (and what it holds) across plans.
    pub(super) async fn metrics_loop(&self) {
        let mut plans = self.metrics_plan.subscribe();
        let mut buffer: Option<SharedBuffer> = None;
        loop {
            let plan = plans.borrow_and_update().clone();
            match plan {
                None => {
                    buffer = None;
                    self.shared.update(|s| s.metrics = None);
                }
                Some(plan) => {
                    tokio::select! {
                        () = self.run_metrics(&plan, &mut buffer) => {}
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

    /// Collects and pushes under `plan`; returns only when the buffer cannot be
    /// opened (reported), to wait for another plan.
    async fn run_metrics(&self, plan: &MetricsPlan, buffer: &mut Option<SharedBuffer>) {
        let now = ms(self.clock.now());
        let shared = match buffer {
            Some(shared) => {
                let limits = plan.limits;
                if let Err(error) = with_buffer(shared, move |b| b.set_limits(limits, now)).await {
                    tracing::warn!(%error, "could not apply the metrics retention");
                }
                shared.clone()
            }
            None => {
                let Some(dir) = self.metrics_dir.clone() else {
                    self.metrics_failure(
                        "MetricsUnavailable",
                        "metrics are configured but the agent has no state directory for their buffer"
                            .into(),
                    );
                    return;
                };
                let limits = plan.limits;
                let opened =
                    tokio::task::spawn_blocking(move || MetricsBuffer::open(dir, limits, now))
                        .await
                        .map_err(MetricsError::Task)
                        .and_then(|r| r);
                match opened {
                    Ok(opened) => buffer.insert(Arc::new(Mutex::new(opened))).clone(),
                    Err(error) => {
                        self.metrics_failure(
                            "MetricsBufferFailed",
                            format!(
                                "cannot open the metrics buffer: {}",
                                flotta_core::error_chain::error_chain(&error)
                            ),
                        );
                        return;
                    }
                }
            }
        };
        let (pending, dropped) = {
            let b = lock(&shared);
            (b.pending_samples(), b.dropped_total())
        };
        self.shared.update(|s| {
            let status = s.metrics.get_or_insert_with(MetricsStatus::default);
            status.buffered_samples = pending;
            status.dropped_samples = dropped;
            status.receiver = plan.receiver.as_ref().map(|r| r.url.clone());
        });
        let appended = Notify::new();
        tokio::join!(
            self.collect_loop(plan, &shared, &appended),
            self.push_loop(plan, &shared, &appended)
        );
    }

    /// Reports a metrics problem that stops collection until the plan changes.
    fn metrics_failure(&self, reason: &str, message: String) {
        tracing::error!(%message, "metrics");
        self.shared.report(reason, message.clone(), true);
        self.shared.update(|s| {
            s.metrics
                .get_or_insert_with(MetricsStatus::default)
                .last_error = Some(message);
        });
    }

    async fn collect_loop(&self, plan: &MetricsPlan, buffer: &SharedBuffer, appended: &Notify) {
        let scraper = match Scraper::new(COLLECT_TIMEOUT) {
            Ok(scraper) => Some(scraper),
            Err(reason) => {
                tracing::error!(%reason, "cannot scrape workloads");
                None
            }
        };
        let start = self.clock.now();
        let mut schedule: Vec<(OffsetDateTime, Source, Duration)> =
            vec![(start, Source::Device, plan.agent_interval)];
        schedule.extend(
            plan.targets
                .iter()
                .enumerate()
                .map(|(i, t)| (start, Source::Target(i), t.interval)),
        );
        loop {
            let now = self.clock.now();
            for (due, source, interval) in &mut schedule {
                if *due > now {
                    continue;
                }
                let request = match source {
                    Source::Device => Some(self.collect_device(plan, buffer).await),
                    Source::Target(i) => match (&scraper, plan.targets.get(*i)) {
                        (Some(scraper), Some(target)) => {
                            Some(self.collect_target(scraper, target, *interval).await)
                        }
                        _ => None,
                    },
                };
                if let Some(request) = request {
                    self.append(buffer, request, appended).await;
                }
                // The next one an interval later; collections missed (a suspended
                // device) are not made up.
                *due += *interval;
                if *due <= now {
                    *due = now + *interval;
                }
            }
            let next = schedule
                .iter()
                .map(|(due, ..)| *due)
                .min()
                .unwrap_or(now + plan.agent_interval);
            self.clock.sleep_until(next).await;
        }
    }

    /// The system metrics (when on) and the agent's own, labelled.
    async fn collect_device(
        &self,
        plan: &MetricsPlan,
        buffer: &SharedBuffer,
    ) -> metrics::remote_write::WriteRequest {
        let mut points = Vec::new();
        if let Some(system) = &plan.system {
            let collector = self.system_metrics.clone();
            let collected = tokio::time::timeout(
                COLLECT_TIMEOUT,
                tokio::task::spawn_blocking(move || collector.collect()),
            )
            .await;
            match collected {
                Ok(Ok(collected)) => points.extend(
                    collected
                        .into_iter()
                        .filter(|p| system.allow.allows(&p.name)),
                ),
                Ok(Err(error)) => tracing::warn!(%error, "system metrics task failed"),
                Err(_) => tracing::warn!("system metrics took longer than {COLLECT_TIMEOUT:?}"),
            }
        }
        let (pending, dropped) = {
            let b = lock(buffer);
            (b.pending_samples(), b.dropped_total())
        };
        let now = self.clock.now();
        let mut status = AgentStatus::default();
        self.shared.update(|s| {
            s.counters.metrics_collections += 1;
            status = s.clone();
        });
        points.extend(agent_points(&status, pending, dropped, now));
        metrics::series(
            points,
            &[
                (metrics::DEVICE_LABEL, &self.device_id),
                (metrics::NAMESPACE_LABEL, &self.namespace),
            ],
            ms(now),
        )
    }

    /// A workload endpoint's points with `up`, labelled.
    async fn collect_target(
        &self,
        scraper: &Scraper,
        target: &ScrapeTarget,
        interval: Duration,
    ) -> metrics::remote_write::WriteRequest {
        let at = self.clock.now();
        let scraped = tokio::time::timeout(interval.min(COLLECT_TIMEOUT), scraper.scrape(target))
            .await
            .unwrap_or_else(|_| Err(format!("{}: no answer within {interval:?}", target.url)));
        let mut points = match scraped {
            Ok(points) => {
                let mut points = points;
                points.push(Point::new("up", Vec::new(), 1.0));
                points
            }
            Err(reason) => {
                tracing::debug!(%reason, workload = %target.workload, "scrape failed");
                vec![Point::new("up", Vec::new(), 0.0)]
            }
        };
        points.retain(|p| p.name == "up" || target.allow.allows(&p.name));
        let mut labels = vec![
            (metrics::DEVICE_LABEL, self.device_id.as_str()),
            (metrics::NAMESPACE_LABEL, self.namespace.as_str()),
            (metrics::WORKLOAD_LABEL, target.workload.as_str()),
        ];
        if let Some(container) = &target.container {
            labels.push((metrics::CONTAINER_LABEL, container.as_str()));
        }
        metrics::series(points, &labels, ms(at))
    }

    async fn append(
        &self,
        buffer: &SharedBuffer,
        request: metrics::remote_write::WriteRequest,
        appended: &Notify,
    ) {
        let now = ms(self.clock.now());
        let result = with_buffer(buffer, move |b| {
            let dropped = b.append(&request, now)?;
            Ok((dropped, b.pending_samples(), b.dropped_total()))
        })
        .await;
        match result {
            Ok((dropped, pending, dropped_total)) => {
                self.shared.update(|s| {
                    let status = s.metrics.get_or_insert_with(MetricsStatus::default);
                    status.buffered_samples = pending;
                    status.dropped_samples = dropped_total;
                    if status.buffer_error.take().is_some() {
                        tracing::info!("metrics buffer writable again");
                    }
                });
                if dropped > 0 {
                    self.shared.report(
                        "MetricsSamplesDropped",
                        format!(
                            "metrics buffer full or expired: {dropped} unsent samples dropped, oldest first ({dropped_total} in all)"
                        ),
                        true,
                    );
                    self.shared
                        .emit(AgentEvent::MetricsDropped { samples: dropped });
                }
                appended.notify_one();
            }
            Err(error) => {
                let reason = flotta_core::error_chain::error_chain(&error);
                tracing::warn!(%reason, "could not buffer metrics");
                let mut first = false;
                self.shared.update(|s| {
                    let status = s.metrics.get_or_insert_with(MetricsStatus::default);
                    first = status.buffer_error.is_none();
                    status.buffer_error = Some(reason.clone());
                });
                if first {
                    self.shared.report(
                        "MetricsBufferFailed",
                        format!("could not buffer metrics: {reason}"),
                        true,
                    );
                }
            }
        }
    }

    async fn push_loop(&self, plan: &MetricsPlan, buffer: &SharedBuffer, appended: &Notify) {
        let Some(receiver_plan) = &plan.receiver else {
            // Samples wait in the buffer (within its bounds) for a receiver.
            return std::future::pending().await;
        };
        let receiver = match Receiver::new(receiver_plan) {
            Ok(receiver) => receiver,
            Err(error) => {
                self.metrics_failure("MetricsReceiverInvalid", error.to_string());
                return std::future::pending().await;
            }
        };
        let batch_size = receiver_plan.batch;
        let mut failures = 0u32;
        loop {
            let now = ms(self.clock.now());
            let batch = match with_buffer(buffer, move |b| b.peek(batch_size, now)).await {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    appended.notified().await;
                    continue;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, "could not read the metrics buffer");
                    self.clock.sleep(self.retry_delay(failures)).await;
                    continue;
                }
            };
            let outcome = if batch.samples == 0 {
                // Only samples past the age bound: release them.
                Ok(())
            } else {
                receiver.push(&batch.request).await
            };
            match outcome {
                Ok(()) => {
                    self.release(buffer, batch.clone()).await;
                    if failures > 0 {
                        self.shared.report(
                            "MetricsReceiverReachable",
                            format!("{} accepts samples again", receiver.url()),
                            false,
                        );
                    }
                    failures = 0;
                    let at = self.clock.now();
                    self.shared.update(|s| {
                        s.counters.metrics_pushed_samples += batch.samples;
                        let status = s.metrics.get_or_insert_with(MetricsStatus::default);
                        status.consecutive_push_failures = 0;
                        status.last_error = None;
                        status.last_push = Some(at);
                    });
                    self.shared.emit(AgentEvent::MetricsPushed {
                        samples: batch.samples,
                    });
                }
                Err(error) if error.is_retryable() => {
                    failures = failures.saturating_add(1);
                    let reason = flotta_core::error_chain::error_chain(&error);
                    tracing::warn!(%reason, failures, "metrics push failed");
                    if failures == 1 {
                        self.shared.report(
                            "MetricsReceiverUnreachable",
                            format!("samples are buffered and retried: {reason}"),
                            true,
                        );
                    }
                    self.shared.update(|s| {
                        let status = s.metrics.get_or_insert_with(MetricsStatus::default);
                        status.consecutive_push_failures = failures;
                        status.last_error = Some(reason.clone());
                    });
                    self.shared.emit(AgentEvent::MetricsPushFailed {
                        reason,
                        consecutive_failures: failures,
                    });
                    self.clock.sleep(self.retry_delay(failures)).await;
                }
                Err(error) => {
                    let status_code = match &error {
                        PushError::Status { status, .. } => *status,
                        _ => 0,
                    };
                    let reason = error.to_string();
                    tracing::warn!(%reason, samples = batch.samples, "metrics batch refused; dropped");
                    self.release(buffer, batch.clone()).await;
                    self.shared.report(
                        "MetricsBatchRejected",
                        format!("{} samples dropped: {reason}", batch.samples),
                        true,
                    );
                    self.shared.update(|s| {
                        s.counters.metrics_rejected_samples += batch.samples;
                        let status = s.metrics.get_or_insert_with(MetricsStatus::default);
                        status.last_error = Some(reason.clone());
                    });
                    self.shared.emit(AgentEvent::MetricsRejected {
                        status: status_code,
                        samples: batch.samples,
                        reason,
                    });
                    failures = 0;
                }
            }
        }
    }

    /// Acknowledges `batch` in the buffer.
    async fn release(&self, buffer: &SharedBuffer, batch: metrics::Batch) {
        let result = with_buffer(buffer, move |b| {
            b.acknowledge(&batch)?;
            Ok((b.pending_samples(), b.dropped_total()))
        })
        .await;
        match result {
            Ok((pending, dropped)) => self.shared.update(|s| {
                let status = s.metrics.get_or_insert_with(MetricsStatus::default);
                status.buffered_samples = pending;
                status.dropped_samples = dropped;
            }),
            // Not released: those samples are sent again (the receiver ignores a
            // sample it has).
            Err(error) => tracing::warn!(%error, "could not release pushed samples"),
        }
    }
}

/// Runs `op` on the buffer off the async threads.
async fn with_buffer<T: Send + 'static>(
    buffer: &SharedBuffer,
    op: impl FnOnce(&mut MetricsBuffer) -> Result<T, MetricsError> + Send + 'static,
) -> Result<T, MetricsError> {
    let buffer = buffer.clone();
    tokio::task::spawn_blocking(move || op(&mut lock(&buffer)))
        .await
        .map_err(MetricsError::Task)?
}

fn ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The agent's own metrics (`flotta_agent_*`) from its status.
fn agent_points(
    status: &AgentStatus,
    pending: u64,
    dropped: u64,
    now: OffsetDateTime,
) -> Vec<Point> {
    let c = &status.counters;
    let mut points = vec![
        Point::new(
            "flotta_agent_heartbeats_sent_total",
            Vec::new(),
            c.heartbeats_sent as f64,
        ),
        Point::new(
            "flotta_agent_heartbeats_failed_total",
            Vec::new(),
            c.heartbeats_failed as f64,
        ),
        Point::new(
            "flotta_agent_applies_succeeded_total",
            Vec::new(),
            c.applies_succeeded as f64,
        ),
        Point::new(
            "flotta_agent_applies_failed_total",
            Vec::new(),
            c.applies_failed as f64,
        ),
        Point::new(
            "flotta_agent_metrics_collections_total",
            Vec::new(),
            c.metrics_collections as f64,
        ),
        Point::new(
            "flotta_agent_metrics_pushed_samples_total",
            Vec::new(),
            c.metrics_pushed_samples as f64,
        ),
        Point::new(
            "flotta_agent_metrics_rejected_samples_total",
            Vec::new(),
            c.metrics_rejected_samples as f64,
        ),
        Point::new(
            "flotta_agent_metrics_dropped_samples_total",
            Vec::new(),
            dropped as f64,
        ),
        Point::new(
            "flotta_agent_metrics_buffered_samples",
            Vec::new(),
            pending as f64,
        ),
    ];
    if let Some(version) = &status.config_version {
        points.push(Point::new(
            "flotta_agent_config_version_info",
            vec![("version".to_owned(), version.clone())],
            1.0,
        ));
    }
    if let Some(expires) = status.certificate_expires {
        points.push(Point::new(
            "flotta_agent_certificate_expiry_seconds",
            Vec::new(),
            (expires - now).as_seconds_f64(),
        ));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_points_follow_the_status() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let mut status = AgentStatus::default();
        status.counters.heartbeats_sent = 7;
        status.counters.applies_failed = 1;
        status.config_version = Some("abc".into());
        status.certificate_expires = Some(now + time::Duration::hours(1));
        let points = agent_points(&status, 12, 3, now);
        let value = |name: &str| {
            points
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .value
        };
        assert_eq!(value("flotta_agent_heartbeats_sent_total"), 7.0);
        assert_eq!(value("flotta_agent_applies_failed_total"), 1.0);
        assert_eq!(value("flotta_agent_metrics_buffered_samples"), 12.0);
        assert_eq!(value("flotta_agent_metrics_dropped_samples_total"), 3.0);
        assert_eq!(value("flotta_agent_certificate_expiry_seconds"), 3600.0);
        let version = points
            .iter()
            .find(|p| p.name == "flotta_agent_config_version_info")
            .expect("version");
        assert_eq!(
            version.labels,
            vec![("version".to_owned(), "abc".to_owned())]
        );
        assert!(points.iter().all(|p| p.name.starts_with("flotta_agent_")));
    }
}
