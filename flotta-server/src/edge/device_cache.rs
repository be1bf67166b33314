//! The status each device's last heartbeat left in the store, typed, with the
//! resource version it was stored at, so that an unchanged heartbeat needs neither
//! a read of the device nor a decoding of its status.
//!
//! An entry is only trusted while its resource version is the device's current one
//! (see [`Store::cached_resource_version`](crate::store::Store::cached_resource_version),
//! or the version of a fresh read): any change by anyone (management API, a
//! registration, another replica) gives the device a new version and the entry is
//! simply not used any more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotta_core::model::EdgeDeviceStatus;

/// Most devices remembered; beyond that, heartbeats of devices not yet remembered
/// take the reading path.
const MAX_DEVICES: usize = 1 << 20;

/// A device's stored status (without `lastSeen`) and the version it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct CachedStatus {
    /// The device's resource version the status was read or written at.
    pub(crate) resource_version: u64,
    /// The stored status, `lastSeen` cleared; `None` when the device has none.
    pub(crate) status: Option<Arc<EdgeDeviceStatus>>,
    /// The configuration this replica judged the status against at the device's
    /// last heartbeat (`None`: read from the store, not judged here), so that a
    /// configuration poll can tell when a report is wanted
    /// ([`ServedConfig::wants_report`](flotta_core::reconcile::ServedConfig::wants_report)).
    pub(crate) judged: Option<Arc<crate::edge::configs::CachedConfig>>,
}

/// Device statuses by namespace and name.
#[derive(Debug, Default)]
pub(crate) struct DeviceStatusCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_namespace: HashMap<String, HashMap<String, CachedStatus>>,
    len: usize,
}

impl DeviceStatusCache {
    /// The remembered status of a device, whatever its version.
    pub(crate) fn get(&self, namespace: &str, device: &str) -> Option<CachedStatus> {
        let entries = self.entries.lock().ok()?;
        entries.by_namespace.get(namespace)?.get(device).cloned()
    }

    /// Remembers the status stored for a device at `status.resource_version`.
    pub(crate) fn put(&self, namespace: &str, device: &str, status: CachedStatus) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if let Some(slot) = entries
            .by_namespace
            .get_mut(namespace)
            .and_then(|devices| devices.get_mut(device))
        {
            // Never replace a newer version by an older one.
            if slot.resource_version <= status.resource_version {
                *slot = status;
            }
            return;
        }
        if entries.len >= MAX_DEVICES {
            return;
        }
        entries
            .by_namespace
            .entry(namespace.to_owned())
            .or_default()
            .insert(device.to_owned(), status);
        entries.len += 1;
    }

    /// Forgets a device (it was found deleted).
    pub(crate) fn remove(&self, namespace: &str, device: &str) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let Some(devices) = entries.by_namespace.get_mut(namespace) else {
            return;
        };
        if devices.remove(device).is_some() {
            if devices.is_empty() {
                entries.by_namespace.remove(namespace);
            }
            entries.len -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: &str, resource_version: u64) -> CachedStatus {
        CachedStatus {
            judged: None,
            resource_version,
            status: Some(Arc::new(EdgeDeviceStatus {
                phase: Some(phase.to_owned()),
                ..EdgeDeviceStatus::default()
            })),
        }
    }

    #[test]
    fn keeps_the_newest_version_and_forgets_removed_devices() {
        let cache = DeviceStatusCache::default();
        assert!(cache.get("ns", "d").is_none());
        cache.put("ns", "d", status("up", 5));
        cache.put("ns", "d", status("old", 3));
        let got = cache.get("ns", "d").expect("remembered");
        assert_eq!(got.resource_version, 5);
        assert_eq!(
            got.status.and_then(|s| s.phase.clone()).as_deref(),
            Some("up")
        );
        cache.put("ns", "d", status("degraded", 7));
        assert_eq!(cache.get("ns", "d").map(|c| c.resource_version), Some(7));
        assert!(cache.get("other", "d").is_none());
        cache.remove("ns", "d");
        assert!(cache.get("ns", "d").is_none());
        cache.remove("ns", "d");
        cache.put("ns", "d", status("up", 1));
        assert_eq!(cache.get("ns", "d").map(|c| c.resource_version), Some(1));
    }
}
