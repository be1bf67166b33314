//! What a staged rollout looked like from the devices, and the check that no
//! device received the new revision before its batch was released.
//!
//! Batch membership is read from the server's `status.rollout.batches` (how many
//! targets each batch holds) over the targets in the order the rollout takes them:
//! by name (no device has the new revision when it starts). A batch's release is
//! bounded from below by what the simulator itself did: batch 0 cannot be released
//! before the workload change was sent, and batch `k` not before the heartbeat that
//! brought batch `k - 1` to its threshold (`required` devices reporting the new
//! revision) was sent. A device of batch `k` that received the revision earlier, or
//! earlier than the second the server recorded for the release
//! (`status.rollout.batchReleasedAt`), received it outside a released batch.

use std::time::Duration;

use serde::Serialize;

use super::device::DeviceTimes;
use crate::stats::{Latencies, LatencySummary};

/// A batch as the server's rollout record described it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSeen {
    /// Devices in the batch (`batches[i].targeted`).
    pub targeted: u32,
    /// Devices that must run the revision for the next batch (`required`).
    pub required: u32,
    /// When the simulator first saw it `released`, after the tracker's base.
    pub released_seen: Option<Duration>,
    /// `batchReleasedAt` (Unix seconds) while it was the current batch.
    pub released_at_unix: Option<i64>,
}

/// Figures of one batch; times in seconds after the workload change was sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchFigures {
    /// Index, from 0.
    pub batch: usize,
    /// Devices in it.
    pub devices: usize,
    /// Devices that had to succeed before the next batch.
    pub required: u32,
    /// Earliest the server could release it (see the module documentation).
    pub eligible_s: Option<f64>,
    /// When the simulator saw it released in `status.rollout.batches`.
    pub released_s: Option<f64>,
    /// Release (as seen) to each device receiving the revision; a device faster
    /// than the simulator's watch counts as 0.
    pub receive_after_release: LatencySummary,
    /// Devices that received it before the simulator saw the release.
    pub received_before_seen_release: usize,
    /// Eligibility to each device receiving the revision (includes the server's
    /// coalescing of changes).
    pub receive_after_eligible: LatencySummary,
    /// When the last device received it.
    pub all_received_s: Option<f64>,
    /// When the last device's heartbeat reporting it was acknowledged.
    pub all_reported_s: Option<f64>,
    /// Release (as seen) to the last report: the batch's time.
    pub duration_s: Option<f64>,
}

/// The rollout seen from the devices.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Per batch.
    pub batches: Vec<BatchFigures>,
    /// Release (as seen) to receiving, over every device.
    pub receive_after_release: LatencySummary,
    /// Devices that received the revision outside a released batch, each said.
    pub violations: Vec<String>,
    /// Devices that never reported running the revision.
    pub missing: Vec<String>,
}

fn seconds(at: Duration, since: Duration) -> f64 {
    at.as_secs_f64() - since.as_secs_f64()
}

