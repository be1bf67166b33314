//! Secrets and config maps in the configuration view: which devices a change to
//! one touches.

use flotta_core::model::ObjectMeta;

use super::*;

impl NamespaceView {
    /// Applies a secret (`secret` true) or config map event; returns the devices
    /// whose inputs changed: those whose cached rendering looked the object up, and
    /// the targets of the workloads whose rendering changes with it.
    pub(super) fn apply_referenced(
        &mut self,
        event: &WatchEvent,
        secret: bool,
        stamps: &mut u64,
    ) -> Vec<String> {
        let object = &event.object;
        let name = object.name.clone();
        let known = if secret {
            self.refs.secrets.get(&name).map(|e| e.0)
        } else {
            self.refs.config_maps.get(&name).map(|e| e.0)
        };
        if known.is_some_and(|rv| rv >= object.resource_version) {
            return Vec::new();
        }
        let deleted = event.event_type == WatchEventType::Deleted;
        let rv = object.resource_version;
        let refs = &mut self.refs;
        let changed = if secret {
            let new = current(object, deleted, |s: &mut Secret| &mut s.metadata);
            record(&mut refs.secrets, &mut refs.secret_list, &name, rv, new)
        } else {
            let new = current(object, deleted, |c: &mut ConfigMap| &mut c.metadata);
            record(
                &mut refs.config_maps,
                &mut refs.config_map_list,
                &name,
                rv,
                new,
            )
        };
        if !changed {
            return Vec::new();
        }
        let key = (secret, name);
        let mut affected: BTreeSet<String> = self
            .refs
            .device_users
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let workloads: Vec<String> = self
            .refs
            .workload_users
            .get(&key)
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default();
        for workload in workloads {
            let Some(old) = self.workloads.remove(&workload) else {
                continue;
            };
            let new = WorkloadEntry::new(
                old.resource_version,
                (*old.workload).clone(),
                Some(&old.prepared),
                &self.refs,
            );
            if new.prepared != old.prepared || new.earlier != old.earlier {
                affected.extend(new.targets(&self.index));
            }
            self.unregister(&workload, &old);
            self.register(&workload, &new);
            self.workloads.insert(workload, new);
        }
        self.invalidate(affected, stamps)
    }
}

/// The object a watch event carries (`None` when deleted or unreadable), without the
/// bookkeeping a write moves (resource version, managed fields).
fn current<T: serde::de::DeserializeOwned>(
    object: &StoredObject,
    deleted: bool,
    metadata: fn(&mut T) -> &mut ObjectMeta,
) -> Option<T> {
    if deleted {
        return None;
    }
    let mut value = object.to_resource::<T>().ok()?;
    let meta = metadata(&mut value);
    meta.resource_version = None;
    meta.managed_fields = None;
    Some(value)
}

/// Records the new state of a secret or config map (`None`: gone) in `objects`,
/// refreshing the shared `list` when it changed; returns whether it changed.
fn record<T: Clone + PartialEq>(
    objects: &mut BTreeMap<String, (u64, T)>,
    list: &mut Arc<Vec<T>>,
    name: &str,
    rv: u64,
    new: Option<T>,
) -> bool {
    let changed = objects.get(name).map(|e| &e.1) != new.as_ref();
    match new {
        Some(new) => {
            objects.insert(name.to_owned(), (rv, new));
        }
        None => {
            objects.remove(name);
        }
    }
    if changed {
        *list = Arc::new(objects.values().map(|e| e.1.clone()).collect());
    }
    changed
}
