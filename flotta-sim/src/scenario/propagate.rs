//! `propagate`: how long a workload change takes to reach the whole fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotta_agent_lib::AgentEvent;
use flotta_client::{ConfigPoll, ManagementClient};
use serde_json::{Value, json};

use crate::fleet::backoff;
use crate::report::Report;
use crate::stats::{Latencies, per_second};
use crate::{Model, SimError};

use super::{NAMESPACE, Run, WORKLOAD_NAME, WORKLOADS, abort_all, settle};

/// Shared progress of a roll-out round.
#[derive(Default)]
pub(super) struct Rollout {
    pub(super) round: AtomicU32,
    /// When the current round's change was sent, nanoseconds after `base`.
    pub(super) started_nanos: AtomicU64,
    pub(super) done: AtomicUsize,
}

impl Rollout {
    fn marker(round: u32) -> String {
        format!("registry.invalid/sim/app:r{round}")
    }

    /// Whether `text` shows the current round's change; records its latency and
    /// returns it.
    pub(super) fn observe(
        &self,
        text: &str,
        seen_round: &mut u32,
        base: Instant,
        latencies: &Latencies,
    ) -> Option<Duration> {
        let round = self.round.load(Ordering::Acquire);
        if round > *seen_round && text.contains(&Self::marker(round)) {
            *seen_round = round;
            let started = Duration::from_nanos(self.started_nanos.load(Ordering::Acquire));
            let latency = base.elapsed().saturating_sub(started);
            latencies.record(latency);
            self.done.fetch_add(1, Ordering::Relaxed);
            return Some(latency);
        }
        None
    }

    /// Makes change `round` through `management`, timed from now: creates the
    /// workload (`create`) or patches its spec.
    pub(super) async fn change(
        &self,
        management: &ManagementClient,
        round: u32,
        create: bool,
        base: Instant,
    ) -> Result<(), SimError> {
        self.done.store(0, Ordering::Relaxed);
        let started = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.started_nanos.store(started, Ordering::Release);
        self.round.store(round, Ordering::Release);
        let changed = if create {
            management
                .create_raw(WORKLOADS, NAMESPACE, &workload(round))
                .await
        } else {
            management
                .patch_raw(
                    WORKLOADS,
                    NAMESPACE,
                    WORKLOAD_NAME,
                    &json!({"spec": workload(round)["spec"].clone()}),
                )
                .await
        };
        changed
            .map(drop)
            .map_err(|e| SimError::Setup(format!("changing the workload: {e}")))
    }
}

pub(super) fn workload(round: u32) -> Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": WORKLOAD_NAME, "namespace": NAMESPACE},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {}},
            "pod": {"spec": {"containers": [{"name": "app", "image": Rollout::marker(round)}]}}},
    })
}

/// `propagate`: every device long-polls; one workload change is made three times
/// over the management API; an operation is one device seeing (light model) or
/// running (agent model) the change, timed from the API call.
pub async fn propagate(run: &Run) -> Result<Report, SimError> {
    let admin = run.admin_config.as_ref().ok_or_else(|| {
        SimError::Setup(
            "propagate needs the management API (--admin-config or a spawned server)".into(),
        )
    })?;
    let management = ManagementClient::from_config_file(admin)
        .map_err(|e| SimError::Setup(format!("management client from {}: {e}", admin.display())))?;
    // A workload left over from an earlier run against the same server.
    let _ = management
        .delete_raw(WORKLOADS, NAMESPACE, WORKLOAD_NAME)
        .await;
    let idle_rss_mib = run
        .server
        .as_ref()
        .map_or(0.0, |server| server.rss_kib() as f64 / 1024.0);
    let agent_model = run.settings.model == Model::Agent;
    let rollout = Arc::new(Rollout::default());
    let latencies = Arc::new(Latencies::new());
    let ready = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    let wait = run.settings.wait;
    let mut tasks = Vec::new();
    let mut agents = Vec::new();
    if agent_model {
        let enrolment = run.enrol_fleet(true).await?;
        for agent in enrolment.agents {
            let mut events = agent.handle.subscribe();
            let runtime = agent.runtime.clone();
            let rollout = rollout.clone();
            let latencies = latencies.clone();
            let ready = ready.clone();
            let already = agent.handle.status().config_version.is_some();
            tasks.push(tokio::spawn(async move {
                let mut seen_round = 0;
                let mut counted = already;
                if already {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                loop {
                    match events.recv().await {
                        Ok(AgentEvent::ConfigApplied { .. }) => {
                            if !counted {
                                counted = true;
                                ready.fetch_add(1, Ordering::Relaxed);
                            }
                            let running = runtime
                                .names()
                                .iter()
                                .filter_map(|name| runtime.workload(name))
                                .filter_map(|w| serde_json::to_string(&w).ok())
                                .collect::<String>();
                            let _ = rollout.observe(&running, &mut seen_round, base, &latencies);
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
            agents.push(agent);
        }
    } else {
        for device in run.light_fleet().await? {
            let rollout = rollout.clone();
            let latencies = latencies.clone();
            let ready = ready.clone();
            let errors = errors.clone();
            tasks.push(tokio::spawn(async move {
                let mut version: Option<String> = None;
                let mut seen_round = 0;
                let mut failures = 0;
                loop {
                    let poll = device
                        .client
                        .get_config(&device.device_id, version.as_deref(), Some(wait))
                        .await;
                    match poll {
                        Ok(ConfigPoll::Config { etag, message }) => {
                            failures = 0;
                            if version.is_none() {
                                ready.fetch_add(1, Ordering::Relaxed);
                            }
                            version = Some(etag);
                            let text = serde_json::to_string(&message).unwrap_or_default();
                            let _ = rollout.observe(&text, &mut seen_round, base, &latencies);
                        }
                        Ok(_) => failures = 0,
                        Err(_) => {
                            failures += 1;
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(backoff(failures)).await;
                        }
                    }
                }
            }));
        }
    }
    let devices = run.settings.devices;
    run.settle_fleet(
        &ready,
        devices,
        ("first config", "got their first configuration"),
        &mut tasks,
    )
    .await?;
    // Every device is now back in its long-poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    errors.store(0, Ordering::Relaxed);
    let window = run.open_window();
    let rounds = 3u32;
    let mut missing = 0u64;
    for round in 1..=rounds {
        rollout.change(&management, round, round == 1, base).await?;
        let bar = run.bar(devices as u64, &format!("round {round}"));
        let reached = settle(&rollout.done, devices, Duration::from_secs(60), &bar).await;
        missing += (devices - reached.min(devices)) as u64;
        // Let the devices re-enter their long-polls before the next change.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (elapsed, server) = run.close_window(&window);
    abort_all(tasks);
    for agent in agents {
        agent.stop().await;
    }
    let _ = management
        .delete_raw(WORKLOADS, NAMESPACE, WORKLOAD_NAME)
        .await;
    let summary = latencies.summary();
    let mut report = run.report(
        "propagate",
        if agent_model { "agent" } else { "light" },
        "propagation",
    );
    report.window_s = elapsed.as_secs_f64();
    report.operations = summary.count;
    report.throughput_per_s = per_second(summary.count, elapsed);
    report.latency = summary;
    report.errors = missing + errors.load(Ordering::Relaxed);
    report.server = server;
    report.extra.insert("rounds".into(), json!(rounds));
    report
        .extra
        .insert("server_rss_before_fleet_mib".into(), json!(idle_rss_mib));
    report
        .extra
        .insert("long_poll_wait_s".into(), json!(wait.as_secs()));
    Ok(report)
}
