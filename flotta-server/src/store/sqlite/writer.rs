//! The writer thread: one connection committing queued writes in shared
//! transactions (group commit), up to [`MAX_WRITE_BATCH`] writes per fsynced COMMIT,
//! each write in its own savepoint.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::rows::{compact_through, sql_error};
use super::versions::VersionIndex;
use crate::store::{StoreError, StoreResult, WatchEvent};

/// Most writes gathered into one transaction.
const MAX_WRITE_BATCH: usize = 512;

/// Writes that may wait for the writer thread before callers wait for room.
pub(super) const WRITE_QUEUE: usize = 8_192;

/// How a batch's transaction ended: committed, or why not (retryable, message).
type CommitOutcome = Result<(), (bool, String)>;

/// What a write does once its batch's fate is known: answers its caller.
type Completion = Box<dyn FnOnce(&CommitOutcome) + Send>;

/// One write waiting for the writer thread. It runs inside the batch's transaction
/// (or is told why the transaction is unusable) and returns its completion.
pub(super) type WriteJob =
    Box<dyn FnOnce(Result<&mut Batch<'_>, (bool, String)>) -> Completion + Send>;

/// The transaction several writes share, and what they produced for after COMMIT.
pub(super) struct Batch<'c> {
    pub(super) conn: &'c Connection,
    pub(super) events: Vec<Arc<WatchEvent>>,
}

impl Batch<'_> {
    /// Runs `f` in its own savepoint, so that its failure undoes only its own
    /// changes and events.
    pub(super) fn in_savepoint<T>(
        &mut self,
        operation: &'static str,
        f: impl FnOnce(&mut Self) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.conn
            .execute_batch("SAVEPOINT write")
            .map_err(sql_error(operation))?;
        let events_before = self.events.len();
        let result = f(self).and_then(|value| {
            self.conn
                .execute_batch("RELEASE write")
                .map_err(sql_error(operation))?;
            Ok(value)
        });
        if result.is_err() {
            self.events.truncate(events_before);
            // When even this fails the transaction is gone; the next write and the
            // commit see that and fail.
            let _checked_later = self.conn.execute_batch("ROLLBACK TO write; RELEASE write");
        }
        result
    }
}

/// The writer thread: owns the writer connection and commits queued writes in
/// batches, each write in a savepoint, so that concurrent writes share one fsync.
/// Callers are answered only after COMMIT. Ends when every store clone is gone.
pub(super) fn run_writer(
    conn: Connection,
    mut jobs: mpsc::Receiver<WriteJob>,
    versions: Arc<Mutex<VersionIndex>>,
    feed: broadcast::Sender<Arc<WatchEvent>>,
    event_retention: u64,
) {
    let mut writes_since_compaction = 0u64;
    let mut queued = Vec::with_capacity(MAX_WRITE_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        queued.push(first);
        while queued.len() < MAX_WRITE_BATCH {
            match jobs.try_recv() {
                Ok(job) => queued.push(job),
                Err(_) => break,
            }
        }
        let mut batch = Batch {
            conn: &conn,
            events: Vec::new(),
        };
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| outcome_error(&e));
        let mut completions: Vec<Completion> = Vec::with_capacity(queued.len());
        for job in queued.drain(..) {
            let usable = match &begun {
                Err(e) => Err(e.clone()),
                Ok(()) if conn.is_autocommit() => Err((
                    true,
                    "the shared transaction was rolled back by an earlier failure".to_owned(),
                )),
                Ok(()) => Ok(&mut batch),
            };
            // A panicking write answers its caller by dropping its channel.
            if let Ok(completion) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(usable)))
            {
                completions.push(completion);
            }
        }
        let outcome: CommitOutcome = match begun {
            Err(e) => Err(e),
            Ok(()) if conn.is_autocommit() => Err((
                true,
                "the shared transaction was rolled back by an earlier failure".to_owned(),
            )),
            Ok(()) => conn.execute_batch("COMMIT").map_err(|e| {
                let _already_rolled_back = conn.execute_batch("ROLLBACK");
                outcome_error(&e)
            }),
        };
        let events = std::mem::take(&mut batch.events);
        if outcome.is_ok() {
            if let Ok(mut index) = versions.lock() {
                for event in &events {
                    index.apply(event);
                }
            }
            // One thread publishes, so the feed is in resource-version order.
            for event in &events {
                let _no_watchers = feed.send(Arc::clone(event));
            }
        }
        for completion in completions {
            completion(&outcome);
        }
        if outcome.is_ok() {
            writes_since_compaction += events.len() as u64;
            let latest = events.last().map_or(0, |e| e.object.resource_version);
            if writes_since_compaction >= super::super::compaction_interval(event_retention)
                && latest > event_retention
            {
                writes_since_compaction = 0;
                // A failed compaction is retried after the next interval.
                let _retry_later = compact_through(&conn, latest - event_retention);
            }
        }
    }
}

fn outcome_error(error: &rusqlite::Error) -> (bool, String) {
    let retryable = matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    (retryable, error.to_string())
}

/// Queues a write for the writer thread and waits until the transaction holding
/// it has committed (or failed). `f` runs in its own savepoint.
pub(super) async fn queue_write<T, F>(
    jobs: &mpsc::Sender<WriteJob>,
    operation: &'static str,
    f: F,
) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Batch<'_>) -> StoreResult<T> + Send + 'static,
{
    let (answer, answered) = oneshot::channel::<StoreResult<T>>();
    let job: WriteJob = Box::new(move |batch| -> Completion {
        let result = match batch {
            Ok(batch) => batch.in_savepoint(operation, f),
            Err((retryable, message)) => Err(StoreError::backend(operation, retryable, message)),
        };
        match result {
            Ok(value) => Box::new(move |outcome: &CommitOutcome| {
                let answer_now = match outcome {
                    Ok(()) => Ok(value),
                    Err((retryable, message)) => Err(StoreError::backend(
                        operation,
                        *retryable,
                        format!("commit failed: {message}"),
                    )),
                };
                // A caller that stopped waiting needs no answer.
                let _gone = answer.send(answer_now);
            }),
            Err(error) => Box::new(move |_: &CommitOutcome| {
                let _gone = answer.send(Err(error));
            }),
        }
    });
    let stopped = || StoreError::backend(operation, false, "the SQLite writer thread stopped");
    jobs.send(job).await.map_err(|_| stopped())?;
    answered.await.map_err(|_| stopped())?
}
