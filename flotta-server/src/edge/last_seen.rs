//! Heartbeat times, buffered in memory and written to the store's last-seen table in
//! batches, so that a heartbeat never rewrites the device row.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use super::EdgeState;
use crate::store::{LastSeen, Store, StoreError};

/// The latest heartbeat time of each device since the last flush.
#[derive(Debug, Default)]
pub(super) struct LastSeenBuffer {
    pending: Mutex<HashMap<(String, String), OffsetDateTime>>,
}

impl LastSeenBuffer {
    /// Notes that `device` in `namespace` was heard from at `seen_at`.
    pub(super) fn record(&self, namespace: &str, device: &str, seen_at: OffsetDateTime) {
        let mut pending = match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let slot = pending
            .entry((namespace.to_owned(), device.to_owned()))
            .or_insert(seen_at);
        if *slot < seen_at {
            *slot = seen_at;
        }
    }

    /// Writes everything buffered in one batch. On failure the entries go back into
    /// the buffer (unless newer ones arrived meanwhile) for the next flush.
    pub(super) async fn flush(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let taken = {
            let mut pending = match self.pending.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::take(&mut *pending)
        };
        if taken.is_empty() {
            return Ok(0);
        }
        let batch: Vec<LastSeen> = taken
            .iter()
            .map(|((namespace, device), seen_at)| LastSeen {
                namespace: namespace.clone(),
                device: device.clone(),
                seen_at: *seen_at,
            })
            .collect();
        match store.record_last_seen(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                for ((namespace, device), seen_at) in taken {
                    self.record(&namespace, &device, seen_at);
                }
                Err(e)
            }
        }
    }
}

/// Flushes the buffer every flush interval, and once more at shutdown.
pub(super) fn spawn_flusher(state: EdgeState) -> tokio::task::JoinHandle<()> {
    let mut shutdown = state.shutdown_signal();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(state.options().last_seen_flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    // A failed batch stays buffered and is retried on the next tick.
                    let _ = state.flush().await;
                }
                _ = super::stopped(&mut shutdown) => break,
            }
        }
        let _ = state.flush().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_time_per_device() {
        let buffer = LastSeenBuffer::default();
        let early = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(10);
        let late = early + time::Duration::seconds(5);
        buffer.record("ns", "a", late);
        buffer.record("ns", "a", early);
        buffer.record("ns", "b", early);
        let pending = buffer.pending.lock().expect("lock");
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.get(&("ns".into(), "a".into())), Some(&late));
    }
}
