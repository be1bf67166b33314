//! The scenarios: each sets up its fleet, measures a window and returns a report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotta_agent_lib::AgentEvent;
use flotta_client::{ConfigPoll, ManagementClient, ResourceType};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::fleet::{
    self, Counters, EnrolSettings, EnrolledDevice, Enrolment, FleetTarget, LightDevice, backoff,
    heartbeat_content, light_devices, random_offset,
};
use crate::report::{Report, ServerUsage, Wire};
use crate::server::{MemoryCurve, ServerProcess};
use crate::stats::{Latencies, per_device_hour, per_second};
use crate::wire::CountingRelay;
use crate::{Model, SimError};

/// Name of the workload the propagation scenario rolls out.
const WORKLOAD_NAME: &str = "sim-app";
/// The workload collection of the management API.
const WORKLOADS: ResourceType = ResourceType {
    kind: "EdgeWorkload",
    plural: "edgeworkloads",
};
/// Namespace the simulated devices join.
const NAMESPACE: &str = "default";
/// How long a whole fleet may take to reach a state before the scenario gives up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything a scenario needs: the fleet's target, the server (when spawned) and
/// the settings.
pub struct Run {
    /// Where devices connect.
    pub target: FleetTarget,
    /// The spawned server, when there is one.
    pub server: Option<ServerProcess>,
    /// The server's pid, for the memory sampler (0 without a spawned server).
    pub server_pid: Arc<AtomicU32>,
    /// The management client configuration (`admin.yaml`), for propagation.
    pub admin_config: Option<std::path::PathBuf>,
    /// Store name for the report.
    pub backend: String,
    /// Settings.
    pub settings: Settings,
    /// Identities to use instead of enrolling (the bare baseline).
    pub preset_devices: Option<Vec<EnrolledDevice>>,
}

/// Scenario settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Devices.
    pub devices: usize,
    /// Real agents or light devices where a scenario can do both.
    pub model: Model,
    /// Length of the measured window.
    pub duration: Duration,
    /// Heartbeat period; zero means back to back.
    pub period: Duration,
    /// Long-poll wait.
    pub wait: Duration,
    /// Idle devices wait in a configuration long-poll between heartbeats.
    pub long_poll: bool,
    /// Enrolments in flight at most.
    pub concurrency: usize,
    /// Draw a progress bar.
    pub progress: bool,
    /// Memory sampling interval of the server.
    pub sample_every: Duration,
}

struct Window {
    started: Instant,
    cpu: f64,
    rss_kib: u64,
}

impl Run {
    fn bar(&self, length: u64, message: &str) -> ProgressBar {
        if !self.settings.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(length);
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(message.to_owned());
        bar
    }

    fn open_window(&self) -> Window {
        Window {
            started: Instant::now(),
            cpu: self.server.as_ref().map_or(0.0, ServerProcess::cpu_seconds),
            rss_kib: self.server.as_ref().map_or(0, ServerProcess::rss_kib),
        }
    }

    fn close_window(&self, window: &Window) -> (Duration, Option<ServerUsage>) {
        let elapsed = window.started.elapsed();
        let usage = self.server.as_ref().map(|server| {
            let cpu_seconds = server.cpu_seconds() - window.cpu;
            ServerUsage {
                cpu_seconds,
                cpu_cores: cpu_seconds / elapsed.as_secs_f64().max(1e-9),
                peak_rss_mib: server.peak_rss_kib() as f64 / 1024.0,
                rss_start_mib: window.rss_kib as f64 / 1024.0,
                rss_end_mib: server.rss_kib() as f64 / 1024.0,
                rss_curve: Vec::new(),
            }
        });
        (elapsed, usage)
    }

    /// Turns `measuring` on for the run's duration, showing the operations counted
    /// so far, and returns the window's length and the server's usage over it.
    async fn measure(
        &self,
        counters: &Counters,
        measuring: &AtomicBool,
    ) -> (Duration, Option<ServerUsage>) {
        measuring.store(true, Ordering::Relaxed);
        let window = self.open_window();
        let bar = self.bar(self.settings.duration.as_secs(), "measuring");
        while window.started.elapsed() < self.settings.duration {
            tokio::time::sleep(Duration::from_millis(250)).await;
            bar.set_position(window.started.elapsed().as_secs());
            bar.set_message(format!("{} ok", counters.ops.load(Ordering::Relaxed)));
        }
        measuring.store(false, Ordering::Relaxed);
        let usage = self.close_window(&window);
        bar.finish_and_clear();
        usage
    }

