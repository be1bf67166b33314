//! `replicas`: two `flotta-server` replicas on one PostgreSQL database, beside one
//! replica in the same run, and one of them killed under load.
//!
//! One fleet of light devices, enrolled through replica A, holds a client for each
//! replica (the same device certificate: both replicas share the fleet CA). The
//! run has five phases:
//!
//! 1. ingest on one replica: every device sends heartbeats back to back to A;
//! 2. ingest on two: device `i` sends to replica `i % 2`;
//! 3. propagation on one: every device long-polls A; the workload (created
//!    before, unmeasured) changes twice through A's management API;
//! 4. propagation on two: device `i` long-polls replica `i % 2`; the same two
//!    changes, still made through A, reach B's devices through the database's
//!    change feed (LISTEN/NOTIFY);
//! 5. failover: device `i` heartbeats every period and long-polls replica `i % 2`
//!    in between; A is killed (SIGKILL: no drain, no lease hand-over). A device
//!    whose request fails moves to the other replica, as a TCP load balancer in
//!    front of the replicas moves a connection whose backend is gone. An
//!    operation is one of A's devices served by B again (a heartbeat accepted),
//!    timed from the kill.
//!
//! Server CPU is that of both replicas (the idle one's included), so the scale-out
//! figures compare the capacity of the pair with that of one. The report's
//! `server` block is the pair's over the spread ingest window (peak: both
//! replicas' peaks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotta_client::{ConfigPoll, EdgeClient, ManagementClient};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::SimError;
use crate::fleet::{Counters, FleetTarget, Http, backoff, heartbeat_content, light_devices};
use crate::report::{Report, ServerUsage};
use crate::server::{Backend, ServerProcess};
use crate::stats::{Latencies, LatencySummary, per_second};

use super::propagate::{Rollout, workload};
use super::{NAMESPACE, Run, SETTLE_TIMEOUT, WORKLOAD_NAME, WORKLOADS, abort_all, settle};

/// Workload changes per propagation phase.
const ROUNDS: u32 = 2;
/// How long one round may take to reach every device.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// A device with a client for each replica (A, B).
struct Replicated {
    device_id: String,
    clients: [EdgeClient; 2],
}

/// Which replica device `index` uses in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Every device on replica A.
    OnA,
    /// Device `i` on replica `i % 2`.
    Spread,
}

impl Placement {
    fn replica(self, index: usize) -> usize {
        match self {
            Self::OnA => 0,
            Self::Spread => index % 2,
        }
    }
}

/// What an ingest phase measured.
struct Ingest {
    heartbeats: u64,
    elapsed: Duration,
    latency: LatencySummary,
    errors: u64,
    /// CPU seconds of both replicas over the window.
    cpu_seconds: f64,
    /// Resident memory of both replicas when the window opened and closed, KiB.
    rss_kib: (u64, u64),
}

impl Ingest {
    fn per_second(&self) -> f64 {
        per_second(self.heartbeats, self.elapsed)
    }

    fn cpu_us_per_heartbeat(&self) -> f64 {
        self.cpu_seconds * 1e6 / (self.heartbeats.max(1) as f64)
    }
}

fn both_cpu(a: &ServerProcess, b: &ServerProcess) -> f64 {
    a.cpu_seconds() + b.cpu_seconds()
}

/// `replicas`: see the module documentation.
pub async fn replicas(run: &mut Run, backend: &Backend) -> Result<Report, SimError> {
    let a_dir = run
        .server
        .as_ref()
        .map(|server| server.data_dir.clone())
        .ok_or_else(|| SimError::Setup("replicas starts its servers: use --spawn-server".into()))?;
    let b_dir = a_dir.with_file_name(format!(
        "{}-replica-b",
        a_dir.file_name().map_or_else(
            || "flotta-sim".into(),
            |name| name.to_string_lossy().into_owned()
        )
    ));
    let mut b = {
        let a = run
            .server
            .as_ref()
            .ok_or_else(|| SimError::Setup("no server".into()))?;
        a.replica(&b_dir, backend)?
    };
    let result = measure(run, &b).await;
    b.stop();
    let _ = std::fs::remove_dir_all(&b_dir);
    result
}

