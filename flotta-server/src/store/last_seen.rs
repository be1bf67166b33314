//! Group commit of heartbeat last-seen times: concurrent heartbeats are gathered
//! into one [`Store::record_last_seen`] transaction while the previous one commits.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{LastSeen, Store, StoreError, StoreResult};

/// What a committed entry learnt of its device: its resource version (`None`: no
/// such device), or nothing when the store cannot tell
/// ([`Store::record_last_seen_versions`]).
type Checked = Option<Option<u64>>;

type Waiter = oneshot::Sender<Result<Checked, (bool, String)>>;

/// How many full batches may wait in a [`LastSeenRecorder`]'s queue.
const QUEUE_BATCHES: usize = 16;

/// Writes heartbeat times in batches and tells each caller when its time is durable.
///
/// Each [`LastSeenRecorder::record`] call waits for the transaction that holds its
/// entry: while one batch commits, the next one fills up, so batch size follows the
/// load with no fixed timer and an acknowledged heartbeat is never lost. Dropping
/// every clone stops the background writer once pending entries are written.
#[derive(Clone, Debug)]
pub struct LastSeenRecorder {
    queue: mpsc::Sender<(LastSeen, Waiter)>,
    writer: Arc<JoinHandle<()>>,
}

impl LastSeenRecorder {
    /// Starts the background writer (on the current tokio runtime); one batch holds
    /// at most `max_batch` entries. Callers wait for queue space once
    /// 16 batches are waiting, so an overloaded database slows
    /// heartbeats down instead of filling memory.
    pub fn start(store: Arc<dyn Store>, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (queue, mut pending) =
            mpsc::channel::<(LastSeen, Waiter)>(max_batch.saturating_mul(QUEUE_BATCHES));
        let writer = tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let mut entries = vec![first.0];
                let mut waiters = vec![first.1];
                while entries.len() < max_batch {
                    match pending.try_recv() {
                        Ok((entry, waiter)) => {
                            entries.push(entry);
                            waiters.push(waiter);
                        }
                        Err(_) => break,
                    }
                }
                let outcome = store
                    .record_last_seen_versions(&entries)
                    .await
                    .map_err(|e| (e.is_retryable(), e.to_string()));
                for (index, waiter) in waiters.into_iter().enumerate() {
                    let answer = match &outcome {
                        Ok(versions) => {
                            Ok(versions.as_ref().map(|v| v.get(index).copied().flatten()))
                        }
                        Err(e) => Err(e.clone()),
                    };
                    // A caller that stopped waiting needs no answer.
                    let _gone = waiter.send(answer);
                }
            }
        });
        LastSeenRecorder {
            queue,
            writer: Arc::new(writer),
        }
    }

    /// Records one heartbeat and returns once it is committed.
    pub async fn record(&self, seen: LastSeen) -> StoreResult<()> {
        self.record_checked(seen).await.map(|_| ())
    }

    /// [`LastSeenRecorder::record`], also telling the device's resource version as
    /// of the commit when the store can tell at no extra cost (`Some(None)`: the
    /// device does not exist, and nothing was stamped for it; `None`: the store
    /// cannot tell).
    pub async fn record_checked(&self, seen: LastSeen) -> StoreResult<Option<Option<u64>>> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send((seen, done))
            .await
            .map_err(|_| StoreError::backend("record_last_seen", false, "recorder stopped"))?;
        match answer.await {
            Ok(Ok(checked)) => Ok(checked),
            Ok(Err((retryable, message))) => {
                Err(StoreError::backend("record_last_seen", retryable, message))
            }
            Err(_) => Err(StoreError::backend(
                "record_last_seen",
                false,
                "recorder stopped",
            )),
        }
    }

    /// Whether the background writer is still running.
    pub fn is_running(&self) -> bool {
        !self.writer.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use time::OffsetDateTime;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_heartbeats_are_all_durable_when_acknowledged() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("db")).expect("open"));
        let recorder = LastSeenRecorder::start(Arc::clone(&store), 100);
        let at = OffsetDateTime::from_unix_timestamp(1_000).expect("time");
        let mut tasks = Vec::new();
        for i in 0..300 {
            let recorder = recorder.clone();
            tasks.push(tokio::spawn(async move {
                recorder
                    .record(LastSeen {
                        namespace: "ns".into(),
                        device: format!("d{i:03}"),
                        seen_at: at,
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("recorded");
        }
        assert!(recorder.is_running());
        let all = store.last_seen_all(Some("ns")).await.expect("read");
        assert_eq!(all.len(), 300);
        assert!(all.iter().all(|s| s.seen_at == at));
    }
}
