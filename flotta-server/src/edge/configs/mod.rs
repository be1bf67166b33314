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
//! after the change, a set that claims it before or after, a secret or config map
//! its last rendering looked up (found or missing). Which devices a workload
//! or set change touches comes from the namespace's [`DeviceIndex`] (label postings),
//! not from a scan of the fleet. Which devices and workloads a secret or config map
//! change touches comes from two reverse indexes, name → workloads whose rendering
//! looked it up and name → devices whose cached rendering did, so a secret change
//! re-renders exactly the devices that use it. A workload whose new rendering fails
//! on a missing reference keeps its last good rendering
//! ([`flotta_core::reconcile::keep_last_good`]). A rendering is kept only when the entry's stamp did
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
use flotta_core::model::{
    ConfigMap, EdgeDevice, EdgeDeviceSet, EdgeWorkload, LabelSelector, MEMBER_OF_LABEL, Secret,
};
use flotta_core::reconcile::{
    AssignedRevision, LAST_RESOLVED_SPEC_FIELD, ObjectUses, PreparedWorkload, RenderedConfig,
    RolloutRecord, ServedConfig, ServedSource, WorkloadRevision, assigned_revision, keep_last_good,
    prepare_with_last_resolved, prepare_workload, render_device_config_prepared,
};
use flotta_core::selector::{DeviceIndex, Selector};

use crate::store::{ResourceKind, StoredObject, WatchEvent, WatchEventType};

mod referenced;
mod sets;

/// A device's configuration, rendered and serialized once and shared by every answer
/// until one of its inputs changes: what core decides to serve
/// ([`ServedConfig::decide`]) and what it tells about the device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CachedConfig {
    /// The version (content hash) of the configuration served, also the `ETag`;
    /// empty when nothing is served.
    pub(crate) version: String,
    /// The `DeviceConfigurationMessage` served, as JSON, `version` filled in; `None`
    /// when the rendering has errors and no good configuration is known.
    pub(crate) content: Option<Bytes>,
    /// What is served and why, for the device's status.
    pub(crate) served: ServedConfig,
}

impl CachedConfig {
    /// Serializes a rendering, or falls back on `last_good` when it has errors.
    pub(crate) fn from_rendered(
        rendered: &RenderedConfig,
        last_good: Option<&CachedConfig>,
    ) -> Self {
        let served = ServedConfig::decide(rendered, last_good.map(|g| &g.served));
        match served.source {
            Some(ServedSource::Rendered) => Self {
                version: rendered.version.to_string(),
                content: Some(Bytes::from(
                    serde_json::to_vec(&rendered.message).unwrap_or_default(),
                )),
                served,
            },
            Some(ServedSource::LastGood) => Self {
                version: served.version.clone().unwrap_or_default(),
                content: last_good.and_then(|g| g.content.clone()),
                served,
            },
            _ => Self {
                version: String::new(),
                content: None,
                served,
            },
        }
    }

