//! Inverted index over device labels, for fleet-scale selector matching.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{LabelTest, Selector};

/// Device labels, as stored in the index.
type LabelMap = BTreeMap<String, String>;

/// Dense number of a device or registered selector inside the index: postings and
/// anchors hold these instead of names, so set operations compare integers.
type Slot = u32;

/// Which devices carry one label key, and with which values.
#[derive(Debug, Default)]
struct KeyPostings {
    /// Every device that has the key.
    devices: BTreeSet<Slot>,
    /// Value → devices with `key=value`.
    by_value: HashMap<String, BTreeSet<Slot>>,
}

#[derive(Debug)]
struct DeviceEntry {
    id: Arc<str>,
    labels: LabelMap,
}

#[derive(Debug)]
struct RegisteredSelector {
    name: Arc<str>,
    selector: Selector,
    /// Where it is filed; kept because the choice depends on the fleet at the time.
    anchor: Anchor,
}

/// Registered selectors filed under one requirement each of them cannot match
/// without, so a device change only evaluates selectors that could be affected.
#[derive(Debug, Default)]
struct SelectorAnchors {
    /// key → value → selectors that need `key=value` (from `=` or `in`).
    by_pair: HashMap<String, HashMap<String, Vec<Slot>>>,
    /// key → selectors that need the key (from `key`, `>` or `<`).
    by_key: HashMap<String, Vec<Slot>>,
    /// Selectors with no positive requirement (everything, or negative tests only):
    /// candidates for every device.
    unanchored: Vec<Slot>,
}

/// Where a selector is filed in [`SelectorAnchors`].
#[derive(Debug, Clone)]
enum Anchor {
    Pairs(String, Vec<String>),
    Key(String),
    Unanchored,
    Never,
}

/// Takes a slot from the free list, or the next new one.
fn allocate<T>(entries: &mut Vec<Option<T>>, free: &mut Vec<Slot>, entry: T) -> Slot {
    match free.pop() {
        Some(slot) => {
            if let Some(place) = entries.get_mut(slot as usize) {
                *place = Some(entry);
            }
            slot
        }
        None => {
            entries.push(Some(entry));
            Slot::try_from(entries.len() - 1).unwrap_or(Slot::MAX)
        }
    }
}

/// Which registered selectors started and stopped matching a device after a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorChanges {
    /// Selectors that match the device now and did not before, sorted by name.
    pub started: Vec<String>,
    /// Selectors that matched the device before and do not now, sorted by name.
    pub stopped: Vec<String>,
}

impl SelectorChanges {
    /// Whether no registered selector changed its verdict.
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.stopped.is_empty()
    }
}

/// An inverted index over the labels of a fleet's devices.
///
/// It answers label-selector queries from the posting list of the most selective
/// positive requirement instead of scanning every device, and keeps a set of named,
/// registered selectors (workloads, device sets): when a device's labels change,
/// [`DeviceIndex::upsert_device`] reports which of them started or stopped matching
/// it, evaluating only the selectors that could be affected.
///
/// ```
/// use std::collections::BTreeMap;
/// use flotta_core::selector::{DeviceIndex, Selector};
///
/// let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
///     pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
/// };
/// let mut index = DeviceIndex::new();
/// index.register_selector("cameras", "kind=camera".parse()?);
/// let changes = index.upsert_device("dev-1", labels(&[("kind", "camera")]));
/// assert_eq!(changes.started, ["cameras"]);
/// index.upsert_device("dev-2", labels(&[("kind", "sensor")]));
/// assert_eq!(index.select(&"kind in (camera, gateway)".parse()?), ["dev-1"]);
/// let changes = index.upsert_device("dev-1", labels(&[("kind", "gateway")]));
/// assert_eq!(changes.stopped, ["cameras"]);
/// # Ok::<(), flotta_core::selector::SelectorError>(())
/// ```
#[derive(Debug, Default)]
pub struct DeviceIndex {
    devices: Vec<Option<DeviceEntry>>,
    free_devices: Vec<Slot>,
    device_slots: HashMap<Arc<str>, Slot>,
    postings: HashMap<String, KeyPostings>,
    selectors: Vec<Option<RegisteredSelector>>,
    free_selectors: Vec<Slot>,
    selector_slots: HashMap<Arc<str>, Slot>,
    anchors: SelectorAnchors,
}

