//! Config-change wake-ups for long-polling devices, and revocation of deleted
//! devices' certificates.
//!
//! Each device with a long-poll in progress has a `tokio::sync::watch` channel holding
//! the config version last published for it. One background task follows the store's
//! changes to workloads, device sets and devices, recomputes the versions of the
//! waiting devices a change may affect (all waiting devices of the namespace for a
//! workload or set, the one device for a device), and publishes those that changed,
//! which wakes exactly the waiters whose configuration changed. Bursts of changes are
//! coalesced into one recomputation per namespace.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use flotta_core::model::{EdgeDevice, EdgeDeviceSet, EdgeWorkload};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::{CERTIFICATE_SERIALS_ANNOTATION, EdgeError, EdgeState, serial_from_hex};
use crate::store::{
    ListOptions, ResourceKind, RevokedCertificate, Store, StoreError, StoredObject, WatchEvent,
    WatchEventType, WatchStream,
};
use flotta_core::reconcile::{
    PreparedWorkload, RenderedConfig, prepare_workload, render_device_config,
    render_device_config_prepared, workload_targets,
};

type DeviceKey = (String, String);

/// Per-device version channels of the devices with a long-poll in progress.
#[derive(Debug, Default)]
pub(super) struct ConfigNotifier {
    channels: Mutex<HashMap<DeviceKey, watch::Sender<Option<String>>>>,
}

impl ConfigNotifier {
    fn channels(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<DeviceKey, watch::Sender<Option<String>>>> {
        match self.channels.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts waiting on a device's version channel.
    pub(super) fn subscribe(
        &self,
        namespace: &str,
        device: &str,
    ) -> watch::Receiver<Option<String>> {
        let mut channels = self.channels();
        let sender = channels
            .entry((namespace.to_owned(), device.to_owned()))
            .or_insert_with(|| watch::channel(None).0);
        let mut receiver = sender.subscribe();
        receiver.mark_unchanged();
        receiver
    }

    /// Records the version a waiter just computed, without waking anyone, so that the
    /// next publication of the same version is not taken for a change.
    pub(super) fn seed(&self, namespace: &str, device: &str, version: &str) {
        if let Some(sender) = self
            .channels()
            .get(&(namespace.to_owned(), device.to_owned()))
        {
            sender.send_if_modified(|current| {
                if current.is_none() {
                    *current = Some(version.to_owned());
                }
                false
            });
        }
    }

    /// Publishes a device's current version; wakes its waiters if it changed.
    fn publish(&self, namespace: &str, device: &str, version: Option<&str>) {
        if let Some(sender) = self
            .channels()
            .get(&(namespace.to_owned(), device.to_owned()))
        {
            sender.send_if_modified(|current| {
                if current.as_deref() == version {
                    false
                } else {
                    *current = version.map(str::to_owned);
                    true
                }
            });
        }
    }

    /// Devices with waiters, by namespace; forgets channels nobody waits on.
    fn waiting(&self, namespace: Option<&str>) -> Vec<DeviceKey> {
        let mut channels = self.channels();
        channels.retain(|_, sender| sender.receiver_count() > 0);
        channels
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|wanted| wanted == ns))
            .cloned()
            .collect()
    }