    /// Whether this is a configuration rendered without errors (a future last good).
    fn is_good(&self) -> bool {
        self.served.source == Some(ServedSource::Rendered)
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
    /// The secrets and config maps the last cached rendering looked up.
    uses: ObjectUses,
    /// The last rendering without errors, served while later ones have errors.
    last_good: Option<Arc<CachedConfig>>,
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
    /// The workload as stored, to prepare again when a secret or config map changes.
    workload: Arc<EdgeWorkload>,
    prepared: Arc<PreparedWorkload>,
    /// The rollout record of the workload's status: which devices get which revision.
    record: Option<RolloutRecord>,
    /// The revision of the workload as it is now (`prepared`).
    live_revision: Option<String>,
    /// Earlier revisions the record still assigns to devices, prepared, by revision.
    earlier: BTreeMap<String, Arc<PreparedWorkload>>,
}

impl WorkloadEntry {
    /// `previous`: the rendering sent so far, kept when the new one fails on a
    /// missing reference.
    fn new(
        resource_version: u64,
        workload: EdgeWorkload,
        previous: Option<&PreparedWorkload>,
        refs: &ReferencedObjects,
    ) -> Self {
        let targeting = Targeting {
            deleting: workload.metadata.deletion_timestamp.is_some(),
            device: workload.spec.device.clone(),
            selector: workload.spec.device_selector.clone(),
        };
        let selector = targeting
            .selector
            .as_ref()
            .and_then(|s| Selector::try_from(s).ok());
        let prepared = match previous {
            Some(previous) => keep_last_good(
                Some(previous),
                prepare_workload(&workload, &refs.secret_list, &refs.config_map_list),
            ),
            // Nothing in memory (a start, another replica): the spec the status
            // records as last resolved stands in for it.
            None => {
                let last_resolved = workload
                    .status
                    .as_ref()
                    .and_then(|s| s.extra.get(LAST_RESOLVED_SPEC_FIELD))
                    .and_then(|v| serde_json::from_value(v.clone()).ok());
                prepare_with_last_resolved(
                    &workload,
                    last_resolved.as_ref(),
                    &refs.secret_list,
                    &refs.config_map_list,
                )
            }
        };
        let record = RolloutRecord::of(&workload);
        let live_revision = WorkloadRevision::of(&workload).map(|r| r.revision);
        let mut earlier = BTreeMap::new();
        if let Some(record) = &record {
            let assigned = [
                record.current_revision.as_deref(),
                record.previous_revision.as_deref(),
            ];
            for revision in assigned.into_iter().flatten() {
                if Some(revision) == live_revision.as_deref() || earlier.contains_key(revision) {
                    continue;
                }
                if let Some(entry) = record.revision(revision) {
                    let prepared = prepare_workload(
                        &entry.apply_to(&workload),
                        &refs.secret_list,
                        &refs.config_map_list,
                    );
                    earlier.insert(revision.to_owned(), Arc::new(prepared));
                }
            }
        }
        Self {
            resource_version,
            targeting,
            selector,
            workload: Arc::new(workload),
            prepared: Arc::new(prepared),
            record,
            live_revision,
            earlier,
        }
    }

    /// The rendering of the revision the rollout assigns `device`.
    fn prepared_for(&self, device: &str) -> &Arc<PreparedWorkload> {
        match assigned_revision(self.record.as_ref(), self.live_revision.as_deref(), device) {
            AssignedRevision::Live => &self.prepared,
            AssignedRevision::Earlier(revision) => self
                .earlier
                .get(&revision.revision)
                .unwrap_or(&self.prepared),
        }
    }