async fn measure(run: &mut Run, b: &ServerProcess) -> Result<Report, SimError> {
    let admin = run
        .admin_config
        .clone()
        .ok_or_else(|| SimError::Setup("replicas needs replica A's admin.yaml".into()))?;
    let management = ManagementClient::from_config_file(&admin)
        .map_err(|e| SimError::Setup(format!("management client from {}: {e}", admin.display())))?;
    let _ = management
        .delete_raw(WORKLOADS, NAMESPACE, WORKLOAD_NAME)
        .await;

    let enrolment = run.enrol_fleet(false).await?;
    let http = if run.target.http1 {
        Http::Http1
    } else {
        Http::Negotiated
    };
    let on_b = FleetTarget {
        server_url: format!("https://{}", b.edge_addr),
        ..run.target.clone()
    };
    let devices: Vec<Arc<Replicated>> = light_devices(&run.target, &enrolment.devices, http)?
        .into_iter()
        .zip(light_devices(&on_b, &enrolment.devices, http)?)
        .map(|(a, b)| {
            Arc::new(Replicated {
                device_id: a.device_id.clone(),
                clients: [a.client.clone(), b.client.clone()],
            })
        })
        .collect();

    let a = run
        .server
        .as_ref()
        .ok_or_else(|| SimError::Setup("no server".into()))?;
    let one = ingest(run, a, b, &devices, Placement::OnA).await?;
    let two = ingest(run, a, b, &devices, Placement::Spread).await?;

    // The workload exists before either propagation phase, so that every
    // measured change is of the same kind: a new revision of a workload the
    // devices already run (released by the leader's rollout step).
    management
        .create_raw(WORKLOADS, NAMESPACE, &workload(0))
        .await
        .map_err(|e| SimError::Setup(format!("creating the workload: {e}")))?;
    let rollout = Arc::new(Rollout::default());
    let base = Instant::now();
    let propagation_one = propagation(
        run,
        &management,
        &devices,
        Placement::OnA,
        (&rollout, base),
        1,
    )
    .await?;
    let propagation_two = propagation(
        run,
        &management,
        &devices,
        Placement::Spread,
        (&rollout, base),
        1 + ROUNDS,
    )
    .await?;
    let _ = management
        .delete_raw(WORKLOADS, NAMESPACE, WORKLOAD_NAME)
        .await;

    let failover = failover(run, &devices).await?;

    let mut report = run.report("replicas", "light", "heartbeat");
    report.window_s = two.elapsed.as_secs_f64();
    report.operations = two.heartbeats;
    report.throughput_per_s = two.per_second();
    report.latency = two.latency;
    report.errors = one.errors
        + two.errors
        + propagation_one.missing
        + propagation_two.missing
        + failover.not_back
        + failover.survivor_errors;
    report.server = Some(ServerUsage {
        cpu_seconds: two.cpu_seconds,
        cpu_cores: two.cpu_seconds / two.elapsed.as_secs_f64().max(1e-9),
        peak_rss_mib: (failover.peak_rss_kib_a + b.peak_rss_kib()) as f64 / 1024.0,
        rss_start_mib: two.rss_kib.0 as f64 / 1024.0,
        rss_end_mib: two.rss_kib.1 as f64 / 1024.0,
        rss_curve: Vec::new(),
    });
    let extra = &mut report.extra;
    extra.insert(
        "one_replica_heartbeats_per_s".into(),
        json!(one.per_second()),
    );
    extra.insert(
        "two_replicas_heartbeats_per_s".into(),
        json!(two.per_second()),
    );
    extra.insert(
        "scale_out_factor".into(),
        json!(two.per_second() / one.per_second().max(1e-9)),
    );
    extra.insert(
        "one_replica_cpu_us_per_heartbeat".into(),
        json!(one.cpu_us_per_heartbeat()),
    );
    extra.insert(
        "two_replicas_cpu_us_per_heartbeat".into(),
        json!(two.cpu_us_per_heartbeat()),
    );
    extra.insert("one_replica_latency".into(), json!(one.latency));
    extra.insert("one_replica_propagation".into(), json!(propagation_one.all));
    extra.insert(
        "two_replicas_propagation".into(),
        json!(propagation_two.all),
    );
    extra.insert(
        "two_replicas_propagation_to_b".into(),
        json!(propagation_two.on_b),
    );
    extra.insert("propagation_rounds".into(), json!(ROUNDS));
    extra.insert("failover_devices_moved".into(), json!(failover.moved));
    extra.insert(
        "failover_all_served_s".into(),
        json!(failover.all_served.map(|d| d.as_secs_f64())),
    );
    extra.insert("failover_recovery".into(), json!(failover.recovery));
    extra.insert("failover_not_back".into(), json!(failover.not_back));
    extra.insert(
        "failover_survivor_errors".into(),
        json!(failover.survivor_errors),
    );
    extra.insert(
        "failover_period_s".into(),
        json!(failover.period.as_secs_f64()),
    );
    Ok(report)
}