    fn report(&self, scenario: &str, model: &str, operation: &str) -> Report {
        Report {
            scenario: scenario.into(),
            backend: self.backend.clone(),
            model: model.into(),
            devices: self.settings.devices,
            operation: operation.into(),
            ..Report::default()
        }
    }

    async fn enrol_fleet(&self, keep_running: bool) -> Result<Enrolment, SimError> {
        if let Some(devices) = &self.preset_devices {
            return Ok(Enrolment {
                latencies: Latencies::new(),
                elapsed: Duration::ZERO,
                errors: 0,
                devices: devices.clone(),
                agents: Vec::new(),
            });
        }
        let bar = self.bar(self.settings.devices as u64, "enrolling");
        let enrolment = fleet::enrol(
            &self.target,
            self.settings.devices,
            EnrolSettings {
                concurrency: self.settings.concurrency,
                timeout: SETTLE_TIMEOUT,
                keep_running,
                config_wait: self.settings.wait,
            },
            &bar,
        )
        .await;
        bar.finish_and_clear();
        if enrolment.errors > 0 {
            return Err(SimError::Setup(format!(
                "{} of {} devices did not enrol",
                enrolment.errors, self.settings.devices
            )));
        }
        Ok(enrolment)
    }

    async fn light_fleet(&self) -> Result<Vec<Arc<LightDevice>>, SimError> {
        let enrolment = self.enrol_fleet(false).await?;
        light_devices(&self.target, &enrolment.devices)
    }
}

