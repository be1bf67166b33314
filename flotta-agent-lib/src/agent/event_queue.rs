//! The event queue across restarts: loaded from [`StateItem::EventQueue`] when the
//! agent starts, saved (atomically, through the [`StateStore`](crate::StateStore))
//! whenever it changed: an event queued, a batch delivered or put back. A quiet
//! agent whose queue stays empty writes nothing.

use crate::offline::PersistedEventQueue;
use crate::state::StateItem;

use super::Agent;
use super::status::{AgentEvent, lock};

impl Agent {
    /// Puts the events a previous run left queued in front of the queue; returns
    /// what is persisted now. An unreadable queue is logged and replaced by the
    /// next save.
    pub(super) async fn load_event_queue(&self) -> Option<PersistedEventQueue> {
        let loaded = match self.state.load(StateItem::EventQueue).await {
            Ok(None) => return Some(PersistedEventQueue::default()),
            Ok(Some(bytes)) => PersistedEventQueue::decode(&bytes),
            Err(error) => Err(error),
        };
        match loaded {
            Ok(persisted) => {
                if !persisted.events.is_empty() || persisted.dropped > 0 {
                    tracing::info!(
                        events = persisted.events.len(),
                        dropped = persisted.dropped,
                        "resuming with the events queued before the restart"
                    );
                }
                let mut pending = lock(&self.shared.pending);
                pending.restore_persisted(persisted.clone());
                self.shared.count_queue(&pending);
                Some(persisted)
            }
            Err(error) => {
                tracing::warn!(
                    error = %flotta_core::error_chain::error_chain(&error),
                    "the persisted event queue cannot be read; starting with an empty one"
                );
                None
            }
        }
    }

    /// Saves the queue each time it changes; `saved` is what is persisted already
    /// (`None`: unknown, so the first change is saved whatever it is). A failed
    /// save is retried after the retry backoff. Never returns: after a disconnect
    /// it stops saving and waits for the agent to stop.
    pub(super) async fn event_queue_loop(
        &self,
        mut saved: Option<PersistedEventQueue>,
    ) -> std::convert::Infallible {
        let mut failures = 0u32;
        loop {
            self.shared.queue_changed.notified().await;
            if lock(&self.shared.status).disconnected {
                // The state is being removed; saving would bring the queue back.
                return std::future::pending().await;
            }
            let snapshot = lock(&self.shared.pending).snapshot();
            if saved.as_ref() == Some(&snapshot) {
                continue;
            }
            match self
                .state
                .save(StateItem::EventQueue, &snapshot.encode())
                .await
            {
                Ok(()) => {
                    failures = 0;
                    let events = snapshot.events.len();
                    saved = Some(snapshot);
                    self.shared.emit(AgentEvent::EventQueuePersisted { events });
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    // Not queued as an event itself: that would change the queue
                    // and fail again, in a loop.
                    let reason = flotta_core::error_chain::error_chain(&error);
                    tracing::error!(%reason, "could not persist the event queue");
                    self.shared.update(|s| {
                        s.state_error = Some(format!("{}: {reason}", StateItem::EventQueue));
                    });
                    self.shared.emit(AgentEvent::StateWriteFailed {
                        item: StateItem::EventQueue,
                        reason,
                    });
                    self.clock.sleep(self.retry_delay(failures)).await;
                    self.shared.queue_changed.notify_one();
                }
            }
        }
    }
}
