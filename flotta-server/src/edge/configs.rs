//! Rendered device configurations kept in memory, and the fleet view they are
//! rendered from.
//!
//! The view mirrors, per namespace, the devices (without their status), the
//! workloads (each prepared once with [`prepare_workload`]) and the device sets. It
//! is loaded once from the store when the background tasks start and then follows
//! the store's watch events, so answering a config poll reads nothing from the store:
//! an unchanged device is answered from its cached rendering, a changed one is
//! rendered from the view.
//!
//! Each device entry carries a stamp, replaced by a fresh one whenever one of its
//! inputs changes: its own labels or spec, a workload that targets it before or
//! after the change, a set that claims it before or after. Which devices a workload
//! or set change touches comes from the namespace's [`DeviceIndex`] (label postings),
//! not from a scan of the fleet. A rendering is kept only when the entry's stamp did
//! not move while it was being computed, so a cached configuration never predates a
//! change the view has seen.
//!
//! The view is eventually consistent with the store: a write becomes visible to polls
//! once the watcher has applied its event (normally within a millisecond on one
//! server, a `NOTIFY` round trip across replicas). A device the view does not know
//! yet is read from the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use flotta_core::model::{EdgeDevice, EdgeDeviceSet, EdgeWorkload, LabelSelector, MEMBER_OF_LABEL};
use flotta_core::reconcile::{
    PreparedWorkload, RenderedConfig, prepare_workload, render_device_config_prepared,
};
use flotta_core::selector::{DeviceIndex, Selector};

use crate::store::{ResourceKind, StoredObject, WatchEvent, WatchEventType};

/// A device's configuration, rendered and serialized once and shared by every answer
/// until one of its inputs changes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CachedConfig {
    /// The configuration version (content hash), also the `ETag`.
    pub(super) version: String,
    /// The `DeviceConfigurationMessage` as JSON, `version` filled in.
    pub(super) content: Bytes,
}

impl CachedConfig {
    /// Serializes a rendering.
    pub(super) fn from_rendered(rendered: &RenderedConfig) -> Self {
        Self {
            version: rendered.version.to_string(),
            content: Bytes::from(serde_json::to_vec(&rendered.message).unwrap_or_default()),
        }
    }
}

/// Counters of the configuration cache, for tests and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigCacheStats {
    /// Configurations rendered from the in-memory view.
    pub renders: u64,
    /// Polls answered from a cached rendering.
    pub hits: u64,
    /// Polls answered from a store read, the view not knowing the device (yet).
    pub store_reads: u64,
    /// Devices in the view.
    pub devices: u64,
    /// Wake-up channels held: one per device with a long-poll in progress.
    pub long_poll_channels: u64,
}

/// What [`ConfigCache::config`] found.
#[derive(Debug)]
pub(super) enum Lookup {
    /// The view is not loaded (no background tasks): read the store.
    NotLive,
    /// The view does not know the device: read the store.
    Unknown,
    /// The device's configuration.
    Config(Arc<CachedConfig>),
}

#[derive(Debug)]
struct DeviceEntry {
    resource_version: u64,
    /// The device without status and resource version: what rendering reads.
    device: Arc<EdgeDevice>,
    /// Replaced by a fresh value whenever an input of the device's config changes.
    stamp: u64,
    /// The rendering for `stamp`, once computed.
    rendered: Option<Arc<CachedConfig>>,
}

/// What decides which devices a workload goes to.
#[derive(Debug, Clone, PartialEq)]
struct Targeting {
    /// Being deleted: it goes nowhere.
    deleting: bool,
    device: Option<String>,
    selector: Option<LabelSelector>,
}

#[derive(Debug)]
struct WorkloadEntry {
    resource_version: u64,
    targeting: Targeting,
    /// The parsed selector, `None` when absent or invalid (then it selects nothing,
    /// as [`flotta_core::reconcile::workload_targets`] has it).
    selector: Option<Selector>,
    prepared: Arc<PreparedWorkload>,
}

