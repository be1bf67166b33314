//! Latency histograms and the rates the reports give.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency recorded exactly: one hour, in microseconds. Larger ones are
/// clamped to it (and still counted).
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency distribution shared by many device tasks.
#[derive(Debug)]
pub struct Latencies {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty distribution (1 µs to 1 h, three significant digits).
    pub fn new() -> Self {
        // Constant bounds and precision within hdrhistogram's limits: cannot fail.
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .expect("constant histogram bounds are valid");
        Self {
            histogram: Mutex::new(histogram),
        }
    }

    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        let mut histogram = self
            .histogram
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        histogram.saturating_record(micros);
    }

    /// Forgets everything recorded (after a warm-up).
    pub fn reset(&self) {
        self.histogram
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reset();
    }

    /// Percentiles of what was recorded.
    pub fn summary(&self) -> LatencySummary {
        let histogram = self
            .histogram
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p95_ms: ms(histogram.value_at_quantile(0.95)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Latencies recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Events per second over `elapsed`; zero for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    count as f64 / seconds
}

/// `total` (bytes or requests) seen from `devices` over `elapsed`, scaled to one
/// device and one hour; zero when there is no device or no time.
pub fn per_device_hour(total: u64, devices: usize, elapsed: Duration) -> f64 {
    if devices == 0 {
        return 0.0;
    }
    per_second(total, elapsed) * 3600.0 / devices as f64
}

/// `value / baseline`, or zero when the baseline is zero.
pub fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        return 0.0;
    }
    value / baseline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let latencies = Latencies::new();
        for ms in 1..=1000u64 {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 1000);
        // Three significant digits: within 0.1 % of the exact rank.
        assert!((summary.p50_ms - 500.0).abs() <= 0.5, "{summary:?}");
        assert!((summary.p95_ms - 950.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.p99_ms - 990.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.max_ms - 1000.0).abs() <= 1.0, "{summary:?}");
    }

    #[test]
    fn a_tail_shows_in_p99_not_in_p50() {
        let latencies = Latencies::new();
        for _ in 0..980 {
            latencies.record(Duration::from_millis(2));
        }
        for _ in 0..20 {
            latencies.record(Duration::from_secs(3));
        }
        let summary = latencies.summary();
        assert!((summary.p50_ms - 2.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p95_ms - 2.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p99_ms - 3000.0).abs() <= 3.0, "{summary:?}");
    }

    #[test]
    fn empty_and_reset_distributions_report_zero() {
        let latencies = Latencies::new();
        assert_eq!(latencies.summary(), LatencySummary::default());
        latencies.record(Duration::from_millis(7));
        assert_eq!(latencies.summary().count, 1);
        latencies.reset();
        assert_eq!(latencies.summary(), LatencySummary::default());
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let latencies = Latencies::new();
        latencies.record(Duration::ZERO);
        latencies.record(Duration::from_secs(10 * 3600));
        let summary = latencies.summary();
        assert_eq!(summary.count, 2);
        assert!(summary.max_ms >= 3_599_000.0, "{summary:?}");
    }

    #[test]
    fn rates_scale_to_seconds_and_device_hours() {
        assert_eq!(per_second(500, Duration::from_secs(2)), 250.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        // 100 devices, 1,200 requests in 60 s: 12 per device per minute, 720 per hour.
        assert_eq!(per_device_hour(1200, 100, Duration::from_secs(60)), 720.0);
        assert_eq!(per_device_hour(1200, 0, Duration::from_secs(60)), 0.0);
        assert_eq!(ratio(5.0, 20.0), 0.25);
        assert_eq!(ratio(5.0, 0.0), 0.0);
    }
}