    /// Whether `other` gives every target the same revision as `self`.
    fn same_assignment(&self, other: &Self) -> bool {
        self.live_revision == other.live_revision
            && self.record.as_ref().map(RolloutRecord::assignment_key)
                == other.record.as_ref().map(RolloutRecord::assignment_key)
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

/// A secret (`true`) or config map (`false`) by name.
type ObjectKey = (bool, String);

/// The namespace's secrets and config maps, and who looked them up.
#[derive(Debug, Default)]
struct ReferencedObjects {
    secrets: BTreeMap<String, (u64, Secret)>,
    config_maps: BTreeMap<String, (u64, ConfigMap)>,
    /// The secrets in name order, shared with renderings in progress.
    secret_list: Arc<Vec<Secret>>,
    /// The config maps in name order, shared with renderings in progress.
    config_map_list: Arc<Vec<ConfigMap>>,
    /// Secret or config map → workloads whose rendering looked it up.
    workload_users: HashMap<ObjectKey, BTreeSet<String>>,
    /// Secret or config map → devices whose cached rendering looked it up.
    device_users: HashMap<ObjectKey, BTreeSet<String>>,
}

fn keys_of(uses: &ObjectUses) -> impl Iterator<Item = ObjectKey> + '_ {
    uses.secrets
        .iter()
        .map(|n| (true, n.clone()))
        .chain(uses.config_maps.iter().map(|n| (false, n.clone())))
}

fn index_add(index: &mut HashMap<ObjectKey, BTreeSet<String>>, uses: &ObjectUses, user: &str) {
    for key in keys_of(uses) {
        index.entry(key).or_default().insert(user.to_owned());
    }
}

fn index_remove(index: &mut HashMap<ObjectKey, BTreeSet<String>>, uses: &ObjectUses, user: &str) {
    for key in keys_of(uses) {
        if let Some(users) = index.get_mut(&key) {
            users.remove(user);
            if users.is_empty() {
                index.remove(&key);
            }
        }
    }
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
    /// Secrets and config maps, with their reverse indexes.
    refs: ReferencedObjects,
}

/// Everything a rendering needs, taken from the view under its lock.
struct RenderJob {
    device: Arc<EdgeDevice>,
    sets: Arc<Vec<EdgeDeviceSet>>,
    workloads: Vec<Arc<PreparedWorkload>>,
    secrets: Arc<Vec<Secret>>,
    config_maps: Arc<Vec<ConfigMap>>,
    stamp: u64,
    last_good: Option<Arc<CachedConfig>>,
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
            .map(|w| Arc::clone(w.prepared_for(name)))
            .collect();
        Some(Err(RenderJob {
            device: Arc::clone(&entry.device),
            sets: Arc::clone(&self.set_list),
            workloads,
            secrets: Arc::clone(&self.refs.secret_list),
            config_maps: Arc::clone(&self.refs.config_map_list),
            stamp: entry.stamp,
            last_good: entry.last_good.clone(),
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
        index_add(&mut self.refs.workload_users, &entry.prepared.uses, name);
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
        index_remove(&mut self.refs.workload_users, &entry.prepared.uses, name);
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
            if let Some(entry) = self.devices.remove(&name) {
                self.index.remove_device(&name);
                index_remove(&mut self.refs.device_users, &entry.uses, &name);
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
        let uses = self
            .devices
            .get(&name)
            .map(|e| e.uses.clone())
            .unwrap_or_default();
        let last_good = self.devices.get(&name).and_then(|e| e.last_good.clone());
        self.devices.insert(
            name.clone(),
            DeviceEntry {
                resource_version: object.resource_version,
                device: Arc::new(device),
                stamp: *stamps,
                rendered: None,
                uses,
                last_good,
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
        let previous = old.map(|w| Arc::clone(&w.prepared));
        let new = (event.event_type != WatchEventType::Deleted)
            .then(|| object.to_resource::<EdgeWorkload>().ok())
            .flatten()
            .map(|w| {
                WorkloadEntry::new(object.resource_version, w, previous.as_deref(), &self.refs)
            });
        let unchanged = if let (Some(old), Some(new)) = (old, &new)
            && old.targeting == new.targeting
            && old.prepared == new.prepared
            && old.earlier == new.earlier
        {
            // Status or metadata only: the devices whose assigned revision moved (a
            // rollout step) are the only ones whose configuration changes.
            Some(if old.same_assignment(new) {
                Vec::new()
            } else {
                new.targets(&self.index)
                    .into_iter()
                    .filter(|d| old.prepared_for(d) != new.prepared_for(d))
                    .collect()
            })
        } else {
            None
        };
        if let Some(moved) = unchanged {
            if let Some(new) = new {
                self.workloads.insert(object.name.clone(), new);
            }
            return self.invalidate(moved, stamps);
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
        let rendered = render_device_config_prepared(
            &job.device,
            &job.sets,
            &selected,
            &job.secrets,
            &job.config_maps,
        );
        let cached = Arc::new(CachedConfig::from_rendered(
            &rendered,
            job.last_good.as_deref(),
        ));
        self.renders.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        if let Some(view) = state.namespaces.get_mut(namespace)
            && let Some(entry) = view.devices.get_mut(device)
            && entry.stamp == job.stamp
        {
            entry.rendered = Some(Arc::clone(&cached));
            if cached.is_good() {
                entry.last_good = Some(Arc::clone(&cached));
            }
            if entry.uses != rendered.uses {
                index_remove(&mut view.refs.device_users, &entry.uses, device);
                index_add(&mut view.refs.device_users, &rendered.uses, device);
                entry.uses = rendered.uses;
            }
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
        // Devices first, so that workload and set targets are computed against them,
        // then secrets and config maps, which workloads are prepared with.
        let mut ordered = objects;
        ordered.sort_by_key(|o| match o.kind {
            ResourceKind::EdgeDevice => 0,
            ResourceKind::Secret | ResourceKind::ConfigMap => 1,
            _ => 2,
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
        // What each device was last served well survives the reload.
        for (namespace, view) in &mut namespaces {
            let Some(old) = state.namespaces.get(namespace) else {
                continue;
            };
            for (name, entry) in &mut view.devices {
                if let Some(before) = old.devices.get(name) {
                    entry.last_good.clone_from(&before.last_good);
                }
            }
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
        let empty = view.devices.is_empty()
            && view.workloads.is_empty()
            && view.sets.is_empty()
            && view.refs.secrets.is_empty()
            && view.refs.config_maps.is_empty();
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
        ResourceKind::Secret => view.apply_referenced(event, true, stamps),
        ResourceKind::ConfigMap => view.apply_referenced(event, false, stamps),
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
        let message: Value =
            serde_json::from_slice(config.content.as_deref().expect("content")).expect("json");
        message["workloads"]
            .as_array()
            .expect("workloads")
            .iter()
            .map(|w| w["specification"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn each_device_gets_the_revision_its_rollout_assigns_and_a_step_touches_only_the_moved() {
        let revision = |image: &str| {
            let workload: EdgeWorkload = workload("w", 1, "a", image)
                .to_resource()
                .expect("workload");
            WorkloadRevision::of(&workload).expect("renders")
        };
        let (old, new) = (revision("img:1"), revision("img:2"));
        let with_record = |rv: u64, updated: &[&str]| {
            let mut stored = workload("w", rv, "a", "img:2");
            let record = RolloutRecord {
                current_revision: Some(new.revision.clone()),
                previous_revision: Some(old.revision.clone()),
                updated: updated.iter().map(|d| (*d).to_owned()).collect(),
                released_batches: 1,
                revisions: vec![old.clone(), new.clone()],
                ..Default::default()
            };
            stored.body["status"] = json!({ "rollout": record });
            stored
        };
        let cache = ConfigCache::default();
        let mut objects: Vec<StoredObject> = (0..3)
            .map(|i| device(&format!("a{i}"), i + 1, "a"))
            .collect();
        objects.push(with_record(10, &["a0"]));
        cache.load(objects);
        assert!(workload_images(&config(&cache, "a0"))[0].contains("img:2"));
        let held = config(&cache, "a2");
        assert!(workload_images(&config(&cache, "a1"))[0].contains("img:1"));
        assert!(workload_images(&held)[0].contains("img:1"));

        // The next step gives a1 the new revision: only a1 is touched.
        let touched = cache.apply(&event(
            WatchEventType::Modified,
            with_record(11, &["a0", "a1"]),
        ));
        assert_eq!(touched, ["a1"]);
        assert!(workload_images(&config(&cache, "a1"))[0].contains("img:2"));
        assert!(Arc::ptr_eq(&config(&cache, "a2"), &held));
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
        let x: Value =
            serde_json::from_slice(config(&cache, "x").content.as_deref().expect("content"))
                .expect("json");
        assert_eq!(x["configuration"]["heartbeat"]["period_seconds"], 7);
        assert!(Arc::ptr_eq(&config(&cache, "y"), &before));
    }

    fn secret(name: &str, rv: u64, token: &str) -> StoredObject {
        use base64::Engine;
        object(
            ResourceKind::Secret,
            name,
            rv,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {},
                "data": {"token": base64::engine::general_purpose::STANDARD.encode(token)}}),
        )
    }

    fn secret_workload(name: &str, rv: u64, site: &str, image: &str, secret: &str) -> StoredObject {
        object(
            ResourceKind::EdgeWorkload,
            name,
            rv,
            json!({"apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeWorkload",
                "metadata": {}, "spec": {"type": "pod",
                "deviceSelector": {"matchLabels": {"site": site}},
                "pod": {"spec": {"containers": [{"name": "app", "image": image,
                    "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]}]}}}}),
        )
    }

    fn secret_names(config: &CachedConfig) -> Vec<String> {
        let message: Value =
            serde_json::from_slice(config.content.as_deref().expect("content")).expect("json");
        message["secrets"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_secret_change_touches_exactly_the_devices_that_use_it() {
        let cache = ConfigCache::default();
        let mut objects: Vec<StoredObject> = (0..20)
            .map(|i| device(&format!("a{i}"), i + 1, "a"))
            .chain((0..20).map(|i| device(&format!("b{i}"), 100 + i, "b")))
            .collect();
        objects.push(secret("api", 200, "t1"));
        objects.push(secret("unused", 201, "x"));
        objects.push(secret_workload("w", 202, "a", "img:1", "api"));
        cache.load(objects);
        let before = config(&cache, "a1");
        assert_eq!(secret_names(&before), ["api"]);
        let b_before = config(&cache, "b1");
        assert!(secret_names(&b_before).is_empty());

        // A secret nobody uses: nobody is touched.
        assert!(
            cache
                .apply(&event(WatchEventType::Modified, secret("unused", 203, "y")))
                .is_empty()
        );
        // The used one: exactly the workload's devices.
        let touched = cache.apply(&event(WatchEventType::Modified, secret("api", 204, "t2")));
        let mut expected: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
        expected.sort();
        assert_eq!(touched, expected);
        let after = config(&cache, "a1");
        assert_ne!(after.version, before.version);
        assert!(Arc::ptr_eq(&config(&cache, "b1"), &b_before));

        // The workload moves to a secret that does not exist: its devices keep the
        // last good rendering (same image, same secret).
        cache.apply(&event(
            WatchEventType::Modified,
            secret_workload("w", 205, "a", "img:2", "api2"),
        ));
        let held = config(&cache, "a1");
        assert_eq!(held.version, after.version);
        assert!(workload_images(&held)[0].contains("img:1"));
        // Creating it makes them converge.
        let touched = cache.apply(&event(WatchEventType::Added, secret("api2", 206, "t3")));
        assert_eq!(touched, expected);
        let converged = config(&cache, "a1");
        assert!(workload_images(&converged)[0].contains("img:2"));
        assert_eq!(secret_names(&converged), ["api2"]);
    }

    #[test]
    fn a_rendering_with_errors_serves_the_last_good_configuration() {
        let cache = ConfigCache::default();
        let set = |rv: u64, template: Value| {
            object(
                ResourceKind::EdgeDeviceSet,
                "fleet",
                rv,
                json!({"apiVersion": "management.project-flotta.io/v1alpha1",
                    "kind": "EdgeDeviceSet", "metadata": {},
                    "spec": {"selector": {"matchLabels": {"site": "a"}},
                        "heartbeat": {"periodSeconds": 7}, "template": template}}),
            )
        };
        cache.load(vec![device("d", 1, "a"), set(2, json!({}))]);
        let good = config(&cache, "d");
        assert_eq!(good.served.source, Some(ServedSource::Rendered));
        assert_eq!(good.served.heartbeat_period_seconds, 7);

        // The template needs a label the device lacks: the last good one is served.
        cache.apply(&event(
            WatchEventType::Modified,
            set(
                3,
                json!({"spec": {"files": [{"path": "/etc/{{ .metadata.labels.zone }}",
                    "content": "x"}]}}),
            ),
        ));
        let served = config(&cache, "d");
        assert_eq!(served.served.source, Some(ServedSource::LastGood));
        assert_eq!(served.version, good.version);
        assert_eq!(served.content, good.content);
        let (reason, message) = served.served.spec_error.clone().expect("spec error");
        assert_eq!(reason.as_str(), "TemplateFailed");
        assert!(message.contains("zone"), "{message}");

        // The label arrives: the new rendering is served.
        let mut labelled = device("d", 4, "a");
        labelled.body["metadata"]["labels"]["zone"] = json!("z1");
        cache.apply(&event(WatchEventType::Modified, labelled));
        let fixed = config(&cache, "d");
        assert_eq!(fixed.served.source, Some(ServedSource::Rendered));
        assert_ne!(fixed.version, good.version);
    }

    #[test]
    fn nothing_is_served_without_a_good_configuration() {
        let cache = ConfigCache::default();
        let set = object(
            ResourceKind::EdgeDeviceSet,
            "fleet",
            2,
            json!({"apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDeviceSet", "metadata": {},
                "spec": {"selector": {"matchLabels": {"site": "a"}},
                    "template": {"spec": {"files": [{"path": "/{{ .metadata.labels.zone }}",
                        "content": "x"}]}}}}),
        );
        cache.load(vec![device("d", 1, "a"), set]);
        let served = config(&cache, "d");
        assert_eq!(served.served.source, Some(ServedSource::Nothing));
        assert!(served.content.is_none());
        assert!(served.version.is_empty());
    }
}
