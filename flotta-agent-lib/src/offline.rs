//! Events kept for the server while it is unreachable: a bounded queue that drops
//! the oldest first and counts what it dropped, persisted as a
//! [`PersistedEventQueue`] so a restart or power loss loses nothing queued.

use std::collections::VecDeque;

use flotta_core::wire::EventInfo;
use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateItem};

/// Default number of events kept while the server is unreachable.
pub const DEFAULT_OFFLINE_QUEUE_CAPACITY: usize = 100;

/// The `reason` of the event that reports dropped events.
pub const EVENTS_DROPPED_REASON: &str = "EventsDropped";

/// Events waiting for the next delivered heartbeat.
#[derive(Debug)]
pub(crate) struct OfflineQueue {
    events: VecDeque<EventInfo>,
    capacity: usize,
    /// Dropped since the last delivery.
    dropped: u64,
    /// Dropped since the agent started.
    dropped_total: u64,
    /// The batch being delivered: still part of what is persisted, since a
    /// crash before the server's answer must not lose it.
    sending: Option<Batch>,
}

/// The queue as saved in [`StateItem::EventQueue`]: the events waiting (oldest
/// first, those being delivered included) and how many were dropped since the last
/// delivery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersistedEventQueue {
    /// Events waiting, oldest first.
    pub events: Vec<EventInfo>,
    /// Events dropped (oldest first) because the queue was full, not yet reported.
    #[serde(default)]
    pub dropped: u64,
}

impl PersistedEventQueue {
    /// Encodes for [`StateStore::save`](crate::state::StateStore::save).
    pub fn encode(&self) -> Vec<u8> {
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes what [`encode`](Self::encode) wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        crate::state::decode_json(bytes, StateItem::EventQueue, "not a queue of events")
    }
}

/// Events taken out of the queue for one heartbeat.
#[derive(Debug, Default, Clone)]
pub(crate) struct Batch {
    pub events: Vec<EventInfo>,
    pub dropped: u64,
}

impl Batch {
    /// The events as sent: the queued ones, oldest first, then one warning that
    /// counts the dropped ones, if any were.
    pub fn wire_events(&self) -> Vec<EventInfo> {
        let mut events = self.events.clone();
        if self.dropped > 0 {
            events.push(EventInfo {
                reason: Some(EVENTS_DROPPED_REASON.to_owned()),
                message: Some(format!(
                    "{} events were dropped while the server was unreachable (oldest first)",
                    self.dropped
                )),
                type_: Some("warn".to_owned()),
                ..Default::default()
            });
        }
        events
    }
}

impl OfflineQueue {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            events: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            dropped: 0,
            dropped_total: 0,
            sending: None,
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Adds an event, dropping the oldest when full.
    pub fn push(&mut self, event: EventInfo) {
        self.events.push_back(event);
        self.trim();
    }

    /// Takes everything for one delivery attempt; it stays in
    /// [`snapshot`](Self::snapshot) until [`delivered`](Self::delivered) or
    /// [`restore`](Self::restore).
    pub fn take(&mut self) -> Batch {
        let batch = Batch {
            events: self.events.drain(..).collect(),
            dropped: std::mem::take(&mut self.dropped),
        };
        self.sending = (!batch.events.is_empty() || batch.dropped > 0).then(|| batch.clone());
        batch
    }

    /// The batch last taken reached the server.
    pub fn delivered(&mut self) {
        self.sending = None;
    }

    /// What to persist: the batch being delivered, then the queued events.
    pub fn snapshot(&self) -> PersistedEventQueue {
        let sending = self.sending.as_ref();
        PersistedEventQueue {
            events: sending
                .map(|b| b.events.as_slice())
                .unwrap_or_default()
                .iter()
                .chain(&self.events)
                .cloned()
                .collect(),
            dropped: sending
                .map_or(0, |b| b.dropped)
                .saturating_add(self.dropped),
        }
    }

    /// Puts back what a previous run persisted: older than anything queued since
    /// this run started, so in front; the oldest are dropped when full.
    pub fn restore_persisted(&mut self, persisted: PersistedEventQueue) {
        self.put_back(Batch {
            events: persisted.events,
            dropped: persisted.dropped,
        });
    }

