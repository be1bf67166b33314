//! Config-change wake-ups for long-polling devices, and revocation of deleted
//! devices' certificates.
//!
//! Each device with a long-poll in progress has a `tokio::sync::watch` channel; a
//! [`Subscription`] holds one receiver and removes the channel when the last
//! receiver goes, so the map only ever holds devices that are waiting. One
//! background task follows the store's changes to workloads, device sets,
//! devices, secrets and config maps, applies them to the [`ConfigCache`](super::configs::ConfigCache) view,
//! which says exactly which devices' configuration inputs changed, and wakes those
//! devices only. Bursts of changes are applied together and each device is woken
//! once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use flotta_core::model::{ConfigMap, EdgeDevice, EdgeDeviceSet, EdgeWorkload, Secret};
use flotta_core::reconcile::{RenderedConfig, render_device_config};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::{EdgeError, EdgeState, certificate_serials, serial_from_hex};
use crate::store::{
    ResourceKind, RevokedCertificate, Store, StoreError, StoredObject, WatchEvent, WatchEventType,
    WatchStream, list_all,
};

/// Namespace → device → wake-up channel.
type Channels = HashMap<String, HashMap<String, watch::Sender<u64>>>;

/// Wake-up channels of the devices with a long-poll in progress.
#[derive(Debug, Default)]
pub(super) struct ConfigNotifier {
    channels: Mutex<Channels>,
}

/// One long-poll's wait for a device's wake-ups; its channel is forgotten when the
/// last subscription of the device is dropped (the poll answered or abandoned).
#[derive(Debug)]
pub(super) struct Subscription<'a> {
    notifier: &'a ConfigNotifier,
    namespace: String,
    device: String,
    receiver: Option<watch::Receiver<u64>>,
}

impl Subscription<'_> {
    /// Completes at the next wake-up after the subscription (or the previous call);
    /// `false` when the channel is gone.
    pub(super) async fn changed(&mut self) -> bool {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.changed().await.is_ok(),
            None => false,
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut channels = self.notifier.channels();
        // Dropped under the lock, so that a concurrent subscribe either finds the
        // channel with its own receiver in it or makes a new one.
        drop(self.receiver.take());
        if let Some(devices) = channels.get_mut(&self.namespace) {
            if devices
                .get(&self.device)
                .is_some_and(|sender| sender.receiver_count() == 0)
            {
                devices.remove(&self.device);
            }
            if devices.is_empty() {
                channels.remove(&self.namespace);
            }
        }
    }
}

