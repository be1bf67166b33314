//! `flotta-poll`: Flotta's polling agent against ours, bytes and requests per device.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flotta_client::ConfigPoll;
use serde_json::json;

use crate::SimError;
use crate::fleet::{
    Counters, FleetTarget, LightDevice, backoff, heartbeat_content, light_devices, random_offset,
};
use crate::report::{Report, Wire};
use crate::stats::{Latencies, per_device_hour, per_second};
use crate::wire::CountingRelay;

use super::{Run, SETTLE_TIMEOUT, abort_all, settle};

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
