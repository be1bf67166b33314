//! The scenarios: each sets up its fleet, measures a window and returns a report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotta_agent_lib::AgentEvent;
use flotta_client::{ConfigPoll, ResourceType};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::fleet::{
    self, Counters, EnrolSettings, EnrolledDevice, Enrolment, FleetTarget, Http, LightDevice,
    backoff, heartbeat_content, light_devices, random_offset,
};
use crate::report::{Report, ServerUsage};
use crate::server::{MemoryCurve, ServerProcess};
use crate::stats::{Latencies, per_device_hour, per_second};
use crate::{Model, SimError};

mod flotta_poll;
mod propagate;
mod reconnect;
mod replicas;
mod rollout;

pub use flotta_poll::flotta_poll;
pub use propagate::propagate;
pub use reconnect::reconnect;
pub use replicas::replicas;
pub use rollout::rollout;

/// Name of the workload the propagation scenario rolls out.
const WORKLOAD_NAME: &str = "sim-app";
/// The workload collection of the management API.
const WORKLOADS: ResourceType = ResourceType::EdgeWorkload;
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

    /// Waits (at most [`SETTLE_TIMEOUT`], showing `label`) until `count` devices
    /// reached the state `ready` counts; otherwise stops `tasks` and fails with
    /// how many did (`"... of N devices {reached}"`).
    async fn settle_fleet(
        &self,
        ready: &AtomicUsize,
        count: usize,
        (label, reached): (&str, &str),
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), SimError> {
        let bar = self.bar(count as u64, label);
        let done = settle(ready, count, SETTLE_TIMEOUT, &bar).await;
        if done < count {
            abort_all(std::mem::take(tasks));
            return Err(SimError::Setup(format!(
                "{done} of {count} devices {reached}"
            )));
        }
        Ok(())
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
        let http = if self.target.http1 {
            Http::Http1
        } else {
            Http::Negotiated
        };
        light_devices(&self.target, &enrolment.devices, http)
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
    run.settle_fleet(
        &counters.ready,
        devices.len(),
        ("connecting", "delivered a first heartbeat"),
        &mut tasks,
    )
    .await?;
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
