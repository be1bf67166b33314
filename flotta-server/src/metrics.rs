//! Server metrics in the Prometheus text exposition format, kept by hand: a few
//! counters and gauges do not justify a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Request counts and durations per (listener, method, status code), and live
/// watch streams.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, RequestStats>>,
    active_watches: AtomicI64,
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
    }

    /// Counts a watch stream as active until the guard is dropped.
    pub fn watch_started(&self) -> WatchGuard<'_> {
        self.active_watches.fetch_add(1, Ordering::Relaxed);
        WatchGuard(self)
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
        let _ = writeln!(
            out,
            "# HELP flotta_api_active_watches Watch streams currently open.\n# TYPE flotta_api_active_watches gauge\nflotta_api_active_watches {}",
            self.active_watches()
        );
        out
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
}