    /// Puts back a batch whose delivery failed: its events are older than anything
    /// queued since, so they go in front; the oldest are dropped when full.
    pub fn restore(&mut self, batch: Batch) {
        self.sending = None;
        self.put_back(batch);
    }

    fn put_back(&mut self, batch: Batch) {
        let newer = std::mem::replace(&mut self.events, batch.events.into());
        self.events.extend(newer);
        self.dropped = self.dropped.saturating_add(batch.dropped);
        self.trim();
    }

    fn trim(&mut self) {
        while self.events.len() > self.capacity {
            self.events.pop_front();
            self.dropped = self.dropped.saturating_add(1);
            self.dropped_total = self.dropped_total.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> EventInfo {
        EventInfo {
            reason: Some(format!("e{n}")),
            ..Default::default()
        }
    }

    fn reasons(events: &[EventInfo]) -> Vec<String> {
        events
            .iter()
            .map(|e| e.reason.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn the_oldest_events_are_dropped_and_counted() {
        let mut queue = OfflineQueue::new(3);
        for n in 0..5 {
            queue.push(event(n));
        }
        assert_eq!(queue.len(), 3);
        let batch = queue.take();
        assert_eq!(reasons(&batch.events), ["e2", "e3", "e4"]);
        assert_eq!(batch.dropped, 2);
        let wire = batch.wire_events();
        assert_eq!(wire.len(), 4);
        let last = wire.last().expect("dropped report");
        assert_eq!(last.reason.as_deref(), Some(EVENTS_DROPPED_REASON));
        assert!(
            last.message.as_deref().is_some_and(|m| m.starts_with("2 ")),
            "{last:?}"
        );
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.take().dropped, 0);
        assert_eq!(queue.dropped_total(), 2);
    }

    #[test]
    fn a_failed_delivery_goes_back_in_front_of_newer_events() {
        let mut queue = OfflineQueue::new(4);
        queue.push(event(0));
        queue.push(event(1));
        let batch = queue.take();
        queue.push(event(2));
        queue.push(event(3));
        queue.push(event(4));
        queue.restore(batch);
        // Five events for four places: the oldest (e0) goes.
        let batch = queue.take();
        assert_eq!(reasons(&batch.events), ["e1", "e2", "e3", "e4"]);
        assert_eq!(batch.dropped, 1);
        // The dropped count survives another failed delivery.
        queue.restore(batch);
        assert_eq!(queue.take().dropped, 1);
    }

    #[test]
    fn the_snapshot_keeps_the_batch_in_flight_until_delivered() {
        let mut queue = OfflineQueue::new(3);
        queue.push(event(0));
        queue.push(event(1));
        let batch = queue.take();
        queue.push(event(2));
        // A crash now must lose neither the batch being sent nor the newer event.
        assert_eq!(reasons(&queue.snapshot().events), ["e0", "e1", "e2"]);
        queue.restore(batch);
        assert_eq!(reasons(&queue.snapshot().events), ["e0", "e1", "e2"]);
        let _ = queue.take();
        queue.delivered();
        assert_eq!(queue.snapshot(), PersistedEventQueue::default());
    }

    #[test]
    fn a_persisted_queue_round_trips_and_goes_in_front() {
        let persisted = PersistedEventQueue {
            events: vec![event(0), event(1)],
            dropped: 4,
        };
        let decoded = PersistedEventQueue::decode(&persisted.encode()).expect("decodes");
        assert_eq!(decoded, persisted);
        let mut queue = OfflineQueue::new(3);
        queue.push(event(2));
        queue.push(event(3));
        queue.restore_persisted(decoded);
        let batch = queue.take();
        assert_eq!(reasons(&batch.events), ["e1", "e2", "e3"]);
        assert_eq!(batch.dropped, 5);
        let error = PersistedEventQueue::decode(b"[1,").expect_err("corrupt");
        assert!(
            matches!(
                error,
                StateError::Corrupt {
                    item: StateItem::EventQueue,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn nothing_dropped_means_no_report() {
        let mut queue = OfflineQueue::new(0);
        queue.push(event(0));
        let batch = queue.take();
        assert_eq!(batch.wire_events().len(), 1);
        assert_eq!(batch.dropped, 0);
    }
}