/// Heartbeats back to back, each device on its replica of `placement`, for the
/// run's duration after every device delivered one.
async fn ingest(
    run: &Run,
    a: &ServerProcess,
    b: &ServerProcess,
    devices: &[Arc<Replicated>],
    placement: Placement,
) -> Result<Ingest, SimError> {
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Latencies::new());
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(devices.len());
    for (index, device) in devices.iter().enumerate() {
        let (device, counters, latencies, measuring) = (
            device.clone(),
            counters.clone(),
            latencies.clone(),
            measuring.clone(),
        );
        let client = device.clients[placement.replica(index)].clone();
        tasks.push(tokio::spawn(async move {
            let content = heartbeat_content("");
            let mut first = true;
            let mut failures = 0;
            loop {
                let started = Instant::now();
                let sent = client.heartbeat(&device.device_id, &content).await;
                let counting = measuring.load(Ordering::Relaxed);
                match sent {
                    Ok(()) => {
                        failures = 0;
                        if first {
                            first = false;
                            counters.ready.fetch_add(1, Ordering::Relaxed);
                        }
                        if counting {
                            latencies.record(started.elapsed());
                            Counters::bump(&counters.ops);
                        }
                    }
                    Err(_) => {
                        failures += 1;
                        if counting {
                            Counters::bump(&counters.errors);
                        }
                        tokio::time::sleep(backoff(failures)).await;
                    }
                }
            }
        }));
    }
    let label = match placement {
        Placement::OnA => "on one",
        Placement::Spread => "on two",
    };
    run.settle_fleet(
        &counters.ready,
        devices.len(),
        (label, "delivered a first heartbeat"),
        &mut tasks,
    )
    .await?;
    counters.reset();
    latencies.reset();
    let cpu_before = both_cpu(a, b);
    let rss_before = a.rss_kib() + b.rss_kib();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(run.settings.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_seconds = both_cpu(a, b) - cpu_before;
    let rss_after = a.rss_kib() + b.rss_kib();
    abort_all(tasks);
    Ok(Ingest {
        heartbeats: counters.ops.load(Ordering::Relaxed),
        elapsed,
        latency: latencies.summary(),
        errors: counters.errors.load(Ordering::Relaxed),
        cpu_seconds,
        rss_kib: (rss_before, rss_after),
    })
}

/// What a propagation phase measured.
struct Propagation {
    /// Every device's latency, from the API call to the change in its long-poll.
    all: LatencySummary,
    /// Those of the devices long-polling replica B (the spread phase).
    on_b: LatencySummary,
    /// Device-rounds that did not see their change within the round's timeout.
    missing: u64,
}

/// Every device long-polls its replica of `placement`; [`ROUNDS`] changes of the
/// workload are made through replica A's management API, numbered from
/// `first_round`.
async fn propagation(
    run: &Run,
    management: &ManagementClient,
    devices: &[Arc<Replicated>],
    placement: Placement,
    (rollout, base): (&Arc<Rollout>, Instant),
    first_round: u32,
) -> Result<Propagation, SimError> {
    let all = Arc::new(Latencies::new());
    let on_b = Arc::new(Latencies::new());
    let ready = Arc::new(AtomicUsize::new(0));
    let wait = run.settings.wait;
    let mut tasks: Vec<JoinHandle<()>> = Vec::with_capacity(devices.len());
    for (index, device) in devices.iter().enumerate() {
        let replica = placement.replica(index);
        let client = device.clients[replica].clone();
        let (device, rollout, all, on_b, ready) = (
            device.clone(),
            rollout.clone(),
            all.clone(),
            on_b.clone(),
            ready.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut version: Option<String> = None;
            // Rounds before this phase's are not this phase's to see.
            let mut seen_round = first_round - 1;
            let mut failures = 0;
            loop {
                match client
                    .get_config(&device.device_id, version.as_deref(), Some(wait))
                    .await
                {
                    Ok(ConfigPoll::Config { etag, message }) => {
                        failures = 0;
                        if version.is_none() {
                            ready.fetch_add(1, Ordering::Relaxed);
                        }
                        version = Some(etag);
                        let text = serde_json::to_string(&message).unwrap_or_default();
                        let seen = rollout.observe(&text, &mut seen_round, base, &all);
                        if let (Some(latency), 1) = (seen, replica) {
                            // The same latency, kept apart for B's devices.
                            on_b.record(latency);
                        }
                    }
                    Ok(_) => failures = 0,
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(backoff(failures)).await;
                    }
                }
            }
        }));
    }
    let count = devices.len();
    run.settle_fleet(
        &ready,
        count,
        ("first config", "got their first configuration"),
        &mut tasks,
    )
    .await?;
    // Every device is back in its long-poll (its first answer came at once).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut missing = 0u64;
    for round in first_round..first_round + ROUNDS {
        if let Err(error) = rollout.change(management, round, false, base).await {
            abort_all(tasks);
            return Err(error);
        }
        let bar = run.bar(count as u64, &format!("round {round}"));
        let reached = settle(&rollout.done, count, ROUND_TIMEOUT, &bar).await;
        missing += (count - reached.min(count)) as u64;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    abort_all(tasks);
    Ok(Propagation {
        all: all.summary(),
        on_b: on_b.summary(),
        missing,
    })
}

