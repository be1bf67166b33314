//! `flotta-poll`: Flotta's polling agent against ours, bytes and requests per device.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flotta_client::ConfigPoll;
use serde_json::json;

use crate::SimError;
use crate::fleet::{
    Counters, FleetTarget, Http, LightDevice, backoff, heartbeat_content, light_devices,
    random_offset,
};
use crate::report::{Report, Wire};
use crate::stats::{Latencies, per_device_hour, per_second};
use crate::wire::CountingRelay;

use super::{Run, SETTLE_TIMEOUT, abort_all, settle};

/// Flotta's agent fetches its whole configuration every 5 s (no ETag) and sends a
/// heartbeat every 60 s.
const FLOTTA_POLL_PERIOD: Duration = Duration::from_secs(5);
/// Flotta's agent's heartbeat period (its default).
const IDLE_HEARTBEAT_PERIOD: Duration = Duration::from_secs(60);

/// The longest window the Flotta model is measured over: its pattern repeats
/// every heartbeat period.
const FLOTTA_WINDOW: Duration = Duration::from_secs(120);

/// `flotta-poll`: the same fleet first behaves as Flotta's agent (HTTP/1.1, full
/// configuration every 5 s, heartbeat every 60 s), then as a flotta-rs agent does
/// with the configuration the server renders (HTTP/2, one connection; a long-poll
/// with ETag waiting `long_poll_seconds`, which keeps the device's last-seen time
/// current; a heartbeat only after `max_silence_seconds` while nothing changes; no
/// control poll unless the server marks an answer); bytes, requests and server
/// CPU per device per hour of both.
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
    let flotta_devices = light_devices(&relayed, &enrolment.devices, Http::Http1)?;
    let count = flotta_devices.len();
    let latencies = Arc::new(Latencies::new());

    // Flotta's model.
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for device in &flotta_devices {
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
    tokio::time::sleep(run.settings.duration.min(FLOTTA_WINDOW)).await;
    let flotta_io = relay.bytes() - bytes_before;
    let (flotta_elapsed, flotta_server) = run.close_window(&window);
    abort_all(tasks);
    // Their connections close with their clients.
    drop(flotta_devices);
    let flotta_requests = counters.requests.load(Ordering::Relaxed);
    let flotta_errors = counters.errors.load(Ordering::Relaxed);
    let flotta = Wire {
        bytes_per_device_hour: per_device_hour(flotta_io, count, flotta_elapsed),
        requests_per_device_hour: per_device_hour(flotta_requests, count, flotta_elapsed),
    };

    // Ours.
    let devices = light_devices(&relayed, &enrolment.devices, Http::Negotiated)?;
    let counters = Arc::new(Counters::default());
    let settings = Arc::new(std::sync::Mutex::new(None));
    let mut tasks = Vec::new();
    for device in &devices {
        let (device, counters, settings) = (device.clone(), counters.clone(), settings.clone());
        tasks.push(tokio::spawn(async move {
            let (version, idle) = match device
                .client
                .get_config(&device.device_id, None, None)
                .await
            {
                Ok(ConfigPoll::Config { etag, message }) => {
                    (Some(etag), IdleSettings::of(&message))
                }
                _ => (None, IdleSettings::default()),
            };
            if let Ok(mut seen) = settings.lock() {
                *seen = Some(idle);
            }
            // The heartbeat an agent sends when it starts.
            let content = heartbeat_content(version.as_deref().unwrap_or(""));
            let _ = device.client.heartbeat(&device.device_id, &content).await;
            counters.ready.fetch_add(1, Ordering::Relaxed);
            let heartbeats = async {
                // A fleet started over time: each device's silence has its own phase.
                tokio::time::sleep(random_offset(idle.max_silence)).await;
                loop {
                    Counters::bump(&counters.requests);
                    if device
                        .client
                        .heartbeat(&device.device_id, &content)
                        .await
                        .is_err()
                    {
                        Counters::bump(&counters.errors);
                    }
                    tokio::time::sleep(idle.max_silence).await;
                }
            };
            let polls = async {
                let mut version = version.clone();
                loop {
                    Counters::bump(&counters.requests);
                    match device
                        .client
                        .get_config(&device.device_id, version.as_deref(), Some(idle.long_poll))
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
            };
            tokio::join!(heartbeats, polls);
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
    let idle = settings.lock().ok().and_then(|s| *s).unwrap_or_default();
    let cpu_per_device_hour = |usage: &Option<crate::report::ServerUsage>, elapsed: Duration| {
        usage.as_ref().map_or(0.0, |u| {
            u.cpu_seconds * 3600.0 / (count.max(1) as f64 * elapsed.as_secs_f64().max(1e-9))
        })
    };
    let ours_cpu = cpu_per_device_hour(&server, elapsed);
    let flotta_cpu = cpu_per_device_hour(&flotta_server, flotta_elapsed);
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
    report
        .extra
        .insert("long_poll_s".into(), json!(idle.long_poll.as_secs()));
    report
        .extra
        .insert("max_silence_s".into(), json!(idle.max_silence.as_secs()));
    report
        .extra
        .insert("window_ours_s".into(), json!(elapsed.as_secs_f64()));
    report.extra.insert(
        "window_flotta_s".into(),
        json!(flotta_elapsed.as_secs_f64()),
    );
    report.extra.insert(
        "server_cpu_ms_per_device_hour".into(),
        json!(ours_cpu * 1000.0),
    );
    report.extra.insert(
        "flotta_server_cpu_ms_per_device_hour".into(),
        json!(flotta_cpu * 1000.0),
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

/// How a flotta-rs agent idles, from the heartbeat settings of its configuration.
#[derive(Debug, Clone, Copy)]
struct IdleSettings {
    long_poll: Duration,
    max_silence: Duration,
}

impl Default for IdleSettings {
    /// A server that names neither: a 60 s poll and a heartbeat every period.
    fn default() -> Self {
        Self {
            long_poll: IDLE_HEARTBEAT_PERIOD,
            max_silence: IDLE_HEARTBEAT_PERIOD,
        }
    }
}

impl IdleSettings {
    fn of(message: &flotta_core::wire::Message) -> Self {
        let heartbeat = message
            .content_as::<flotta_core::wire::DeviceConfigurationMessage>()
            .ok()
            .and_then(|c| c.configuration)
            .and_then(|c| c.heartbeat);
        let seconds = |value: Option<i64>, default: Duration| {
            value
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map_or(default, Duration::from_secs)
        };
        let defaults = Self::default();
        Self {
            long_poll: seconds(
                heartbeat.as_ref().and_then(|h| h.long_poll_seconds),
                defaults.long_poll,
            ),
            max_silence: seconds(
                heartbeat.as_ref().and_then(|h| h.max_silence_seconds),
                defaults.max_silence,
            ),
        }
    }
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
