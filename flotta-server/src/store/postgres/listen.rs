//! The `LISTEN` side of change notification: one connection per store waits for
//! `NOTIFY` and publishes new change-log entries to the store's watchers, in order.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use super::rows::{CHANNEL, parse_event, pg_error, pool_error, to_i64, to_u64};
use crate::store::{ResourceKind, StoreError, StoreResult, WatchEvent};

/// Change-log entries read per query by the notification listener.
const CATCH_UP_BATCH: i64 = 1_000;
/// Reads new change-log entries of every kind and publishes them in order.
async fn catch_up(
    pool: &Pool,
    feed: &broadcast::Sender<Arc<WatchEvent>>,
    last: &mut u64,
) -> StoreResult<()> {
    let client = pool.get().await.map_err(pool_error("watch"))?;
    loop {
        let rows = client
            .query(
                "SELECT resource_version, kind, event_type, body FROM events \
                 WHERE resource_version > $1 ORDER BY resource_version LIMIT $2",
                &[&to_i64(*last), &CATCH_UP_BATCH],
            )
            .await
            .map_err(pg_error("watch"))?;
        let count = rows.len();
        for row in rows {
            let rv = to_u64(row.get(0), "events.resource_version")?;
            let kind_text: &str = row.get(1);
            let kind =
                kind_text
                    .parse::<ResourceKind>()
                    .map_err(|e| StoreError::CorruptRecord {
                        key: format!("events {rv}"),
                        reason: e.to_string(),
                    })?;
            let event = parse_event(kind, row.get(2), row.get(3))?;
            *last = rv;
            let _no_watchers = feed.send(Arc::new(event));
        }
        if i64::try_from(count).unwrap_or(i64::MAX) < CATCH_UP_BATCH {
            return Ok(());
        }
    }
}

/// Keeps one `LISTEN` connection open (reconnecting after failures) and publishes
/// change-log entries when notified, and every `poll_interval` regardless.
pub(super) async fn listen_for_changes(
    config: tokio_postgres::Config,
    pool: Pool,
    feed: broadcast::Sender<Arc<WatchEvent>>,
    mut last: u64,
    poll_interval: Duration,
) {
    loop {
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let (notified_tx, mut notified) = mpsc::unbounded_channel::<()>();
            let driver = tokio::spawn(async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if matches!(message, AsyncMessage::Notification(_))
                        && notified_tx.send(()).is_err()
                    {
                        break;
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                // Whatever committed while no LISTEN was active is read now.
                let _retry_on_next_wake = catch_up(&pool, &feed, &mut last).await;
                loop {
                    tokio::select! {
                        wake = notified.recv() => {
                            if wake.is_none() {
                                break;
                            }
                            while notified.try_recv().is_ok() {}
                        }
                        () = tokio::time::sleep(poll_interval) => {}
                    }
                    let _retry_on_next_wake = catch_up(&pool, &feed, &mut last).await;
                }
            }
            driver.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
