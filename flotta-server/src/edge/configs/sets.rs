//! Device sets in the configuration view: which devices a set change touches.

use flotta_core::model::EdgeDeviceSetStatus;
use flotta_core::reconcile::SetRevision;

use super::*;

impl NamespaceView {
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
    pub(super) fn apply_set(&mut self, event: &WatchEvent, stamps: &mut u64) -> Vec<String> {
        let object = &event.object;
        let old = self.sets.get(&object.name);
        if old.is_some_and(|s| s.resource_version >= object.resource_version) {
            return Vec::new();
        }
        let new = (event.event_type != WatchEventType::Deleted)
            .then(|| object.to_resource::<EdgeDeviceSet>().ok())
            .flatten()
            .map(|mut set| {
                // Of the status, rendering reads only which member gets which
                // revision: batch counters and pause reasons re-render nobody.
                let record: Option<RolloutRecord<SetRevision>> = RolloutRecord::of(&set);
                set.status = record.map(|record| {
                    let assignment = RolloutRecord {
                        current_revision: record.current_revision,
                        previous_revision: record.previous_revision,
                        complete: record.complete,
                        updated: record.updated,
                        revisions: record.revisions,
                        ..Default::default()
                    };
                    EdgeDeviceSetStatus {
                        rollout: serde_json::to_value(assignment).ok(),
                        ..Default::default()
                    }
                });
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
