//! `reconnect`: how long the fleet takes to come back after a server restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotta_client::ConfigPoll;
use serde_json::json;

use crate::SimError;
use crate::fleet::{Counters, backoff, heartbeat_content, random_offset};
use crate::report::Report;
use crate::stats::{Latencies, per_second};

use super::{Run, SETTLE_TIMEOUT, abort_all, settle};

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
    run.settle_fleet(
        &counters.ready,
        count,
        ("connecting", "delivered a first heartbeat"),
        &mut tasks,
    )
    .await?;
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
