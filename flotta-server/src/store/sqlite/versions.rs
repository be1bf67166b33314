//! Resource versions of recently seen devices, answering
//! [`Store::cached_resource_version`](crate::store::Store::cached_resource_version)
//! without a database read.

use crate::store::{ResourceKind, StoredObject, WatchEvent, WatchEventType};

/// Most devices whose resource version [`VersionIndex`] remembers.
const MAX_INDEXED_DEVICES: usize = 1 << 20;

/// Resource versions of recently read or written devices, as of the latest
/// committed write (see [`Store::cached_resource_version`]).
///
/// The writer thread updates it after each commit; a reader adds what it read only
/// when no write committed after its snapshot was applied since, so it never
/// brings back an older state.
#[derive(Default)]
pub(super) struct VersionIndex {
    devices: std::collections::HashMap<String, std::collections::HashMap<String, u64>>,
    len: usize,
    /// The global resource version of the last write applied here.
    applied: u64,
}

impl VersionIndex {
    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<u64> {
        self.devices.get(namespace)?.get(name).copied()
    }

    fn set(&mut self, namespace: &str, name: &str, version: u64) {
        if let Some(names) = self.devices.get_mut(namespace)
            && let Some(slot) = names.get_mut(name)
        {
            *slot = version;
            return;
        }
        if self.len >= MAX_INDEXED_DEVICES {
            return;
        }
        self.devices
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned(), version);
        self.len += 1;
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        if let Some(names) = self.devices.get_mut(namespace)
            && names.remove(name).is_some()
        {
            self.len -= 1;
            if names.is_empty() {
                self.devices.remove(namespace);
            }
        }
    }

    /// Applies a committed change.
    pub(super) fn apply(&mut self, event: &WatchEvent) {
        let object = &event.object;
        if object.kind == ResourceKind::EdgeDevice {
            match event.event_type {
                WatchEventType::Deleted => self.remove(&object.namespace, &object.name),
                WatchEventType::Added | WatchEventType::Modified => {
                    self.set(&object.namespace, &object.name, object.resource_version);
                }
            }
        }
        self.applied = self.applied.max(object.resource_version);
    }

    /// Adds what a reader saw in a snapshot taken at global version `snapshot`.
    pub(super) fn remember(&mut self, snapshot: u64, object: &StoredObject) {
        if snapshot >= self.applied {
            self.set(&object.namespace, &object.name, object.resource_version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WatchEventType;
    use serde_json::Value;
    use time::OffsetDateTime;

    fn device(name: &str, resource_version: u64) -> StoredObject {
        StoredObject {
            kind: ResourceKind::EdgeDevice,
            namespace: "ns".into(),
            name: name.into(),
            uid: "u".into(),
            resource_version,
            generation: 1,
            labels: Default::default(),
            creation_timestamp: OffsetDateTime::UNIX_EPOCH,
            deletion_timestamp: None,
            body: Value::Null,
        }
    }

    fn event(event_type: WatchEventType, object: StoredObject) -> WatchEvent {
        WatchEvent { event_type, object }
    }

    #[test]
    fn readers_never_bring_back_an_older_state() {
        let mut index = VersionIndex::default();
        index.apply(&event(WatchEventType::Added, device("d", 5)));
        assert_eq!(index.get("ns", "d"), Some(5));
        // Read from a snapshot before the write that was applied: ignored.
        index.remember(4, &device("d", 3));
        assert_eq!(index.get("ns", "d"), Some(5));
        // Read from a snapshot at least as new: kept.
        index.remember(5, &device("e", 2));
        assert_eq!(index.get("ns", "e"), Some(2));
        index.apply(&event(WatchEventType::Deleted, device("d", 6)));
        assert_eq!(index.get("ns", "d"), None);
        // A reader that saw the device before its deletion cannot re-add it.
        index.remember(5, &device("d", 5));
        assert_eq!(index.get("ns", "d"), None);
        // Other kinds only move the applied version.
        let mut workload = device("d", 7);
        workload.kind = ResourceKind::EdgeWorkload;
        index.apply(&event(WatchEventType::Added, workload));
        assert_eq!(index.get("ns", "d"), None);
        index.remember(6, &device("d", 6));
        assert_eq!(index.get("ns", "d"), None, "snapshot 6 is older than 7");
        index.remember(7, &device("f", 1));
        assert_eq!(index.get("ns", "f"), Some(1));
        assert_eq!(index.len, 2);
    }
}
