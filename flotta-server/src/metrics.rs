//! Server metrics in the Prometheus text exposition format, kept by hand: a few
//! counters, gauges and one histogram do not justify a metrics framework.
//!
//! Request counters and the latency histogram are kept as requests are answered;
//! the fleet gauges ([`FleetGauges`]) are computed from the store when scraped.
//! Every series is described in `docs/server.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::store::{ListOptions, ResourceKind, Store, StoreError};

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Request counts per (listener, method, status code), request latency per
/// (listener, method), and live watch streams.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, RequestStats>>,
    latency: Mutex<BTreeMap<(&'static str, String), Histogram>>,
    active_watches: AtomicI64,
    leadership: std::sync::OnceLock<crate::leader::Leadership>,
}

/// A latency histogram: counts per bucket of [`LATENCY_BUCKETS`] (not cumulative
/// here; rendered cumulative), total count and sum.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| seconds <= *le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RequestKey {
    listener: &'static str,
    method: String,
    code: u16,
}

#[derive(Debug, Default, Clone, Copy)]
struct RequestStats {
    count: u64,
    seconds: f64,
}

/// Keeps the active-watch gauge up while alive.
#[derive(Debug)]
pub struct WatchGuard<'a>(&'a Metrics);

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        self.0.active_watches.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one answered request.
    pub fn record_request(
        &self,
        listener: &'static str,
        method: &str,
        code: u16,
        elapsed: Duration,
    ) {
        // Only standard methods become label values, so clients cannot grow the map.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "OTHER",
        };
        let key = RequestKey {
            listener,
            method: method.to_owned(),
            code,
        };
        if let Ok(mut requests) = self.requests.lock() {
            let stats = requests.entry(key).or_default();
            stats.count += 1;
            stats.seconds += elapsed.as_secs_f64();
        }
        if let Ok(mut latency) = self.latency.lock() {
            latency
                .entry((listener, method.to_owned()))
                .or_default()
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a watch stream as active until the guard is dropped.
    pub fn watch_started(&self) -> WatchGuard<'_> {
        self.active_watches.fetch_add(1, Ordering::Relaxed);
        WatchGuard(self)
    }

    /// Reports this replica's leadership ([`crate::leader`]) as
    /// `flotta_server_leader`; set once, at start.
    pub fn set_leadership(&self, leadership: crate::leader::Leadership) {
        let _ = self.leadership.set(leadership);
    }

    /// Number of watch streams currently open.
    pub fn active_watches(&self) -> i64 {
        self.active_watches.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let requests = self.requests.lock().map(|r| r.clone()).unwrap_or_default();
        out.push_str(
            "# HELP flotta_http_requests_total HTTP requests answered, by listener, method and status code.\n# TYPE flotta_http_requests_total counter\n",
        );
        for (key, stats) in &requests {
            let _ = writeln!(
                out,
                "flotta_http_requests_total{{listener=\"{}\",method=\"{}\",code=\"{}\"}} {}",
                key.listener, key.method, key.code, stats.count
            );
        }
        out.push_str(
            "# HELP flotta_http_request_duration_seconds_sum Total time spent answering requests.\n# TYPE flotta_http_request_duration_seconds_sum counter\n",
        );
        for (key, stats) in &requests {
            let _ = writeln!(
                out,
                "flotta_http_request_duration_seconds_sum{{listener=\"{}\",method=\"{}\",code=\"{}\"}} {}",
                key.listener, key.method, key.code, stats.seconds
            );
        }
        let latency = self.latency.lock().map(|l| l.clone()).unwrap_or_default();
        out.push_str(
            "# HELP flotta_http_request_latency_seconds Time to answer a request, by listener and method (long-polls included).\n# TYPE flotta_http_request_latency_seconds histogram\n",
        );
        for ((listener, method), histogram) in &latency {
            let mut cumulative = 0;
            for (le, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "flotta_http_request_latency_seconds_bucket{{listener=\"{listener}\",method=\"{method}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "flotta_http_request_latency_seconds_bucket{{listener=\"{listener}\",method=\"{method}\",le=\"+Inf\"}} {}\nflotta_http_request_latency_seconds_sum{{listener=\"{listener}\",method=\"{method}\"}} {}\nflotta_http_request_latency_seconds_count{{listener=\"{listener}\",method=\"{method}\"}} {}",
                histogram.count, histogram.sum, histogram.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP flotta_api_active_watches Watch streams currently open.\n# TYPE flotta_api_active_watches gauge\nflotta_api_active_watches {}",
            self.active_watches()
        );
        if let Some(leadership) = self.leadership.get() {
            let _ = writeln!(
                out,
                "# HELP flotta_server_leader 1 while this replica holds the leader lease and takes the rollout decisions.\n# TYPE flotta_server_leader gauge\nflotta_server_leader {}",
                u8::from(leadership.is_leader())
            );
        }
        out
    }
}

/// Gauges a fleet operator alerts on, computed from the store at scrape time.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetGauges {
    /// Devices.
    pub devices: u64,
    /// Devices by condition type and status (`True`, `False`, `Unknown`), from the
    /// conditions the server writes (`Online`, `Updated`, `Degraded`, `SpecValid`,
    /// `MultipleOwners`).
    pub devices_by_condition: BTreeMap<(String, String), u64>,
    /// Enrolment requests neither approved nor denied.
    pub pending_enrolments: u64,
    /// Devices whose newest certificate has expired or expires within each window of
    /// [`CERTIFICATE_EXPIRY_WINDOWS`] (cumulative: a device counted at 7 days is
    /// counted at 30 too), by the window's label.
    pub certificates_expiring: BTreeMap<&'static str, u64>,
    /// Target devices per (namespace, workload, state): `current`, `older`,
    /// `deploying`, `failed`, `unknown`, from each workload's `status.devices`.
    pub workload_devices: BTreeMap<(String, String, &'static str), i64>,
}

/// Windows of [`FleetGauges::certificates_expiring`]: label and days ahead of now.
pub const CERTIFICATE_EXPIRY_WINDOWS: [(&str, i64); 3] = [("expired", 0), ("7d", 7), ("30d", 30)];

/// States of [`FleetGauges::workload_devices`], as named in `status.devices`.
const WORKLOAD_STATES: [&str; 5] = ["current", "older", "deploying", "failed", "unknown"];

/// Escapes a label value for the text format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl FleetGauges {
    /// Reads the gauges from `store`.
    pub async fn read(store: &dyn Store) -> Result<Self, StoreError> {
        let mut gauges = Self::default();
        for (window, _) in CERTIFICATE_EXPIRY_WINDOWS {
            gauges.certificates_expiring.insert(window, 0);
        }
        let now = OffsetDateTime::now_utc();
        let all = ListOptions::default();
        for device in store
            .list(ResourceKind::EdgeDevice, None, &all)
            .await?
            .items
        {
            gauges.devices += 1;
            let not_after = device
                .body
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(crate::edge::CERTIFICATE_NOT_AFTER_ANNOTATION))
                .and_then(Value::as_str)
                .and_then(flotta_core::timestamp::parse_rfc3339);
            if let Some(not_after) = not_after {
                for (window, days) in CERTIFICATE_EXPIRY_WINDOWS {
                    if not_after <= now + time::Duration::days(days) {
                        *gauges.certificates_expiring.entry(window).or_default() += 1;
                    }
                }
            }
            let conditions = device
                .body
                .pointer("/status/conditions")
                .and_then(Value::as_array);
            for condition in conditions.into_iter().flatten() {
                let text = |k: &str| condition.get(k).and_then(Value::as_str).unwrap_or("");
                *gauges
                    .devices_by_condition
                    .entry((text("type").to_owned(), text("status").to_owned()))
                    .or_default() += 1;
            }
        }
        for request in store
            .list(ResourceKind::EdgeDeviceSignedRequest, None, &all)
            .await?
            .items
        {
            let approved = request.body.pointer("/spec/approved") == Some(&Value::Bool(true));
            let declined = request
                .body
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        matches!(
                            c.get("type").and_then(Value::as_str),
                            Some("declined" | "denied")
                        )
                    })
                });
            if !approved && !declined {
                gauges.pending_enrolments += 1;
            }
        }
        for workload in store
            .list(ResourceKind::EdgeWorkload, None, &all)
            .await?
            .items
        {
            let Some(devices) = workload.body.pointer("/status/devices") else {
                continue;
            };
            for state in WORKLOAD_STATES {
                let count = devices.get(state).and_then(Value::as_i64).unwrap_or(0);
                gauges.workload_devices.insert(
                    (workload.namespace.clone(), workload.name.clone(), state),
                    count,
                );
            }
        }
        Ok(gauges)
    }

    /// Appends the gauges in the text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP flotta_devices Registered devices.\n# TYPE flotta_devices gauge\nflotta_devices {}",
            self.devices
        );
        out.push_str(
            "# HELP flotta_devices_by_condition Devices by condition type and status.\n# TYPE flotta_devices_by_condition gauge\n",
        );
        for ((type_, status), count) in &self.devices_by_condition {
            let _ = writeln!(
                out,
                "flotta_devices_by_condition{{condition=\"{}\",status=\"{}\"}} {count}",
                label(type_),
                label(status)
            );
        }
        let _ = writeln!(
            out,
            "# HELP flotta_enrolments_pending Enrolment requests waiting for an operator's approval.\n# TYPE flotta_enrolments_pending gauge\nflotta_enrolments_pending {}",
            self.pending_enrolments
        );
        out.push_str(
            "# HELP flotta_device_certificates_expiring Devices whose newest certificate has expired (within=\"expired\") or expires within 7 or 30 days.\n# TYPE flotta_device_certificates_expiring gauge\n",
        );
        for (window, count) in &self.certificates_expiring {
            let _ = writeln!(
                out,
                "flotta_device_certificates_expiring{{within=\"{window}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP flotta_workload_devices Target devices of each workload by state (current, older, deploying, failed, unknown revision).\n# TYPE flotta_workload_devices gauge\n",
        );
        for ((namespace, workload, state), count) in &self.workload_devices {
            let _ = writeln!(
                out,
                "flotta_workload_devices{{namespace=\"{}\",workload=\"{}\",state=\"{state}\"}} {count}",
                label(namespace),
                label(workload)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauge() {
        let metrics = Metrics::new();
        metrics.record_request("api", "GET", 200, Duration::from_millis(5));
        metrics.record_request("api", "GET", 200, Duration::from_millis(5));
        metrics.record_request("api", "BREW", 405, Duration::from_millis(1));
        let guard = metrics.watch_started();
        let text = metrics.render();
        assert!(text.contains(
            "flotta_http_requests_total{listener=\"api\",method=\"GET\",code=\"200\"} 2\n"
        ));
        assert!(text.contains("method=\"OTHER\",code=\"405\"} 1\n"));
        assert!(text.contains("flotta_api_active_watches 1\n"));
        drop(guard);
        assert_eq!(metrics.active_watches(), 0);
    }

    #[tokio::test]
    async fn certificates_are_counted_by_the_window_they_expire_in() {
        use std::sync::Arc;

        use crate::store::SqliteStore;
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("db.sqlite")).expect("store"));
        let now = OffsetDateTime::now_utc();
        let devices = [
            ("gone", Some(now - time::Duration::days(1))),
            ("soon", Some(now + time::Duration::days(3))),
            ("month", Some(now + time::Duration::days(20))),
            ("fresh", Some(now + time::Duration::days(300))),
            ("unrecorded", None),
        ];
        for (name, not_after) in devices {
            let mut annotations = serde_json::Map::new();
            if let Some(at) = not_after {
                annotations.insert(
                    crate::edge::CERTIFICATE_NOT_AFTER_ANNOTATION.into(),
                    Value::String(flotta_core::timestamp::rfc3339_seconds(at)),
                );
            }
            let body = serde_json::json!({
                "apiVersion": flotta_core::model::API_VERSION,
                "kind": "EdgeDevice",
                "metadata": {"name": name, "namespace": "default", "annotations": annotations},
                "spec": {},
            });
            store
                .create(ResourceKind::EdgeDevice, "default", name, body)
                .await
                .expect("device");
        }
        let gauges = FleetGauges::read(store.as_ref()).await.expect("gauges");
        assert_eq!(gauges.devices, 5);
        let counts: Vec<(&str, u64)> = CERTIFICATE_EXPIRY_WINDOWS
            .iter()
            .map(|(window, _)| (*window, gauges.certificates_expiring[window]))
            .collect();
        assert_eq!(counts, [("expired", 1), ("7d", 2), ("30d", 3)]);
        let mut text = String::new();
        gauges.render(&mut text);
        assert!(
            text.contains("flotta_device_certificates_expiring{within=\"7d\"} 2\n"),
            "{text}"
        );
    }
}