impl WorkloadEntry {
    fn new(resource_version: u64, workload: &EdgeWorkload) -> Self {
        let targeting = Targeting {
            deleting: workload.metadata.deletion_timestamp.is_some(),
            device: workload.spec.device.clone(),
            selector: workload.spec.device_selector.clone(),
        };
        let selector = targeting
            .selector
            .as_ref()
            .and_then(|s| Selector::try_from(s).ok());
        Self {
            resource_version,
            targeting,
            selector,
            prepared: Arc::new(prepare_workload(workload, &[], &[])),
        }
    }

    /// The devices (of those in `index`, plus the one named) the workload targets.
    fn targets(&self, index: &DeviceIndex) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        if self.targeting.deleting {
            return names;
        }
        if let Some(device) = &self.targeting.device {
            names.insert(device.clone());
        }
        if let Some(selector) = &self.selector {
            names.extend(index.select(selector).into_iter().map(str::to_owned));
        }
        names
    }
}

#[derive(Debug)]
struct SetEntry {
    resource_version: u64,
    set: EdgeDeviceSet,
}

/// One namespace of the view.
#[derive(Debug, Default)]
struct NamespaceView {
    devices: HashMap<String, DeviceEntry>,
    workloads: BTreeMap<String, WorkloadEntry>,
    /// Device name → active workloads naming it in `spec.device`.
    by_device_name: HashMap<String, BTreeSet<String>>,
    sets: BTreeMap<String, SetEntry>,
    /// The sets in name order, shared with renderings in progress.
    set_list: Arc<Vec<EdgeDeviceSet>>,
    /// Device labels, and the selectors of active workloads registered by name.
    index: DeviceIndex,
}

/// Everything a rendering needs, taken from the view under its lock.
struct RenderJob {
    device: Arc<EdgeDevice>,
    sets: Arc<Vec<EdgeDeviceSet>>,
    workloads: Vec<Arc<PreparedWorkload>>,
    stamp: u64,
}

impl NamespaceView {
    fn job(&self, name: &str) -> Option<Result<Arc<CachedConfig>, RenderJob>> {
        let entry = self.devices.get(name)?;
        if let Some(rendered) = &entry.rendered {
            return Some(Ok(Arc::clone(rendered)));
        }
        let mut names: BTreeSet<&str> = self
            .index
            .selectors_matching_device(name)
            .into_iter()
            .collect();
        if let Some(named) = self.by_device_name.get(name) {
            names.extend(named.iter().map(String::as_str));
        }
        let workloads = names
            .into_iter()
            .filter_map(|w| self.workloads.get(w))
            .filter(|w| !w.targeting.deleting)
            .map(|w| Arc::clone(&w.prepared))
            .collect();
        Some(Err(RenderJob {
            device: Arc::clone(&entry.device),
            sets: Arc::clone(&self.set_list),
            workloads,
            stamp: entry.stamp,
        }))
    }

    /// Gives the named devices fresh stamps and drops their renderings; returns
    /// those the view knows.
    fn invalidate(
        &mut self,
        names: impl IntoIterator<Item = String>,
        stamps: &mut u64,
    ) -> Vec<String> {
        let mut touched = Vec::new();
        for name in names {
            if let Some(entry) = self.devices.get_mut(&name) {
                *stamps += 1;
                entry.stamp = *stamps;
                entry.rendered = None;
                touched.push(name);
            }
        }
        touched
    }

    fn all_devices(&self) -> Vec<String> {
        self.devices.keys().cloned().collect()
    }

    fn register(&mut self, name: &str, entry: &WorkloadEntry) {
        if entry.targeting.deleting {
            return;
        }
        if let Some(selector) = &entry.selector {
            self.index.register_selector(name, selector.clone());
        }
        if let Some(device) = &entry.targeting.device {
            self.by_device_name
                .entry(device.clone())
                .or_default()
                .insert(name.to_owned());
        }
    }

    fn unregister(&mut self, name: &str, entry: &WorkloadEntry) {
        self.index.unregister_selector(name);
        if let Some(device) = &entry.targeting.device
            && let Some(names) = self.by_device_name.get_mut(device)
        {
            names.remove(name);
            if names.is_empty() {
                self.by_device_name.remove(device);
            }
        }
    }