/// Analyses a rollout: `devices` (name, times) in any order, `batches` as the server
/// recorded them, `changed` when the workload change was sent and `base_unix` the
/// wall clock (Unix seconds) at the tracker's base.
pub fn analyse(
    devices: &[(String, DeviceTimes)],
    batches: &[BatchSeen],
    changed: Duration,
    base_unix: f64,
) -> Analysis {
    let mut analysis = Analysis::default();
    let mut ordered: Vec<&(String, DeviceTimes)> = devices.iter().collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    let covered: usize = batches.iter().map(|b| b.targeted as usize).sum();
    if covered != ordered.len() {
        analysis.violations.push(format!(
            "the server's batches hold {covered} devices, the fleet has {}",
            ordered.len()
        ));
    }
    let overall = Latencies::new();
    let mut start = 0;
    // Earliest release of the batch being looked at.
    let mut eligible = Some(changed);
    for (index, seen) in batches.iter().enumerate() {
        let end = (start + seen.targeted as usize).min(ordered.len());
        let members = ordered.get(start..end).unwrap_or_default();
        start = end;
        let after_release = Latencies::new();
        let after_eligible = Latencies::new();
        let mut figures = BatchFigures {
            batch: index,
            devices: members.len(),
            required: seen.required,
            eligible_s: eligible.map(|at| seconds(at, changed)),
            released_s: seen.released_seen.map(|at| seconds(at, changed)),
            ..BatchFigures::default()
        };
        for (name, times) in members {
            let Some(received) = times.received else {
                continue;
            };
            match eligible {
                Some(at) if received >= at => after_eligible.record(received - at),
                Some(at) => analysis.violations.push(format!(
                    "device {name} of batch {index} received the new revision {:.3} s after \
                     the change, before its batch could be released (at {:.3} s at the earliest{})",
                    seconds(received, changed),
                    seconds(at, changed),
                    if index == 0 {
                        ": the change was sent then".to_owned()
                    } else {
                        format!(": batch {} reached its threshold then", index - 1)
                    }
                )),
                None => analysis.violations.push(format!(
                    "device {name} of batch {index} received the new revision {:.3} s after \
                     the change, but batch {} never reached its threshold of {} devices",
                    seconds(received, changed),
                    index.saturating_sub(1),
                    batches
                        .get(index.saturating_sub(1))
                        .map_or(0, |b| b.required)
                )),
            }
            if let Some(released_at) = seen.released_at_unix {
                let wall = base_unix + received.as_secs_f64();
                // 10 ms for the two clocks read at the base (monotonic, wall).
                if (wall + 0.01).floor() < released_at as f64 {
                    analysis.violations.push(format!(
                        "device {name} of batch {index} received the new revision at Unix time \
                         {wall:.3}, before the server released the batch (batchReleasedAt {released_at})"
                    ));
                }
            }
            match seen.released_seen {
                Some(released) => {
                    if received < released {
                        figures.received_before_seen_release += 1;
                    }
                    let latency = received.saturating_sub(released);
                    after_release.record(latency);
                    overall.record(latency);
                }
                None => analysis.violations.push(format!(
                    "device {name} of batch {index} received the new revision, but the server's \
                     record never showed the batch released"
                )),
            }
        }
        let last = |pick: fn(&DeviceTimes) -> Option<Duration>| {
            members
                .iter()
                .map(|(_, times)| pick(times))
                .collect::<Option<Vec<Duration>>>()
                .and_then(|times| times.into_iter().max())
        };
        let all_received = last(|t| t.received);
        let all_reported = last(|t| t.acknowledged);
        figures.all_received_s = all_received.map(|at| seconds(at, changed));
        figures.all_reported_s = all_reported.map(|at| seconds(at, changed));
        figures.duration_s = all_reported
            .zip(seen.released_seen)
            .map(|(done, released)| seconds(done, released));
        figures.receive_after_release = after_release.summary();
        figures.receive_after_eligible = after_eligible.summary();
        analysis.batches.push(figures);
        // The next batch: once `required` of this one reported running it.
        let mut reports: Vec<Duration> = members.iter().filter_map(|(_, t)| t.reported).collect();
        reports.sort();
        eligible = match seen.required as usize {
            0 => eligible,
            required => reports.get(required - 1).copied(),
        };
    }
    analysis.missing = ordered
        .iter()
        .filter(|(_, times)| times.acknowledged.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    analysis.receive_after_release = overall.summary();
    analysis
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn device(name: &str, received: u64, reported: u64) -> (String, DeviceTimes) {
        (
            name.to_owned(),
            DeviceTimes {
                received: Some(ms(received)),
                reported: Some(ms(reported)),
                acknowledged: Some(ms(reported + 5)),
            },
        )
    }

    fn batch(targeted: u32, required: u32, released_seen: u64) -> BatchSeen {
        BatchSeen {
            targeted,
            required,
            released_seen: Some(ms(released_seen)),
            released_at_unix: None,
        }
    }

    #[test]
    fn an_orderly_rollout_has_figures_and_no_violation() {
        // Change sent at 100 ms; batch 0 = a, b; batch 1 = c, d (by name).
        let devices = [
            device("d", 1_620, 1_630),
            device("a", 610, 620),
            device("c", 1_600, 1_610),
            device("b", 640, 700),
        ];
        let batches = [batch(2, 2, 600), batch(2, 2, 1_590)];
        let analysis = analyse(&devices, &batches, ms(100), 1_000.0);
        assert!(analysis.violations.is_empty(), "{:?}", analysis.violations);
        assert!(analysis.missing.is_empty());
        let first = &analysis.batches[0];
        assert_eq!((first.devices, first.required), (2, 2));
        assert_eq!(first.eligible_s, Some(0.0));
        assert!((first.released_s.expect("released") - 0.5).abs() < 1e-9);
        assert!((first.duration_s.expect("duration") - 0.105).abs() < 1e-9);
        let second = &analysis.batches[1];
        // Eligible when b's report was sent (700 ms), the second of two required.
        assert!((second.eligible_s.expect("eligible") - 0.6).abs() < 1e-9);
        assert_eq!(second.receive_after_release.count, 2);
        assert_eq!(analysis.receive_after_release.count, 4);
    }

    #[test]
    fn a_device_served_before_its_batch_could_be_released_is_a_violation() {
        // c (batch 1) received the revision before b's report completed batch 0.
        let devices = [
            device("a", 610, 620),
            device("b", 640, 700),
            device("c", 650, 660),
            device("d", 1_620, 1_630),
        ];
        let batches = [batch(2, 2, 600), batch(2, 2, 640)];
        let analysis = analyse(&devices, &batches, ms(100), 1_000.0);
        assert_eq!(analysis.violations.len(), 1, "{:?}", analysis.violations);
        assert!(
            analysis.violations[0].contains("device c of batch 1")
                && analysis.violations[0].contains("batch 0 reached its threshold"),
            "{}",
            analysis.violations[0]
        );
    }

    #[test]
    fn the_servers_release_second_and_batch_sizes_are_checked() {
        let devices = [device("a", 610, 620), device("b", 640, 700)];
        let mut first = batch(2, 2, 600);
        // base 1,000.0 s: a received at 1,000.61 s, before the server's 1,001.
        first.released_at_unix = Some(1_001);
        let analysis = analyse(&devices, &[first], ms(100), 1_000.0);
        assert!(
            analysis
                .violations
                .iter()
                .any(|v| v.contains("batchReleasedAt 1001")),
            "{:?}",
            analysis.violations
        );
        let analysis = analyse(&devices, &[batch(3, 3, 600)], ms(100), 1_000.0);
        assert!(
            analysis.violations[0].contains("hold 3 devices, the fleet has 2"),
            "{:?}",
            analysis.violations
        );
    }

    #[test]
    fn a_batch_after_one_that_never_reached_its_threshold_must_stay_empty() {
        let mut devices = vec![
            device("a", 610, 620),
            ("b".to_owned(), DeviceTimes::default()),
        ];
        devices.push(device("c", 900, 910));
        let batches = [batch(2, 2, 600), batch(1, 1, 890)];
        let analysis = analyse(&devices, &batches, ms(100), 1_000.0);
        assert!(
            analysis.violations[0].contains("batch 0 never reached its threshold of 2"),
            "{:?}",
            analysis.violations
        );
        assert_eq!(analysis.missing, ["b"]);
    }
}