/// Waits until `counter` reaches `goal` or `timeout` passes, showing progress;
/// returns the count reached.
async fn settle(counter: &AtomicUsize, goal: usize, timeout: Duration, bar: &ProgressBar) -> usize {
    let started = Instant::now();
    loop {
        let now = counter.load(Ordering::Relaxed);
        bar.set_position(now as u64);
        if now >= goal || started.elapsed() > timeout {
            bar.finish_and_clear();
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn abort_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        task.abort();
    }
}

/// `enrol`: a storm of N enrolments by real agents, each generating its key and
/// CSR; an operation is one device from start to its persisted certificate.
pub async fn enrol(run: &Run) -> Result<Report, SimError> {
    let window = run.open_window();
    let bar = run.bar(run.settings.devices as u64, "enrolling");
    let enrolment = fleet::enrol(
        &run.target,
        run.settings.devices,
        EnrolSettings {
            concurrency: run.settings.concurrency,
            timeout: SETTLE_TIMEOUT,
            keep_running: false,
            config_wait: run.settings.wait,
        },
        &bar,
    )
    .await;
    bar.finish_and_clear();
    let (elapsed, server) = run.close_window(&window);
    let registered = enrolment.devices.len() as u64;
    let mut report = run.report("enrol", "agent", "enrolment");
    report.window_s = elapsed.as_secs_f64();
    report.operations = registered;
    report.throughput_per_s = per_second(registered, enrolment.elapsed);
    report.latency = enrolment.latencies.summary();
    report.errors = enrolment.errors;
    report.server = server;
    report.extra.insert(
        "concurrency".into(),
        json!(run.settings.concurrency.min(run.settings.devices)),
    );
    Ok(report)
}

/// `steady`: enrolled devices send heartbeats, back to back (period 0: the ingest
/// rate) or every period; with `--long-poll` they wait in a configuration long-poll
/// between heartbeats, as an idle agent does.
pub async fn steady(run: &Run, scenario: &str) -> Result<Report, SimError> {
    if run.settings.model == Model::Agent && run.preset_devices.is_none() {
        return steady_agents(run, scenario).await;
    }
    let devices = run.light_fleet().await?;
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Latencies::new());
    let measuring = Arc::new(AtomicBool::new(false));
    let period = run.settings.period;
    let long_poll = run.settings.long_poll;
    let mut tasks = Vec::with_capacity(devices.len());
    for device in &devices {
        let device = device.clone();
        let counters = counters.clone();
        let latencies = latencies.clone();
        let measuring = measuring.clone();
        tasks.push(tokio::spawn(async move {
            let mut version = String::new();
            let mut first = true;
            let mut failures = 0u32;
            if !period.is_zero() {
                tokio::time::sleep(random_offset(period)).await;
            }
            loop {
                let started = Instant::now();
                let sent = device
                    .client
                    .heartbeat(&device.device_id, &heartbeat_content(&version))
                    .await;
                let counting = measuring.load(Ordering::Relaxed);
                if counting {
                    Counters::bump(&counters.requests);
                }
                match sent {
                    Ok(()) => {
                        failures = 0;
                        if counting {
                            latencies.record(started.elapsed());
                            Counters::bump(&counters.ops);
                        }
                        if first {
                            first = false;
                            counters.ready.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failures += 1;
                        if counting {
                            Counters::bump(&counters.errors);
                        }
                        tokio::time::sleep(backoff(failures)).await;
                        continue;
                    }
                }
                if period.is_zero() {
                    continue;
                }
                if long_poll {
                    let known = (!version.is_empty()).then_some(version.as_str());
                    let poll = device
                        .client
                        .get_config(&device.device_id, known, Some(period))
                        .await;
                    if measuring.load(Ordering::Relaxed) {
                        Counters::bump(&counters.requests);
                    }
                    match poll {
                        Ok(ConfigPoll::Config { etag, .. }) => version = etag,
                        Ok(_) => {}
                        Err(_) => {
                            if measuring.load(Ordering::Relaxed) {
                                Counters::bump(&counters.errors);
                            }
                            failures += 1;
                            tokio::time::sleep(backoff(failures)).await;
                        }
                    }
                } else {
                    tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
                }
            }
        }));
    }
    let bar = run.bar(devices.len() as u64, "connecting");
    let connected = settle(&counters.ready, devices.len(), SETTLE_TIMEOUT, &bar).await;
    if connected < devices.len() {
        abort_all(tasks);
        return Err(SimError::Setup(format!(
            "{connected} of {} devices delivered a first heartbeat",
            devices.len()
        )));
    }
    let curve = MemoryCurve::start(run.server_pid.clone(), run.settings.sample_every);
    counters.reset();
    latencies.reset();
    let (elapsed, server) = run.measure(&counters, &measuring).await;
    abort_all(tasks);
    let operations = counters.ops.load(Ordering::Relaxed);
    let mut report = run.report(scenario, "light", "heartbeat");
    report.window_s = elapsed.as_secs_f64();
    report.operations = operations;
    report.throughput_per_s = per_second(operations, elapsed);
    report.latency = latencies.summary();
    report.errors = counters.errors.load(Ordering::Relaxed);
    report.server = server.map(|mut usage| {
        usage.rss_curve = curve.finish();
        usage
    });
    report.wire.requests_per_device_hour = per_device_hour(
        counters.requests.load(Ordering::Relaxed),
        devices.len(),
        elapsed,
    );
    report
        .extra
        .insert("period_s".into(), json!(period.as_secs_f64()));
    report.extra.insert("long_poll".into(), json!(long_poll));
    Ok(report)
}

/// Resident memory of this process, MiB (`VmRSS`, `VmHWM`).
fn own_memory_mib() -> (f64, f64) {
    let pid = std::process::id();
    let read = |key| crate::server::status_kib(pid, key).unwrap_or(0) as f64 / 1024.0;
    (read("VmRSS:"), read("VmHWM:"))
}

/// `steady --model agent`: real agents (each with its heartbeat, configuration
/// long-poll and control loops, in-memory runtime and state) stay running; an
/// operation is one heartbeat an agent saw acknowledged. The agents send at the
/// period the server's configuration sets (`--period` is not theirs to choose).
async fn steady_agents(run: &Run, scenario: &str) -> Result<Report, SimError> {
    let enrolment = run.enrol_fleet(true).await?;
    let agents = enrolment.agents;
    let counters = Arc::new(Counters::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(agents.len());
    for agent in &agents {
        let mut events = agent.handle.subscribe();
        let already = matches!(
            agent.handle.status().last_heartbeat,
            Some(flotta_agent_lib::HeartbeatResult::Delivered { .. })
        );
        let (counters, measuring) = (counters.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let mut counted = already;
            if already {
                counters.ready.fetch_add(1, Ordering::Relaxed);
            }
            loop {
                match events.recv().await {
                    Ok(AgentEvent::HeartbeatDelivered) => {
                        if !counted {
                            counted = true;
                            counters.ready.fetch_add(1, Ordering::Relaxed);
                        }
                        if measuring.load(Ordering::Relaxed) {
                            Counters::bump(&counters.ops);
                        }
                    }
                    Ok(AgentEvent::HeartbeatFailed { .. }) => {
                        if measuring.load(Ordering::Relaxed) {
                            Counters::bump(&counters.errors);
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
    }
    let count = agents.len();
    let bar = run.bar(count as u64, "first beat");
    let connected = settle(&counters.ready, count, SETTLE_TIMEOUT, &bar).await;
    if connected < count {
        abort_all(tasks);
        for agent in agents {
            agent.stop().await;
        }
        return Err(SimError::Setup(format!(
            "{connected} of {count} agents delivered a first heartbeat"
        )));
    }
    let curve = MemoryCurve::start(run.server_pid.clone(), run.settings.sample_every);
    counters.reset();
    let (elapsed, server) = run.measure(&counters, &measuring).await;
    let (sim_rss, sim_peak) = own_memory_mib();
    let sim_files = crate::limits::open_files();
    let server_files = crate::limits::open_files_of(run.server_pid.load(Ordering::Relaxed));
    abort_all(tasks);
    for agent in agents {
        agent.stop().await;
    }
    let operations = counters.ops.load(Ordering::Relaxed);
    let mut report = run.report(scenario, "agent", "heartbeat");
    report.window_s = elapsed.as_secs_f64();
    report.operations = operations;
    report.throughput_per_s = per_second(operations, elapsed);
    report.errors = counters.errors.load(Ordering::Relaxed);
    report.server = server.map(|mut usage| {
        usage.rss_curve = curve.finish();
        usage
    });
    report.wire.requests_per_device_hour = per_device_hour(operations, count, elapsed);
    report
        .extra
        .insert("simulator_rss_mib".into(), json!(sim_rss));
    report
        .extra
        .insert("simulator_peak_rss_mib".into(), json!(sim_peak));
    report.extra.insert(
        "simulator_rss_per_agent_kib".into(),
        json!(sim_rss * 1024.0 / count.max(1) as f64),
    );
    report
        .extra
        .insert("simulator_open_files".into(), json!(sim_files));
    report
        .extra
        .insert("server_open_files".into(), json!(server_files));
    report.extra.insert(
        "source_addresses".into(),
        json!(run.target.source_addresses),
    );
    Ok(report)
}

/// Shared progress of a roll-out round.
#[derive(Default)]
struct Rollout {
    round: AtomicU32,
    /// When the current round's change was sent, nanoseconds after `base`.
    started_nanos: AtomicU64,
    done: AtomicUsize,
}

impl Rollout {
    fn marker(round: u32) -> String {
        format!("registry.invalid/sim/app:r{round}")
    }

    /// Whether `text` shows the current round's change; records its latency.
    fn observe(&self, text: &str, seen_round: &mut u32, base: Instant, latencies: &Latencies) {
        let round = self.round.load(Ordering::Acquire);
        if round > *seen_round && text.contains(&Self::marker(round)) {
            *seen_round = round;
            let started = Duration::from_nanos(self.started_nanos.load(Ordering::Acquire));
            latencies.record(base.elapsed().saturating_sub(started));
            self.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn workload(round: u32) -> Value {
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
                            rollout.observe(&running, &mut seen_round, base, &latencies);
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
                            rollout.observe(&text, &mut seen_round, base, &latencies);
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
    let bar = run.bar(devices as u64, "first config");
    let listening = settle(&ready, devices, SETTLE_TIMEOUT, &bar).await;
    if listening < devices {
        abort_all(tasks);
        return Err(SimError::Setup(format!(
            "{listening} of {devices} devices got their first configuration"
        )));
    }
    // Every device is now back in its long-poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    errors.store(0, Ordering::Relaxed);
    let window = run.open_window();
    let rounds = 3u32;
    let mut missing = 0u64;
    for round in 1..=rounds {
        rollout.done.store(0, Ordering::Relaxed);
        let started = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        rollout.started_nanos.store(started, Ordering::Release);
        rollout.round.store(round, Ordering::Release);
        let changed = if round == 1 {
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
        changed.map_err(|e| SimError::Setup(format!("changing the workload: {e}")))?;
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

/// `reconnect`: devices heartbeat and long-poll; the server is stopped (SIGTERM)
/// and started again on the same data; an operation is one device getting a
/// heartbeat through again, timed from the moment the server listens again.
pub async fn reconnect(run: &mut Run) -> Result<Report, SimError> {
    if run.server.is_none() {
        return Err(SimError::Setup(
            "reconnect restarts the server: use --spawn-server".into(),
        ));
    }
    let devices = run.light_fleet().await?;
    let period = if run.settings.period.is_zero() {
        Duration::from_secs(5)
    } else {
        run.settings.period
    };
    let base = Instant::now();
    // Nanoseconds after `base`: when the server was stopped and when it was back.
    let stopped_at = Arc::new(AtomicU64::new(u64::MAX));
    let up_at = Arc::new(AtomicU64::new(u64::MAX));
    let counters = Arc::new(Counters::default());
    let recovered = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Latencies::new());
    let outage_failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for device in &devices {
        let device = device.clone();
        let (stopped_at, up_at, counters, recovered, latencies, outage_failures) = (
            stopped_at.clone(),
            up_at.clone(),
            counters.clone(),
            recovered.clone(),
            latencies.clone(),
            outage_failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let nanos = || u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let mut version: Option<String> = None;
            let mut first = true;
            let mut back = false;
            let mut failures = 0;
            tokio::time::sleep(random_offset(period)).await;
            loop {
                let sent_at = nanos();
                let content = heartbeat_content(version.as_deref().unwrap_or(""));
                match device.client.heartbeat(&device.device_id, &content).await {
                    Ok(()) => {
                        failures = 0;
                        if first {
                            first = false;
                            counters.ready.fetch_add(1, Ordering::Relaxed);
                        }
                        // Only a heartbeat sent once the new server listens counts:
                        // one answered by the old server while it drains is followed
                        // by failures until the new one is up.
                        if !back && sent_at >= up_at.load(Ordering::Acquire) {
                            back = true;
                            let up = up_at.load(Ordering::Acquire).min(nanos());
                            latencies.record(Duration::from_nanos(nanos().saturating_sub(up)));
                            recovered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failures += 1;
                        if stopped_at.load(Ordering::Acquire) != u64::MAX && !back {
                            outage_failures.fetch_add(1, Ordering::Relaxed);
                        } else {
                            Counters::bump(&counters.errors);
                        }
                        tokio::time::sleep(backoff(failures)).await;
                        continue;
                    }
                }
                match device
                    .client
                    .get_config(&device.device_id, version.as_deref(), Some(period))
                    .await
                {
                    Ok(ConfigPoll::Config { etag, .. }) => version = Some(etag),
                    Ok(_) => {}
                    // The poll fails when the server goes away; the heartbeat that
                    // follows tells whether the device is back.
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(backoff(failures)).await;
                    }
                }
            }
        }));
    }
    let count = devices.len();
    let bar = run.bar(count as u64, "connecting");
    let connected = settle(&counters.ready, count, SETTLE_TIMEOUT, &bar).await;
    if connected < count {
        abort_all(tasks);
        return Err(SimError::Setup(format!(
            "{connected} of {count} devices delivered a first heartbeat"
        )));
    }
    counters.reset();
    let window = run.open_window();
    let nanos = || u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    stopped_at.store(nanos(), Ordering::Release);
    let mut server = run
        .server
        .take()
        .ok_or_else(|| SimError::Setup("no server".into()))?;
    let restart_started = Instant::now();
    let (server, restarted) = tokio::task::spawn_blocking(move || {
        let result = server.restart();
        (server, result)
    })
    .await
    .map_err(|e| SimError::Server(format!("restart task: {e}")))?;
    run.server_pid.store(server.pid(), Ordering::Relaxed);
    run.server = Some(server);
    restarted?;
    let outage = restart_started.elapsed();
    up_at.store(nanos(), Ordering::Release);
    let bar = run.bar(count as u64, "reconnecting");
    let back = settle(&recovered, count, SETTLE_TIMEOUT, &bar).await;
    let all_back_after = restart_started.elapsed().saturating_sub(outage);
    // A further period shows whether the fleet stays healthy once back.
    tokio::time::sleep(period).await;
    let (elapsed, server) = run.close_window(&window);
    abort_all(tasks);
    let mut report = run.report("reconnect", "light", "reconnection");
    report.window_s = elapsed.as_secs_f64();
    report.operations = back as u64;
    report.throughput_per_s = per_second(back as u64, all_back_after);
    report.latency = latencies.summary();
    report.errors = (count - back.min(count)) as u64 + counters.errors.load(Ordering::Relaxed);
    report.server = server;
    report
        .extra
        .insert("server_restart_s".into(), json!(outage.as_secs_f64()));
    report.extra.insert(
        "all_back_after_s".into(),
        json!(all_back_after.as_secs_f64()),
    );
    report.extra.insert(
        "failures_during_outage".into(),
        json!(outage_failures.load(Ordering::Relaxed)),
    );
    report
        .extra
        .insert("period_s".into(), json!(period.as_secs_f64()));
    Ok(report)
}

/// Flotta's agent fetches its whole configuration every 5 s (no ETag) and sends a
/// heartbeat every 60 s.
const FLOTTA_POLL_PERIOD: Duration = Duration::from_secs(5);
/// The heartbeat period both models use in `flotta-poll`.
const IDLE_HEARTBEAT_PERIOD: Duration = Duration::from_secs(60);

/// `flotta-poll`: the same fleet first behaves as Flotta's agent (full
/// configuration every 5 s, heartbeat every 60 s), then as ours (long-poll with
/// ETag, heartbeat every 60 s); bytes and requests per device per hour of both.
pub async fn flotta_poll(run: &Run) -> Result<Report, SimError> {
    let enrolment = run.enrol_fleet(false).await?;
    let upstream = run
        .target
        .server_url
        .trim_start_matches("https://")
        .parse()
        .map_err(|e| SimError::Setup(format!("server address for the relay: {e}")))?;
    let relay = CountingRelay::start(upstream).await?;
    let relayed = FleetTarget {
        server_url: format!("https://{}", relay.addr),
        ..run.target.clone()
    };
    let devices = light_devices(&relayed, &enrolment.devices)?;
    let count = devices.len();
    let latencies = Arc::new(Latencies::new());

    // Flotta's model.
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for device in &devices {
        let (device, counters, latencies) = (device.clone(), counters.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut next_poll = Instant::now() + random_offset(FLOTTA_POLL_PERIOD);
            let mut next_heartbeat = Instant::now() + random_offset(IDLE_HEARTBEAT_PERIOD);
            let mut first = true;
            loop {
                let next = next_poll.min(next_heartbeat);
                tokio::time::sleep_until(next.into()).await;
                Counters::bump(&counters.requests);
                if next_poll <= next_heartbeat {
                    next_poll += FLOTTA_POLL_PERIOD;
                    let started = Instant::now();
                    match device
                        .client
                        .get_config(&device.device_id, None, None)
                        .await
                    {
                        Ok(_) => {
                            latencies.record(started.elapsed());
                            Counters::bump(&counters.ops);
                            if first {
                                first = false;
                                counters.ready.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => Counters::bump(&counters.errors),
                    }
                } else {
                    next_heartbeat += IDLE_HEARTBEAT_PERIOD;
                    if device
                        .client
                        .heartbeat(&device.device_id, &heartbeat_content(""))
                        .await
                        .is_err()
                    {
                        Counters::bump(&counters.errors);
                    }
                }
            }
        }));
    }
    let bar = run.bar(count as u64, "flotta model");
    settle(&counters.ready, count, SETTLE_TIMEOUT, &bar).await;
    counters.reset();
    latencies.reset();
    let window = run.open_window();
    let bytes_before = relay.bytes();
    tokio::time::sleep(run.settings.duration).await;
    let flotta_io = relay.bytes() - bytes_before;
    let (flotta_elapsed, _) = run.close_window(&window);
    abort_all(tasks);
    let flotta_requests = counters.requests.load(Ordering::Relaxed);
    let flotta_errors = counters.errors.load(Ordering::Relaxed);
    let flotta = Wire {
        bytes_per_device_hour: per_device_hour(flotta_io, count, flotta_elapsed),
        requests_per_device_hour: per_device_hour(flotta_requests, count, flotta_elapsed),
    };

    // Ours.
    let counters = Arc::new(Counters::default());
    let wait = IDLE_HEARTBEAT_PERIOD;
    let mut tasks = Vec::new();
    for device in &devices {
        let (device, counters) = (device.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let mut version: Option<String> = None;
            if let Ok(ConfigPoll::Config { etag, .. }) = device
                .client
                .get_config(&device.device_id, None, None)
                .await
            {
                version = Some(etag);
            }
            counters.ready.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(random_offset(IDLE_HEARTBEAT_PERIOD)).await;
            loop {
                Counters::bump(&counters.requests);
                let content = heartbeat_content(version.as_deref().unwrap_or(""));
                if device
                    .client
                    .heartbeat(&device.device_id, &content)
                    .await
                    .is_err()
                {
                    Counters::bump(&counters.errors);
                }
                Counters::bump(&counters.requests);
                match device
                    .client
                    .get_config(&device.device_id, version.as_deref(), Some(wait))
                    .await
                {
                    Ok(ConfigPoll::Config { etag, .. }) => version = Some(etag),
                    Ok(_) => {}
                    Err(_) => {
                        Counters::bump(&counters.errors);
                        tokio::time::sleep(backoff(1)).await;
                    }
                }
            }
        }));
    }
    let bar = run.bar(count as u64, "long-poll model");
    settle(&counters.ready, count, SETTLE_TIMEOUT, &bar).await;
    counters.reset();
    let window = run.open_window();
    let bytes_before = relay.bytes();
    tokio::time::sleep(run.settings.duration).await;
    let io = relay.bytes() - bytes_before;
    let (elapsed, server) = run.close_window(&window);
    abort_all(tasks);
    let (heartbeat_bytes, heartbeat_request_bytes) =
        unchanged_heartbeat_bytes(&devices, &relay).await;
    let ours = Wire {
        bytes_per_device_hour: per_device_hour(io, count, elapsed),
        requests_per_device_hour: per_device_hour(
            counters.requests.load(Ordering::Relaxed),
            count,
            elapsed,
        ),
    };
    let mut report = run.report("flotta-poll", "light", "full-config poll");
    report.window_s = (flotta_elapsed + elapsed).as_secs_f64();
    let polls = latencies.summary().count;
    report.operations = polls;
    report.throughput_per_s = per_second(polls, flotta_elapsed);
    report.latency = latencies.summary();
    report.errors = flotta_errors + counters.errors.load(Ordering::Relaxed);
    report.server = server;
    report.wire = ours;
    report
        .extra
        .insert("unchanged_heartbeat_bytes".into(), json!(heartbeat_bytes));
    report.extra.insert(
        "unchanged_heartbeat_request_bytes".into(),
        json!(heartbeat_request_bytes),
    );
    report.extra.insert(
        "flotta_bytes_per_device_hour".into(),
        json!(flotta.bytes_per_device_hour),
    );
    report.extra.insert(
        "flotta_requests_per_device_hour".into(),
        json!(flotta.requests_per_device_hour),
    );
    report.extra.insert(
        "bytes_ratio_flotta_to_ours".into(),
        json!(crate::stats::ratio(
            flotta.bytes_per_device_hour,
            ours.bytes_per_device_hour
        )),
    );
    report.extra.insert(
        "requests_ratio_flotta_to_ours".into(),
        json!(crate::stats::ratio(
            flotta.requests_per_device_hour,
            ours.requests_per_device_hour
        )),
    );
    Ok(report)
}

/// Bytes of one heartbeat with an unchanged status on an open connection (TLS
/// records): request and response together, and the request alone, averaged over up
/// to 100 devices sent one at a time.
async fn unchanged_heartbeat_bytes(
    devices: &[Arc<LightDevice>],
    relay: &CountingRelay,
) -> (f64, f64) {
    let sample = devices.get(..devices.len().min(100)).unwrap_or_default();
    // Open each connection first so the handshake is not counted.
    for device in sample {
        let _ = device
            .client
            .heartbeat(&device.device_id, &heartbeat_content("v"))
            .await;
    }
    let before = relay.bytes();
    let sent_before = relay.sent_bytes();
    let mut sent = 0u64;
    for device in sample {
        if device
            .client
            .heartbeat(&device.device_id, &heartbeat_content("v"))
            .await
            .is_ok()
        {
            sent += 1;
        }
    }
    // The relay counts after forwarding; give the last reply a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let heartbeats = sent.max(1) as f64;
    (
        (relay.bytes() - before) as f64 / heartbeats,
        (relay.sent_bytes() - sent_before) as f64 / heartbeats,
    )
}