    /// Applies a device event; returns the devices whose inputs changed.
    fn apply_device(&mut self, event: &WatchEvent, stamps: &mut u64) -> Vec<String> {
        let object = &event.object;
        let name = object.name.clone();
        let known = self.devices.get(&name).map(|e| e.resource_version);
        if known.is_some_and(|rv| rv >= object.resource_version) {
            return Vec::new();
        }
        let device = (event.event_type != WatchEventType::Deleted)
            .then(|| device_inputs(object))
            .flatten();
        let Some(device) = device else {
            // Gone (or unreadable: the store path reports it).
            if self.devices.remove(&name).is_some() {
                self.index.remove_device(&name);
            }
            return vec![name];
        };
        if let Some(entry) = self.devices.get_mut(&name)
            && *entry.device == device
        {
            // Status or bookkeeping only: the configuration stays.
            entry.resource_version = object.resource_version;
            return Vec::new();
        }
        self.index
            .upsert_device(&name, device.metadata.labels.clone().unwrap_or_default());
        *stamps += 1;
        self.devices.insert(
            name.clone(),
            DeviceEntry {
                resource_version: object.resource_version,
                device: Arc::new(device),
                stamp: *stamps,
                rendered: None,
            },
        );
        vec![name]
    }

    /// Applies a workload event; returns the devices whose inputs changed.
    fn apply_workload(&mut self, event: &WatchEvent, stamps: &mut u64) -> Vec<String> {
        let object = &event.object;
        let old = self.workloads.get(&object.name);
        if old.is_some_and(|w| w.resource_version >= object.resource_version) {
            return Vec::new();
        }
        let new = (event.event_type != WatchEventType::Deleted)
            .then(|| parse::<EdgeWorkload>(object))
            .flatten()
            .map(|w| WorkloadEntry::new(object.resource_version, &w));
        if let (Some(old), Some(new)) = (old, &new)
            && old.targeting == new.targeting
            && old.prepared == new.prepared
        {
            // Status or metadata only: no device's configuration changes.
            if let Some(entry) = self.workloads.get_mut(&object.name) {
                entry.resource_version = object.resource_version;
            }
            return Vec::new();
        }
        let mut affected = BTreeSet::new();
        if let Some(old) = self.workloads.remove(&object.name) {
            affected.extend(old.targets(&self.index));
            self.unregister(&object.name, &old);
        }
        if let Some(new) = new {
            affected.extend(new.targets(&self.index));
            self.register(&object.name, &new);
            self.workloads.insert(object.name.clone(), new);
        }
        self.invalidate(affected, stamps)
    }

    /// The devices a set claims or may claim: those labelled as its members and those
    /// its selector matches; every device when that cannot be told from labels.
    fn set_members(&self, name: &str, set: &EdgeDeviceSet) -> Vec<String> {
        let by_label = format!("{MEMBER_OF_LABEL}={name}").parse::<Selector>();
        let by_selector = set.spec.selector.as_ref().map(Selector::try_from);
        match (by_label, by_selector) {
            (Ok(label), None) => self.selected(&label),
            (Ok(label), Some(Ok(selector))) => {
                let mut names = self.selected(&label);
                names.extend(self.selected(&selector));
                names
            }
            _ => self.all_devices(),
        }
    }

