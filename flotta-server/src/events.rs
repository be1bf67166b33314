//! Records Kubernetes-style `Event`s and keeps their number bounded.
//!
//! What an event says, how a repetition is folded into the stored one and which
//! events retention drops are decided by [`flotta_core::events`]; the
//! [`EventRecorder`] writes them through [`Store::record_event`] and deletes what
//! retention drops. Pruning runs every [`EventRecorder::prune_interval`] and as
//! soon as a tenth of the limit (at least one) was recorded since the last run, so
//! a burst cannot outgrow the limit for long. Deleting an event that is already
//! gone is not an error, so every replica sharing a PostgreSQL database may prune:
//! none repeats another's work with any effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use flotta_core::error_chain::error_chain;
use flotta_core::events::{EventOccurrence, EventRetention, ServerEvent, last_seen};
use flotta_core::wire::EventInfo;
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::store::{ListOptions, ResourceKind, Store, StoreError, StoreResult};

/// Objects read per page while pruning.
const PRUNE_PAGE: usize = 500;

/// Writes events and prunes them. Cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    retention: EventRetention,
    /// Events recorded since the last pruning started.
    since_prune: AtomicUsize,
    prune_now: Notify,
    /// Events deleted by pruning since the recorder was made.
    pruned: AtomicU64,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("retention", &self.inner.retention)
            .finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// A recorder writing to `store`, keeping what `retention` allows.
    pub fn new(store: Arc<dyn Store>, retention: EventRetention) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                retention,
                since_prune: AtomicUsize::new(0),
                prune_now: Notify::new(),
                pruned: AtomicU64::new(0),
            }),
        }
    }

    /// The retention this recorder enforces.
    pub fn retention(&self) -> EventRetention {
        self.inner.retention
    }

    /// How often pruning runs without being asked: a tenth of the age limit,
    /// between one second and one minute.
    pub fn prune_interval(&self) -> Duration {
        (self.inner.retention.max_age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Events deleted by pruning since the recorder was made.
    pub fn pruned(&self) -> u64 {
        self.inner.pruned.load(Ordering::Relaxed)
    }

    /// Records `occurrence` as happening `times` times now.
    pub async fn record(&self, occurrence: &EventOccurrence, times: u32) -> StoreResult<()> {
        self.inner.store.record_event(occurrence, times).await?;
        self.recorded(1);
        Ok(())
    }

    /// Records the events device `device` reported in one heartbeat, identical ones
    /// folded into one write. Fails when any could not be stored, so the device
    /// keeps them queued and sends them again.
    pub async fn record_device_events(
        &self,
        namespace: &str,
        device: &str,
        events: &[EventInfo],
    ) -> StoreResult<()> {
        let folded = EventOccurrence::from_heartbeat(namespace, device, events);
        // Concurrent writes share one SQLite commit.
        futures::future::try_join_all(
            folded
                .iter()
                .map(|(occurrence, times)| self.inner.store.record_event(occurrence, *times)),
        )
        .await?;
        self.recorded(folded.len());
        Ok(())
    }

    /// Records a server-side event. Best effort: what the server did stands
    /// whether or not its event could be written; a failure is logged.
    pub async fn record_server_event(&self, event: ServerEvent<'_>) {
        self.record_logged(event.occurrence()).await;
    }

    /// [`record_server_event`](Self::record_server_event) on a task of its own,
    /// off the request's path (enrolment and registration answer without waiting).
    pub fn spawn_server_event(&self, event: ServerEvent<'_>) {
        let recorder = self.clone();
        let occurrence = event.occurrence();
        tokio::spawn(async move { recorder.record_logged(occurrence).await });
    }

    async fn record_logged(&self, occurrence: EventOccurrence) {
        if let Err(error) = self.record(&occurrence, 1).await {
            tracing::warn!(
                reason = %occurrence.reason,
                object = %occurrence.involved.name,
                error = %error_chain(&error),
                "could not record an event"
            );
        }
    }

    fn recorded(&self, events: usize) {
        let threshold = (self.inner.retention.max_events / 10).max(1);
        let before = self.inner.since_prune.fetch_add(events, Ordering::Relaxed);
        if before + events >= threshold {
            self.inner.prune_now.notify_one();
        }
    }

    /// Deletes the events retention drops at `now`; returns how many it deleted.
    pub async fn prune(&self, now: OffsetDateTime) -> StoreResult<usize> {
        self.inner.since_prune.store(0, Ordering::Relaxed);
        let store = &self.inner.store;
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list(
                    ResourceKind::Event,
                    None,
                    &ListOptions {
                        limit: Some(PRUNE_PAGE),
                        continue_token: cursor.take(),
                    },
                )
                .await?;
            for object in page.items {
                // An event without any time is as old as can be.
                let at = last_seen(&object.body).unwrap_or(OffsetDateTime::UNIX_EPOCH);
                seen.push(((object.namespace, object.name), at));
            }
            match page.continue_token {
                Some(token) => cursor = Some(token),
                None => break,
            }
        }
        let mut deleted = 0;
        for (namespace, name) in self.inner.retention.expired(&seen, now) {
            match store
                .delete(ResourceKind::Event, namespace, name, None)
                .await
            {
                Ok(_) => deleted += 1,
                // Another replica pruned it first.
                Err(StoreError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        self.inner
            .pruned
            .fetch_add(deleted as u64, Ordering::Relaxed);
        Ok(deleted)
    }

    /// Prunes every [`prune_interval`](Self::prune_interval) and whenever enough
    /// events were recorded, until `shutdown` turns true.
    pub fn spawn_pruning(&self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let recorder = self.clone();
        tokio::spawn(async move {
            let interval = recorder.prune_interval();
            loop {
                match recorder.prune(OffsetDateTime::now_utc()).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::debug!(deleted, "pruned events"),
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "could not prune events");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = recorder.inner.prune_now.notified() => {}
                    () = crate::shutdown::stopping(&mut shutdown) => break,
                }
            }
        })
    }
}