impl DeviceIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of devices in the index.
    pub fn len(&self) -> usize {
        self.device_slots.len()
    }

    /// Whether the index holds no device.
    pub fn is_empty(&self) -> bool {
        self.device_slots.is_empty()
    }

    fn device(&self, slot: Slot) -> Option<&DeviceEntry> {
        self.devices.get(slot as usize)?.as_ref()
    }

    fn registered(&self, slot: Slot) -> Option<&RegisteredSelector> {
        self.selectors.get(slot as usize)?.as_ref()
    }

    /// The labels of a device, if it is in the index.
    pub fn device_labels(&self, device_id: &str) -> Option<&BTreeMap<String, String>> {
        let slot = *self.device_slots.get(device_id)?;
        self.device(slot).map(|entry| &entry.labels)
    }

    /// Adds a device or replaces its labels, and reports which registered selectors
    /// started or stopped matching it. A device that was not in the index matched
    /// no selector before.
    pub fn upsert_device(
        &mut self,
        device_id: &str,
        labels: BTreeMap<String, String>,
    ) -> SelectorChanges {
        let existing = self
            .device_slots
            .get(device_id)
            .copied()
            .and_then(|slot| Some((slot, self.devices.get_mut(slot as usize)?.take()?)));
        let (slot, id, old) = match existing {
            Some((slot, entry)) => (slot, entry.id, Some(entry.labels)),
            None => {
                let id: Arc<str> = Arc::from(device_id);
                let entry = DeviceEntry {
                    id: id.clone(),
                    labels: LabelMap::new(),
                };
                let slot = allocate(&mut self.devices, &mut self.free_devices, entry);
                self.device_slots.insert(id.clone(), slot);
                (slot, id, None)
            }
        };
        let empty = LabelMap::new();
        let old_labels = old.as_ref().unwrap_or(&empty);
        for (key, value) in old_labels {
            if labels.get(key) != Some(value) {
                self.unpost(slot, key, value, !labels.contains_key(key));
            }
        }
        for (key, value) in &labels {
            if old_labels.get(key) != Some(value) {
                self.post(slot, key, value, !old_labels.contains_key(key));
            }
        }
        let changes = self.compare_verdicts(old.as_ref(), Some(&labels));
        if let Some(place) = self.devices.get_mut(slot as usize) {
            *place = Some(DeviceEntry { id, labels });
        }
        changes
    }

    /// Removes a device; reports the registered selectors that matched it (all in
    /// `stopped`), or `None` when the device was not in the index.
    pub fn remove_device(&mut self, device_id: &str) -> Option<SelectorChanges> {
        let slot = self.device_slots.remove(device_id)?;
        let entry = self.devices.get_mut(slot as usize)?.take()?;
        self.free_devices.push(slot);
        for (key, value) in &entry.labels {
            self.unpost(slot, key, value, true);
        }
        Some(self.compare_verdicts(Some(&entry.labels), None))
    }

    /// Files `slot` under `key=value`, and under `key` when it is new to the device.
    fn post(&mut self, slot: Slot, key: &str, value: &str, new_key: bool) {
        // Look up before inserting so an existing key or value costs no allocation.
        if !self.postings.contains_key(key) {
            self.postings.insert(key.to_owned(), KeyPostings::default());
        }
        let Some(postings) = self.postings.get_mut(key) else {
            return;
        };
        match postings.by_value.get_mut(value) {
            Some(devices) => {
                devices.insert(slot);
            }
            None => {
                postings
                    .by_value
                    .insert(value.to_owned(), BTreeSet::from([slot]));
            }
        }
        if new_key {
            postings.devices.insert(slot);
        }
    }

    /// Takes `slot` out of `key=value`, and out of `key` when the device loses it.
    fn unpost(&mut self, slot: Slot, key: &str, value: &str, key_gone: bool) {
        let Some(postings) = self.postings.get_mut(key) else {
            return;
        };
        if let Some(devices) = postings.by_value.get_mut(value) {
            devices.remove(&slot);
            if devices.is_empty() {
                postings.by_value.remove(value);
            }
        }
        if key_gone {
            postings.devices.remove(&slot);
            if postings.devices.is_empty() {
                self.postings.remove(key);
            }
        }
    }

    /// The ids of the devices `selector` matches, sorted.
    ///
    /// Walks the posting list of the most selective positive requirement (`=`, `in`,
    /// exists, `>`, `<`) and checks the rest of the selector on those devices only; a
    /// selector with negative requirements only walks every device.
    pub fn select(&self, selector: &Selector) -> Vec<&str> {
        if selector.is_nothing() {
            return Vec::new();
        }
        let mut best: Option<(usize, Vec<&BTreeSet<Slot>>)> = None;
        for requirement in selector.requirements() {
            let postings = self.postings.get(requirement.key());
            let lists: Vec<&BTreeSet<Slot>> = match requirement.test() {
                LabelTest::Equals(value) => postings
                    .and_then(|p| p.by_value.get(value.as_str()))
                    .into_iter()
                    .collect(),
                LabelTest::In(values) => postings
                    .map(|p| {
                        values
                            .iter()
                            .filter_map(|v| p.by_value.get(v.as_str()))
                            .collect()
                    })
                    .unwrap_or_default(),
                LabelTest::Exists | LabelTest::GreaterThan(_) | LabelTest::LessThan(_) => {
                    postings.map(|p| &p.devices).into_iter().collect()
                }
                LabelTest::DoesNotExist | LabelTest::NotEquals(_) | LabelTest::NotIn(_) => {
                    continue;
                }
            };
            let size: usize = lists.iter().map(|l| l.len()).sum();
            if size == 0 {
                return Vec::new();
            }
            if best.as_ref().is_none_or(|(best_size, _)| size < *best_size) {
                best = Some((size, lists));
            }
        }
        let mut ids: Vec<&str> = match best {
            // `in` lists are disjoint (one value per key and device): no duplicates.
            Some((_, lists)) => lists
                .iter()
                .flat_map(|list| list.iter())
                .filter_map(|&slot| self.device(slot))
                .filter(|entry| selector.matches(&entry.labels))
                .map(|entry| entry.id.as_ref())
                .collect(),
            None => self
                .devices
                .iter()
                .flatten()
                .filter(|entry| selector.matches(&entry.labels))
                .map(|entry| entry.id.as_ref())
                .collect(),
        };
        ids.sort_unstable();
        ids
    }

    /// Picks the positive requirement to file a selector under: the one whose
    /// pairs (or key) the fewest devices carry now, since a change to a device only
    /// evaluates the selectors filed under its labels. Ties go to `=`, then `in`,
    /// then key tests, then canonical order.
    fn choose_anchor(&self, selector: &Selector) -> Anchor {
        if selector.is_nothing() {
            return Anchor::Never;
        }
        let mut best: Option<((usize, u8), Anchor)> = None;
        for requirement in selector.requirements() {
            let key = requirement.key();
            let postings = self.postings.get(key);
            let devices_with = |value: &str| {
                postings
                    .and_then(|p| p.by_value.get(value))
                    .map_or(0, BTreeSet::len)
            };
            let (cost, anchor) = match requirement.test() {
                LabelTest::Equals(value) => (
                    (devices_with(value), 0),
                    Anchor::Pairs(key.to_owned(), vec![value.clone()]),
                ),
                LabelTest::In(values) => (
                    (values.iter().map(|v| devices_with(v)).sum(), 1),
                    Anchor::Pairs(key.to_owned(), values.iter().cloned().collect()),
                ),
                LabelTest::Exists | LabelTest::GreaterThan(_) | LabelTest::LessThan(_) => (
                    (postings.map_or(0, |p| p.devices.len()), 2),
                    Anchor::Key(key.to_owned()),
                ),
                LabelTest::DoesNotExist | LabelTest::NotEquals(_) | LabelTest::NotIn(_) => {
                    continue;
                }
            };
            if best.as_ref().is_none_or(|(best_cost, _)| cost < *best_cost) {
                best = Some((cost, anchor));
            }
        }
        best.map_or(Anchor::Unanchored, |(_, anchor)| anchor)
    }

    /// Registers (or replaces) a named selector whose verdict changes
    /// [`DeviceIndex::upsert_device`] reports; returns the selector it replaced.
    /// Use [`DeviceIndex::select`] for the devices it matches now.
    pub fn register_selector(&mut self, name: &str, selector: Selector) -> Option<Selector> {
        let previous = self.unregister_selector(name);
        let name: Arc<str> = Arc::from(name);
        let anchor = self.choose_anchor(&selector);
        let entry = RegisteredSelector {
            name: name.clone(),
            selector,
            anchor: anchor.clone(),
        };
        let slot = allocate(&mut self.selectors, &mut self.free_selectors, entry);
        self.selector_slots.insert(name, slot);
        match anchor {
            Anchor::Pairs(key, values) => {
                let by_value = self.anchors.by_pair.entry(key).or_default();
                for value in values {
                    by_value.entry(value).or_default().push(slot);
                }
            }
            Anchor::Key(key) => self.anchors.by_key.entry(key).or_default().push(slot),
            Anchor::Unanchored => self.anchors.unanchored.push(slot),
            Anchor::Never => {}
        }
        previous
    }

    /// Removes a registered selector; returns it, or `None` if no such name.
    pub fn unregister_selector(&mut self, name: &str) -> Option<Selector> {
        let slot = self.selector_slots.remove(name)?;
        let entry = self.selectors.get_mut(slot as usize)?.take()?;
        self.free_selectors.push(slot);
        let unfile = |slots: &mut Vec<Slot>| slots.retain(|&s| s != slot);
        match entry.anchor {
            Anchor::Pairs(key, values) => {
                if let Some(by_value) = self.anchors.by_pair.get_mut(&key) {
                    for value in values {
                        if let Some(slots) = by_value.get_mut(&value) {
                            unfile(slots);
                            if slots.is_empty() {
                                by_value.remove(&value);
                            }
                        }
                    }
                    if by_value.is_empty() {
                        self.anchors.by_pair.remove(&key);
                    }
                }
            }
            Anchor::Key(key) => {
                if let Some(slots) = self.anchors.by_key.get_mut(&key) {
                    unfile(slots);
                    if slots.is_empty() {
                        self.anchors.by_key.remove(&key);
                    }
                }
            }
            Anchor::Unanchored => unfile(&mut self.anchors.unanchored),
            Anchor::Never => {}
        }
        Some(entry.selector)
    }

    /// A registered selector by name.
    pub fn registered_selector(&self, name: &str) -> Option<&Selector> {
        let slot = *self.selector_slots.get(name)?;
        self.registered(slot).map(|entry| &entry.selector)
    }

    /// Names of every registered selector, sorted.
    pub fn registered_selectors(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.selector_slots.keys().map(AsRef::as_ref).collect();
        names.sort_unstable();
        names
    }

    /// Names of the registered selectors that match a device, sorted; empty for an
    /// unknown device.
    pub fn selectors_matching_device(&self, device_id: &str) -> Vec<&str> {
        let Some(entry) = self
            .device_slots
            .get(device_id)
            .and_then(|&s| self.device(s))
        else {
            return Vec::new();
        };
        let mut names: Vec<&str> = self
            .matching_selectors(&entry.labels)
            .into_iter()
            .filter_map(|slot| self.registered(slot))
            .map(|registered| registered.name.as_ref())
            .collect();
        names.sort_unstable();
        names
    }

    /// Slots of the registered selectors that match `labels`, sorted. Only the
    /// selectors filed under one of its pairs or keys, and the unanchored ones, are
    /// evaluated.
    fn matching_selectors(&self, labels: &LabelMap) -> Vec<Slot> {
        let mut candidates: Vec<Slot> = self.anchors.unanchored.clone();
        for (key, value) in labels {
            if let Some(slots) = self
                .anchors
                .by_pair
                .get(key.as_str())
                .and_then(|by_value| by_value.get(value.as_str()))
            {
                candidates.extend_from_slice(slots);
            }
            if let Some(slots) = self.anchors.by_key.get(key.as_str()) {
                candidates.extend_from_slice(slots);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.retain(|&slot| {
            self.registered(slot)
                .is_some_and(|registered| registered.selector.matches(labels))
        });
        candidates
    }

    fn compare_verdicts(
        &self,
        before: Option<&LabelMap>,
        after: Option<&LabelMap>,
    ) -> SelectorChanges {
        let before = before
            .map(|l| self.matching_selectors(l))
            .unwrap_or_default();
        let after = after
            .map(|l| self.matching_selectors(l))
            .unwrap_or_default();
        let difference = |a: &[Slot], b: &[Slot]| -> Vec<String> {
            let mut names: Vec<String> = a
                .iter()
                .filter(|slot| b.binary_search(slot).is_err())
                .filter_map(|&slot| self.registered(slot))
                .map(|registered| registered.name.to_string())
                .collect();
            names.sort_unstable();
            names
        };
        SelectorChanges {
            started: difference(&after, &before),
            stopped: difference(&before, &after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn selector(text: &str) -> Selector {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn postings_follow_label_changes_and_removal() {
        let mut index = DeviceIndex::new();
        index.upsert_device("d1", labels(&[("a", "1"), ("b", "x")]));
        index.upsert_device("d2", labels(&[("a", "2")]));
        assert_eq!(index.select(&selector("a in (1,2)")), ["d1", "d2"]);
        index.upsert_device("d1", labels(&[("a", "2")]));
        assert_eq!(index.select(&selector("a=1")), Vec::<&str>::new());
        assert_eq!(index.select(&selector("b")), Vec::<&str>::new());
        assert_eq!(index.select(&selector("a=2")), ["d1", "d2"]);
        assert!(index.remove_device("d1").is_some());
        assert!(index.remove_device("d1").is_none());
        assert_eq!(index.select(&selector("a=2")), ["d2"]);
        assert_eq!(index.select(&selector("!b")), ["d2"]);
        // empty posting lists are dropped, not left behind
        assert!(!index.postings.contains_key("b"));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn anchors_prefer_the_rarest_requirement() {
        let mut index = DeviceIndex::new();
        for i in 0..10 {
            let site = if i == 0 { "rare" } else { "common" };
            index.upsert_device(
                &format!("d{i}"),
                labels(&[("arch", "arm64"), ("site", site)]),
            );
        }
        index.register_selector("w", selector("arch=arm64,site=rare"));
        index.register_selector("n", selector("!legacy"));
        index.register_selector("never", Selector::nothing());
        assert!(
            index
                .anchors
                .by_pair
                .get("site")
                .is_some_and(|v| v.contains_key("rare"))
        );
        assert!(!index.anchors.by_pair.contains_key("arch"));
        assert_eq!(index.anchors.unanchored.len(), 1);
        assert_eq!(index.selectors_matching_device("d0"), ["n", "w"]);
        let changes = index.upsert_device("d0", labels(&[("legacy", "yes")]));
        assert_eq!(changes.stopped, ["n", "w"]);
        assert!(changes.started.is_empty());
        assert!(index.unregister_selector("w").is_some());
        assert!(index.anchors.by_pair.is_empty());
    }
}