    /// Whether `device` has waiters.
    fn is_waiting(&self, namespace: &str, device: &str) -> bool {
        self.channels()
            .get(&(namespace.to_owned(), device.to_owned()))
            .is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// Number of devices with waiters.
    pub(super) fn waiting_devices(&self) -> usize {
        self.channels()
            .values()
            .filter(|sender| sender.receiver_count() > 0)
            .count()
    }
}

fn parse<T: serde::de::DeserializeOwned>(object: &StoredObject) -> Option<T> {
    serde_json::from_value(object.body.clone()).ok()
}

async fn list_all(
    store: &dyn Store,
    kind: ResourceKind,
    namespace: &str,
) -> Result<Vec<StoredObject>, StoreError> {
    Ok(store
        .list(kind, Some(namespace), &ListOptions::default())
        .await?
        .items)
}

/// The device's resource and its rendered configuration, `None` when the device does
/// not exist.
pub(super) async fn current_config(
    store: &dyn Store,
    namespace: &str,
    device: &str,
) -> Result<Option<(EdgeDevice, RenderedConfig)>, StoreError> {
    let Some(stored) = store
        .get(ResourceKind::EdgeDevice, namespace, device)
        .await?
    else {
        return Ok(None);
    };
    let Some(device) = parse::<EdgeDevice>(&stored) else {
        return Err(StoreError::CorruptRecord {
            key: format!("EdgeDevice {namespace}/{}", stored.name),
            reason: "the stored body is not a valid EdgeDevice".into(),
        });
    };
    let workloads: Vec<EdgeWorkload> = list_all(store, ResourceKind::EdgeWorkload, namespace)
        .await?
        .iter()
        .filter_map(parse)
        .collect();
    let sets: Vec<EdgeDeviceSet> = list_all(store, ResourceKind::EdgeDeviceSet, namespace)
        .await?
        .iter()
        .filter_map(parse)
        .collect();
    let rendered = render_device_config(&device, &sets, &workloads, &[], &[]);
    Ok(Some((device, rendered)))
}

/// Recomputes and publishes the versions of the waiting devices of `namespace`.
async fn refresh_namespace(state: &EdgeState, namespace: &str) -> Result<(), StoreError> {
    let waiting = state.inner.notifier.waiting(Some(namespace));
    if waiting.is_empty() {
        return Ok(());
    }
    let store = state.store().as_ref();
    let devices: HashMap<String, EdgeDevice> = list_all(store, ResourceKind::EdgeDevice, namespace)
        .await?
        .iter()
        .filter_map(|o| parse::<EdgeDevice>(o).map(|d| (o.name.clone(), d)))
        .collect();
    let workloads: Vec<EdgeWorkload> = list_all(store, ResourceKind::EdgeWorkload, namespace)
        .await?
        .iter()
        .filter_map(parse)
        .collect();
    let sets: Vec<EdgeDeviceSet> = list_all(store, ResourceKind::EdgeDeviceSet, namespace)
        .await?
        .iter()
        .filter_map(parse)
        .collect();
    // Workloads are rendered once for all the waiting devices; each device then only
    // picks those that target it.
    let prepared: Vec<(&EdgeWorkload, PreparedWorkload)> = workloads
        .iter()
        .map(|w| (w, prepare_workload(w, &[], &[])))
        .collect();
    for (ns, name) in waiting {
        let version = devices.get(&name).map(|device| {
            let selected: Vec<&PreparedWorkload> = prepared
                .iter()
                .filter(|(w, _)| workload_targets(device, w).unwrap_or(false))
                .map(|(_, p)| p)
                .collect();
            render_device_config_prepared(device, &sets, &selected, &[], &[])
                .version
                .to_string()
        });
        state.inner.notifier.publish(&ns, &name, version.as_deref());
    }
    Ok(())
}

async fn refresh_device(
    state: &EdgeState,
    namespace: &str,
    device: &str,
) -> Result<(), StoreError> {
    if !state.inner.notifier.is_waiting(namespace, device) {
        return Ok(());
    }
    let version = current_config(state.store().as_ref(), namespace, device)
        .await?
        .map(|(_, rendered)| rendered.version.to_string());
    state
        .inner
        .notifier
        .publish(namespace, device, version.as_deref());
    Ok(())
}

/// Revokes every certificate recorded on a deleted device.
async fn revoke_device(state: &EdgeState, object: &StoredObject) -> Result<(), StoreError> {
    let serials: Vec<String> = object
        .body
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CERTIFICATE_SERIALS_ANNOTATION))
        .and_then(serde_json::Value::as_str)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    for serial in &serials {
        state
            .store()
            .revoke_certificate(&RevokedCertificate {
                serial: serial.clone(),
                namespace: object.namespace.clone(),
                device: object.name.clone(),
                revoked_at: now,
            })
            .await?;
    }
    state.revoke_in_memory(serials.iter().filter_map(|s| serial_from_hex(s)));
    Ok(())
}

/// What a burst of changes requires.
#[derive(Debug, Default)]
struct Dirty {
    namespaces: BTreeSet<String>,
    devices: BTreeSet<DeviceKey>,
    deleted: Vec<StoredObject>,
    everything: bool,
}