    fn selected(&self, selector: &Selector) -> Vec<String> {
        self.index
            .select(selector)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Applies a device-set event; returns the devices whose inputs changed.
    fn apply_set(&mut self, event: &WatchEvent, stamps: &mut u64) -> Vec<String> {
        let object = &event.object;
        let old = self.sets.get(&object.name);
        if old.is_some_and(|s| s.resource_version >= object.resource_version) {
            return Vec::new();
        }
        let new = (event.event_type != WatchEventType::Deleted)
            .then(|| parse::<EdgeDeviceSet>(object))
            .flatten()
            .map(|mut set| {
                set.status = None;
                set.metadata.resource_version = None;
                set.metadata.managed_fields = None;
                set
            });
        if let (Some(old), Some(new)) = (old, &new)
            && old.set == *new
        {
            if let Some(entry) = self.sets.get_mut(&object.name) {
                entry.resource_version = object.resource_version;
            }
            return Vec::new();
        }
        let mut affected = Vec::new();
        if let Some(old) = self.sets.remove(&object.name) {
            affected.extend(self.set_members(&object.name, &old.set));
        }
        if let Some(set) = new {
            affected.extend(self.set_members(&object.name, &set));
            self.sets.insert(
                object.name.clone(),
                SetEntry {
                    resource_version: object.resource_version,
                    set,
                },
            );
        }
        self.set_list = Arc::new(self.sets.values().map(|s| s.set.clone()).collect());
        let affected: BTreeSet<String> = affected.into_iter().collect();
        self.invalidate(affected, stamps)
    }
}

fn parse<T: serde::de::DeserializeOwned>(object: &StoredObject) -> Option<T> {
    serde_json::from_value(object.body.clone()).ok()
}

/// The part of a stored device its configuration depends on: everything but the
/// status and the resource version (which a status write moves).
fn device_inputs(object: &StoredObject) -> Option<EdgeDevice> {
    let mut body = object.body.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("status");
    }
    let mut device: EdgeDevice = serde_json::from_value(body).ok()?;
    device.metadata.resource_version = None;
    device.metadata.managed_fields = None;
    Some(device)
}

/// The in-memory view and the renderings cached from it.
#[derive(Debug, Default)]
pub(super) struct ConfigCache {
    live: AtomicBool,
    state: Mutex<CacheState>,
    renders: AtomicU64,
    hits: AtomicU64,
    store_reads: AtomicU64,
}

#[derive(Debug, Default)]
struct CacheState {
    namespaces: HashMap<String, NamespaceView>,
    /// Last stamp handed out; stamps never repeat, also across reloads.
    stamps: u64,
}

impl ConfigCache {
    fn state(&self) -> MutexGuard<'_, CacheState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The device's configuration from the view, rendering it if needed.
    pub(super) fn config(&self, namespace: &str, device: &str) -> Lookup {
        if !self.live.load(Ordering::Acquire) {
            return Lookup::NotLive;
        }
        let job = {
            let state = self.state();
            match state.namespaces.get(namespace).and_then(|v| v.job(device)) {
                None => return Lookup::Unknown,
                Some(Ok(cached)) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Lookup::Config(cached);
                }
                Some(Err(job)) => job,
            }
        };
        // Rendered outside the lock: the woken devices of a change render in parallel.
        let selected: Vec<&PreparedWorkload> = job.workloads.iter().map(AsRef::as_ref).collect();
        let rendered = render_device_config_prepared(&job.device, &job.sets, &selected, &[], &[]);
        let cached = Arc::new(CachedConfig::from_rendered(&rendered));
        self.renders.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        if let Some(entry) = state
            .namespaces
            .get_mut(namespace)
            .and_then(|v| v.devices.get_mut(device))
            && entry.stamp == job.stamp
        {
            entry.rendered = Some(Arc::clone(&cached));
        }
        Lookup::Config(cached)
    }

    /// Counts a poll answered from the store.
    pub(super) fn note_store_read(&self) {
        self.store_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters.
    pub(super) fn stats(&self) -> ConfigCacheStats {
        let devices = self
            .state()
            .namespaces
            .values()
            .map(|v| v.devices.len() as u64)
            .sum();
        ConfigCacheStats {
            renders: self.renders.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            store_reads: self.store_reads.load(Ordering::Relaxed),
            devices,
            long_poll_channels: 0,
        }
    }

    /// Replaces the view with `objects` (every device, workload and set, as listed)
    /// and makes it live. Returns every device of the old and new view, whose inputs
    /// may all have changed.
    pub(super) fn load(&self, objects: Vec<StoredObject>) -> Vec<(String, String)> {
        let mut state = self.state();
        let mut touched: Vec<(String, String)> = state
            .namespaces
            .iter()
            .flat_map(|(ns, view)| view.devices.keys().map(|d| (ns.clone(), d.clone())))
            .collect();
        let mut stamps = state.stamps;
        let mut namespaces: HashMap<String, NamespaceView> = HashMap::new();
        // Devices first, so that workload and set targets are computed against them.
        let mut ordered = objects;
        ordered.sort_by_key(|o| match o.kind {
            ResourceKind::EdgeDevice => 0,
            _ => 1,
        });
        for object in ordered {
            let namespace = object.namespace.clone();
            let event = WatchEvent {
                event_type: WatchEventType::Added,
                object,
            };
            let view = namespaces.entry(namespace.clone()).or_default();
            touched.extend(
                apply_to(view, &event, &mut stamps)
                    .into_iter()
                    .map(|d| (namespace.clone(), d)),
            );
        }
        state.namespaces = namespaces;
        state.stamps = stamps;
        drop(state);
        self.live.store(true, Ordering::Release);
        touched.sort();
        touched.dedup();
        touched
    }

    /// Applies one store change; returns the devices whose configuration inputs
    /// changed (those to wake).
    pub(super) fn apply(&self, event: &WatchEvent) -> Vec<String> {
        let mut state = self.state();
        let mut stamps = state.stamps;
        let view = state
            .namespaces
            .entry(event.object.namespace.clone())
            .or_default();
        let touched = apply_to(view, event, &mut stamps);
        let empty = view.devices.is_empty() && view.workloads.is_empty() && view.sets.is_empty();
        if empty {
            state.namespaces.remove(&event.object.namespace);
        }
        state.stamps = stamps;
        touched
    }
}