/// What the failover phase measured.
struct Failover {
    /// Devices that were on A when it was killed.
    moved: usize,
    /// From the kill until the last of them was served by B.
    all_served: Option<Duration>,
    /// Per device, from the kill until B accepted its heartbeat.
    recovery: LatencySummary,
    /// A's devices that B had not served when the phase gave up.
    not_back: u64,
    /// Failed requests of the devices that were on B all along, and of any device
    /// before the kill.
    survivor_errors: u64,
    /// A's peak resident memory before it was killed, KiB.
    peak_rss_kib_a: u64,
    /// The heartbeat period of the phase.
    period: Duration,
}

/// Device `i` heartbeats every period on replica `i % 2` and long-polls it in
/// between; replica A is killed and its devices move to B. A failed request
/// before the kill, or of a device that was on B all along, counts as an error.
async fn failover(run: &mut Run, devices: &[Arc<Replicated>]) -> Result<Failover, SimError> {
    let period = if run.settings.period.is_zero() {
        Duration::from_secs(5)
    } else {
        run.settings.period
    };
    let base = Instant::now();
    let killed_at = Arc::new(AtomicU64::new(u64::MAX));
    let ready = Arc::new(AtomicUsize::new(0));
    let recovered = Arc::new(AtomicUsize::new(0));
    let recovery = Arc::new(Latencies::new());
    let survivor_errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(devices.len());
    for (index, device) in devices.iter().enumerate() {
        let home = Placement::Spread.replica(index);
        let (device, killed_at, ready, recovered, recovery, survivor_errors) = (
            device.clone(),
            killed_at.clone(),
            ready.clone(),
            recovered.clone(),
            recovery.clone(),
            survivor_errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let nanos = || u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let mut on = home;
            let mut version: Option<String> = None;
            let mut first = true;
            let mut back = false;
            let mut failures = 0;
            tokio::time::sleep(crate::fleet::random_offset(period)).await;
            loop {
                let client = &device.clients[on];
                let content = heartbeat_content(version.as_deref().unwrap_or(""));
                let sent_at = nanos();
                let sent = client.heartbeat(&device.device_id, &content).await;
                let ok = sent.is_ok();
                if ok {
                    failures = 0;
                    if first {
                        first = false;
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                    let killed = killed_at.load(Ordering::Acquire);
                    if home == 0 && on == 1 && !back && sent_at >= killed {
                        back = true;
                        recovery.record(Duration::from_nanos(nanos().saturating_sub(killed)));
                        recovered.fetch_add(1, Ordering::Relaxed);
                    }
                    match client
                        .get_config(&device.device_id, version.as_deref(), Some(period))
                        .await
                    {
                        Ok(ConfigPoll::Config { etag, .. }) => {
                            version = Some(etag);
                            continue;
                        }
                        Ok(_) => continue,
                        Err(_) => {}
                    }
                }
                // A request failed: an error unless A is gone and this device was
                // on it; either way the device moves on, as a load balancer would.
                if home == 1 || killed_at.load(Ordering::Acquire) == u64::MAX {
                    survivor_errors.fetch_add(1, Ordering::Relaxed);
                }
                on = 1 - on;
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
            }
        }));
    }
    let count = devices.len();
    run.settle_fleet(
        &ready,
        count,
        ("spread", "delivered a first heartbeat"),
        &mut tasks,
    )
    .await?;
    survivor_errors.store(0, Ordering::Relaxed);
    // A full period with every device in its rhythm before the kill.
    tokio::time::sleep(period).await;
    let a = run
        .server
        .as_mut()
        .ok_or_else(|| SimError::Setup("no server".into()))?;
    let peak_rss_kib_a = a.peak_rss_kib();
    killed_at.store(
        u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX),
        Ordering::Release,
    );
    let killed = Instant::now();
    a.kill();
    let moved = count.div_ceil(2);
    let bar = run.bar(moved as u64, "failing over");
    let back = settle(&recovered, moved, SETTLE_TIMEOUT, &bar).await;
    let all_served = (back >= moved).then(|| killed.elapsed());
    // A further period shows whether B keeps serving everybody.
    tokio::time::sleep(period).await;
    abort_all(tasks);
    Ok(Failover {
        moved,
        all_served,
        recovery: recovery.summary(),
        not_back: (moved - back.min(moved)) as u64,
        survivor_errors: survivor_errors.load(Ordering::Relaxed),
        peak_rss_kib_a,
        period,
    })
}