impl Dirty {
    fn note(&mut self, event: WatchEvent) {
        let object = event.object;
        match object.kind {
            ResourceKind::EdgeWorkload | ResourceKind::EdgeDeviceSet => {
                self.namespaces.insert(object.namespace);
            }
            ResourceKind::EdgeDevice => {
                self.devices
                    .insert((object.namespace.clone(), object.name.clone()));
                if event.event_type == WatchEventType::Deleted {
                    self.deleted.push(object);
                }
            }
            _ => {}
        }
    }
}

async fn open_watches(store: &dyn Store) -> Result<WatchStream, StoreError> {
    let from = store.current_resource_version().await?;
    let mut streams = Vec::new();
    for kind in [
        ResourceKind::EdgeWorkload,
        ResourceKind::EdgeDeviceSet,
        ResourceKind::EdgeDevice,
    ] {
        streams.push(store.watch(kind, None, from).await?);
    }
    Ok(futures::stream::select_all(streams).boxed())
}

async fn apply(state: &EdgeState, dirty: Dirty) {
    for object in &dirty.deleted {
        // A failed revocation is retried by nothing: record it as best we can now and
        // keep serving; the device row is gone either way.
        let _ = revoke_device(state, object).await;
    }
    if dirty.everything {
        let namespaces: BTreeSet<String> = state
            .inner
            .notifier
            .waiting(None)
            .into_iter()
            .map(|(ns, _)| ns)
            .collect();
        for ns in namespaces {
            let _ = refresh_namespace(state, &ns).await;
        }
        return;
    }
    for ns in &dirty.namespaces {
        let _ = refresh_namespace(state, ns).await;
    }
    for (ns, device) in &dirty.devices {
        if !dirty.namespaces.contains(ns) {
            let _ = refresh_device(state, ns, device).await;
        }
    }
}

/// Opens the change watches, then follows them in a task until shutdown.
pub(super) async fn spawn_watcher(
    state: EdgeState,
) -> Result<tokio::task::JoinHandle<()>, EdgeError> {
    let mut stream = open_watches(state.store().as_ref())
        .await
        .map_err(|source| EdgeError::Store {
            operation: "watch",
            source,
        })?;
    let mut shutdown = state.shutdown_signal();
    Ok(tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                next = stream.next() => next,
                _ = super::stopped(&mut shutdown) => return,
            };
            let mut dirty = Dirty::default();
            let mut broken = false;
            match first {
                Some(Ok(event)) => dirty.note(event),
                Some(Err(_)) | None => broken = true,
            }
            // Coalesce everything already queued into one recomputation.
            while !broken {
                match stream.next().now_or_never() {
                    Some(Some(Ok(event))) => dirty.note(event),
                    Some(Some(Err(_))) | Some(None) => broken = true,
                    None => break,
                }
            }
            if broken {
                // Changes may have been missed: reopen from now and recompute every
                // waiting device.
                dirty.everything = true;
                loop {
                    match open_watches(state.store().as_ref()).await {
                        Ok(reopened) => {
                            stream = reopened;
                            break;
                        }
                        Err(_) => {
                            tokio::select! {
                                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                                _ = super::stopped(&mut shutdown) => return,
                            }
                        }
                    }
                }
            }
            apply(&state, dirty).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_wakes_only_waiters_whose_version_changed() {
        let notifier = ConfigNotifier::default();
        let mut receivers: Vec<_> = (0..10_000)
            .map(|i| notifier.subscribe("ns", &format!("dev-{i}")))
            .collect();
        for i in 0..10_000 {
            notifier.seed("ns", &format!("dev-{i}"), "v1");
        }
        assert_eq!(notifier.waiting_devices(), 10_000);
        notifier.publish("ns", "dev-7", Some("v1"));
        assert!(receivers.iter().all(|r| !r.has_changed().unwrap_or(true)));
        notifier.publish("ns", "dev-7", Some("v2"));
        let woken: Vec<usize> = receivers
            .iter()
            .enumerate()
            .filter(|(_, r)| r.has_changed().unwrap_or(false))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(woken, [7]);
        assert_eq!(receivers[7].borrow_and_update().as_deref(), Some("v2"));
        receivers.truncate(10);
        assert_eq!(notifier.waiting(Some("ns")).len(), 10);
        assert!(notifier.waiting(Some("other")).is_empty());
        assert_eq!(notifier.waiting_devices(), 10);
    }
}