fn apply_to(view: &mut NamespaceView, event: &WatchEvent, stamps: &mut u64) -> Vec<String> {
    match event.object.kind {
        ResourceKind::EdgeDevice => view.apply_device(event, stamps),
        ResourceKind::EdgeWorkload => view.apply_workload(event, stamps),
        ResourceKind::EdgeDeviceSet => view.apply_set(event, stamps),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn object(kind: ResourceKind, name: &str, rv: u64, body: Value) -> StoredObject {
        let mut body = body;
        body["metadata"]["name"] = json!(name);
        body["metadata"]["namespace"] = json!("ns");
        body["metadata"]["resourceVersion"] = json!(rv.to_string());
        StoredObject {
            kind,
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: rv,
            generation: 1,
            labels: BTreeMap::new(),
            creation_timestamp: time::OffsetDateTime::UNIX_EPOCH,
            deletion_timestamp: None,
            body,
        }
    }

    fn device(name: &str, rv: u64, site: &str) -> StoredObject {
        object(
            ResourceKind::EdgeDevice,
            name,
            rv,
            json!({"apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDevice",
                "metadata": {"labels": {"site": site}}, "spec": {}}),
        )
    }

    fn workload(name: &str, rv: u64, site: &str, image: &str) -> StoredObject {
        object(
            ResourceKind::EdgeWorkload,
            name,
            rv,
            json!({"apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeWorkload",
                "metadata": {}, "spec": {"type": "pod",
                "deviceSelector": {"matchLabels": {"site": site}},
                "pod": {"spec": {"containers": [{"name": "app", "image": image}]}}}}),
        )
    }

    fn event(event_type: WatchEventType, object: StoredObject) -> WatchEvent {
        WatchEvent { event_type, object }
    }

    fn config(cache: &ConfigCache, name: &str) -> Arc<CachedConfig> {
        match cache.config("ns", name) {
            Lookup::Config(config) => config,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn workload_images(config: &CachedConfig) -> Vec<String> {
        let message: Value = serde_json::from_slice(&config.content).expect("json");
        message["workloads"]
            .as_array()
            .expect("workloads")
            .iter()
            .map(|w| w["specification"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn a_workload_change_touches_exactly_the_devices_it_selects() {
        let cache = ConfigCache::default();
        assert!(matches!(cache.config("ns", "a1"), Lookup::NotLive));
        let mut objects: Vec<StoredObject> = (0..50)
            .map(|i| device(&format!("a{i}"), i + 1, "a"))
            .chain((0..50).map(|i| device(&format!("b{i}"), 100 + i, "b")))
            .collect();
        objects.push(workload("w", 200, "a", "img:1"));
        cache.load(objects);
        let before = config(&cache, "a1");
        assert_eq!(workload_images(&before).len(), 1);
        let b_before = config(&cache, "b1");
        assert!(workload_images(&b_before).is_empty());
        let renders = cache.stats().renders;

        // Unchanged: the same shared body, no rendering.
        assert!(Arc::ptr_eq(&config(&cache, "a1"), &before));
        assert_eq!(cache.stats().renders, renders);

        let touched = cache.apply(&event(
            WatchEventType::Modified,
            workload("w", 201, "a", "img:2"),
        ));
        let expected: Vec<String> = {
            let mut names: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
            names.sort();
            names
        };
        assert_eq!(touched, expected);
        let after = config(&cache, "a1");
        assert_ne!(after.version, before.version);
        assert!(workload_images(&after)[0].contains("img:2"));
        assert!(Arc::ptr_eq(&config(&cache, "b1"), &b_before));

        // A status-only change of the workload touches nobody.
        let mut status_only = workload("w", 202, "a", "img:2");
        status_only.body["status"] = json!({"observedGeneration": 2});
        assert!(
            cache
                .apply(&event(WatchEventType::Modified, status_only))
                .is_empty()
        );

        // An old event replayed after the load changes nothing.
        assert!(
            cache
                .apply(&event(
                    WatchEventType::Modified,
                    workload("w", 150, "a", "img:0")
                ))
                .is_empty()
        );
    }

    #[test]
    fn label_changes_retarget_and_deletions_propagate() {
        let cache = ConfigCache::default();
        cache.load(vec![
            device("d1", 1, "a"),
            device("d2", 2, "b"),
            workload("w", 3, "a", "img:1"),
        ]);
        assert_eq!(workload_images(&config(&cache, "d1")).len(), 1);
        assert!(workload_images(&config(&cache, "d2")).is_empty());

        // A status write leaves the configuration alone.
        let mut beat = device("d2", 4, "b");
        beat.body["status"] = json!({"phase": "up"});
        assert!(
            cache
                .apply(&event(WatchEventType::Modified, beat))
                .is_empty()
        );

        assert_eq!(
            cache.apply(&event(WatchEventType::Modified, device("d2", 5, "a"))),
            ["d2"]
        );
        assert_eq!(workload_images(&config(&cache, "d2")).len(), 1);
        assert_eq!(
            cache.apply(&event(WatchEventType::Modified, device("d1", 6, "b"))),
            ["d1"]
        );
        assert!(workload_images(&config(&cache, "d1")).is_empty());

        let touched = cache.apply(&event(
            WatchEventType::Deleted,
            workload("w", 7, "a", "img:1"),
        ));
        assert_eq!(touched, ["d2"]);
        assert!(workload_images(&config(&cache, "d2")).is_empty());

        assert_eq!(
            cache.apply(&event(WatchEventType::Deleted, device("d2", 8, "a"))),
            ["d2"]
        );
        assert!(matches!(cache.config("ns", "d2"), Lookup::Unknown));
        assert_eq!(cache.stats().devices, 1);
    }

    #[test]
    fn a_set_change_touches_its_members_only() {
        let cache = ConfigCache::default();
        let mut member = device("m", 1, "a");
        member.body["metadata"]["labels"][MEMBER_OF_LABEL] = json!("fleet");
        cache.load(vec![member, device("x", 2, "b"), device("y", 3, "c")]);
        let set = object(
            ResourceKind::EdgeDeviceSet,
            "fleet",
            4,
            json!({"apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDeviceSet",
                "metadata": {}, "spec": {"selector": {"matchLabels": {"site": "b"}},
                "heartbeat": {"periodSeconds": 7}}}),
        );
        let before = config(&cache, "y");
        let touched = cache.apply(&event(WatchEventType::Added, set));
        assert_eq!(touched, ["m", "x"]);
        let x: Value = serde_json::from_slice(&config(&cache, "x").content).expect("json");
        assert_eq!(x["configuration"]["heartbeat"]["period_seconds"], 7);
        assert!(Arc::ptr_eq(&config(&cache, "y"), &before));
    }
}