impl ConfigNotifier {
    fn channels(&self) -> MutexGuard<'_, Channels> {
        match self.channels.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts waiting for a device's wake-ups.
    pub(super) fn subscribe(&self, namespace: &str, device: &str) -> Subscription<'_> {
        let mut channels = self.channels();
        let receiver = channels
            .entry(namespace.to_owned())
            .or_default()
            .entry(device.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            notifier: self,
            namespace: namespace.to_owned(),
            device: device.to_owned(),
            receiver: Some(receiver),
        }
    }

    /// Wakes the waiters of the named devices of `namespace`.
    pub(super) fn wake<'n>(&self, namespace: &str, devices: impl IntoIterator<Item = &'n str>) {
        let channels = self.channels();
        let Some(waiting) = channels.get(namespace) else {
            return;
        };
        for device in devices {
            if let Some(sender) = waiting.get(device) {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every waiter.
    fn wake_all(&self) {
        for sender in self.channels().values().flat_map(HashMap::values) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Number of devices with waiters.
    pub(super) fn waiting_devices(&self) -> usize {
        self.channels()
            .values()
            .flat_map(HashMap::values)
            .filter(|sender| sender.receiver_count() > 0)
            .count()
    }

    /// Number of channels held: devices with waiters, plus any not forgotten.
    pub(super) fn channel_count(&self) -> usize {
        self.channels().values().map(HashMap::len).sum()
    }
}

/// The device's resource and its rendered configuration read from the store, `None`
/// when the device does not exist: the path for devices the in-memory view does not
/// know (yet), and for servers without background tasks.
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
    let device: EdgeDevice = stored.to_resource()?;
    let workloads: Vec<EdgeWorkload> = list_all(store, ResourceKind::EdgeWorkload, Some(namespace))
        .await?
        .iter()
        .filter_map(|stored| stored.to_resource().ok())
        .collect();
    let sets: Vec<EdgeDeviceSet> = list_all(store, ResourceKind::EdgeDeviceSet, Some(namespace))
        .await?
        .iter()
        .filter_map(|stored| stored.to_resource().ok())
        .collect();
    let secrets: Vec<Secret> = list_all(store, ResourceKind::Secret, Some(namespace))
        .await?
        .iter()
        .filter_map(|stored| stored.to_resource().ok())
        .collect();
    let config_maps: Vec<ConfigMap> = list_all(store, ResourceKind::ConfigMap, Some(namespace))
        .await?
        .iter()
        .filter_map(|stored| stored.to_resource().ok())
        .collect();
    let rendered = render_device_config(&device, &sets, &workloads, &secrets, &config_maps);
    Ok(Some((device, rendered)))
}

/// Loads every device, workload and set into the configuration view (one list per
/// kind) and wakes every waiting device, whose configuration may have changed.
async fn load_view(state: &EdgeState) -> Result<(), StoreError> {
    let store = state.store().as_ref();
    let mut objects = Vec::new();
    for kind in [
        ResourceKind::EdgeDevice,
        ResourceKind::Secret,
        ResourceKind::ConfigMap,
        ResourceKind::EdgeWorkload,
        ResourceKind::EdgeDeviceSet,
    ] {
        objects.extend(list_all(store, kind, None).await?);
    }
    state.inner.configs.load(objects);
    state.inner.notifier.wake_all();
    Ok(())
}

/// Deletes the signed request of a deleted device, so that the device cannot
/// register again on its old approval. Only the request the device registered on
/// goes (created before the device): one made by a new enrolment after the
/// deletion, which another replica may have served before this one saw the
/// deletion, stays. Another replica may have deleted it already.
async fn forget_approval(state: &EdgeState, device: &StoredObject) {
    let namespace = &state.options().signed_request_namespace;
    let store = state.store();
    let request = match store
        .get(
            ResourceKind::EdgeDeviceSignedRequest,
            namespace,
            &device.name,
        )
        .await
    {
        Ok(Some(request)) if request.creation_timestamp <= device.creation_timestamp => request,
        Ok(_) => return,
        Err(error) => {
            tracing::warn!(device = %device.name, %error, "could not read the signed request of a deleted device");
            return;
        }
    };
    match store
        .delete(
            ResourceKind::EdgeDeviceSignedRequest,
            namespace,
            &device.name,
            Some(request.resource_version),
        )
        .await
    {
        Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
        Err(error) => tracing::warn!(
            device = %device.name,
            %error,
            "could not delete the signed request of a deleted device"
        ),
    }
}

/// Revokes every certificate recorded on a deleted device.
async fn revoke_device(state: &EdgeState, object: &StoredObject) -> Result<(), StoreError> {
    let serials = certificate_serials(object);
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
    events: Vec<WatchEvent>,
    everything: bool,
}

async fn open_watches(store: &dyn Store) -> Result<WatchStream, StoreError> {
    let from = store.current_resource_version().await?;
    let mut streams = Vec::new();
    for kind in [
        ResourceKind::EdgeWorkload,
        ResourceKind::EdgeDeviceSet,
        ResourceKind::EdgeDevice,
        ResourceKind::Secret,
        ResourceKind::ConfigMap,
    ] {
        streams.push(store.watch(kind, None, from).await?);
    }
    Ok(crate::store::pumped(
        futures::stream::select_all(streams).boxed(),
    ))
}

async fn apply(state: &EdgeState, dirty: Dirty) {
    for event in &dirty.events {
        if event.object.kind == ResourceKind::EdgeDevice
            && event.event_type == WatchEventType::Deleted
        {
            // The approval goes with the device, before its certificates are
            // revoked: once the device sees the revocation, enrolling again asks
            // for a new approval (given at once under auto-approval).
            forget_approval(state, &event.object).await;
            // A failed revocation is retried by nothing: record it as best we can now
            // and keep serving; the device row is gone either way.
            let _ = revoke_device(state, &event.object).await;
        } else if event.object.kind == ResourceKind::EdgeDevice {
            // A renewal on another replica: the certificates it superseded stop
            // working after the grace window here too (the replica that renewed
            // also stored the revocation, for restarts).
            let mut serials = certificate_serials(&event.object);
            serials.pop();
            let from = time::OffsetDateTime::now_utc() + state.options().superseded_grace;
            state.revoke_in_memory_from(serials.iter().filter_map(|s| serial_from_hex(s)), from);
        }
    }
    let mut woken: BTreeSet<(&str, String)> = BTreeSet::new();
    for event in &dirty.events {
        let namespace = event.object.namespace.as_str();
        woken.extend(
            state
                .inner
                .configs
                .apply(event)
                .into_iter()
                .map(|device| (namespace, device)),
        );
    }
    let mut by_namespace: HashMap<&str, Vec<&str>> = HashMap::new();
    for (namespace, device) in &woken {
        by_namespace
            .entry(namespace)
            .or_default()
            .push(device.as_str());
    }
    for (namespace, devices) in by_namespace {
        state.inner.notifier.wake(namespace, devices);
    }
    if dirty.everything {
        // Changes may have been missed: reload the view. Until that works, polls are
        // answered from the view as it is.
        let mut shutdown = state.shutdown_signal();
        while load_view(state).await.is_err() {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = super::stopped(&mut shutdown) => return,
            }
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
    // Listed after the watches are open: events replayed from before the list are
    // older than what it holds and are ignored by resource version.
    load_view(&state).await.map_err(|source| EdgeError::Store {
        operation: "list",
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
                Some(Ok(event)) => dirty.events.push(event),
                Some(Err(_)) | None => broken = true,
            }
            // Coalesce everything already queued into one recomputation.
            while !broken {
                match stream.next().now_or_never() {
                    Some(Some(Ok(event))) => dirty.events.push(event),
                    Some(Some(Err(_))) | Some(None) => broken = true,
                    None => break,
                }
            }
            if broken {
                // Changes may have been missed: reopen from now and reload the view.
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
    fn waking_reaches_only_the_named_waiters() {
        let notifier = ConfigNotifier::default();
        let mut subscriptions: Vec<_> = (0..10_000)
            .map(|i| notifier.subscribe("ns", &format!("dev-{i}")))
            .collect();
        assert_eq!(notifier.waiting_devices(), 10_000);
        notifier.wake("ns", ["dev-7", "not-waiting"]);
        notifier.wake("other", ["dev-8"]);
        let woken: Vec<usize> = subscriptions
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.changed().now_or_never().map(|_| i))
            .collect();
        assert_eq!(woken, [7]);
        subscriptions.truncate(10);
        assert_eq!(notifier.waiting_devices(), 10);
        assert_eq!(notifier.channel_count(), 10);
    }

    #[test]
    fn channels_are_forgotten_when_the_last_waiter_goes() {
        let notifier = ConfigNotifier::default();
        let first = notifier.subscribe("ns", "dev");
        let second = notifier.subscribe("ns", "dev");
        let other = notifier.subscribe("ns2", "dev");
        assert_eq!(notifier.channel_count(), 2);
        drop(first);
        assert_eq!(notifier.channel_count(), 2);
        assert_eq!(notifier.waiting_devices(), 2);
        drop(second);
        drop(other);
        assert_eq!(notifier.channel_count(), 0);
        assert!(notifier.channels().is_empty());
        // Thousands of polls that come and go leave nothing behind.
        for round in 0..3 {
            let held: Vec<_> = (0..1000)
                .map(|i| notifier.subscribe("ns", &format!("dev-{round}-{i}")))
                .collect();
            assert_eq!(notifier.channel_count(), 1000);
            drop(held);
        }
        assert_eq!(notifier.channel_count(), 0);
    }
}
