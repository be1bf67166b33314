//! Inverted index over device labels, for fleet-scale selector matching.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{LabelTest, Selector};

/// Device labels, as stored in the index.
type LabelMap = BTreeMap<String, String>;

/// Which devices carry one label key, and with which values.
#[derive(Debug, Default)]
struct KeyPostings {
    /// Every device that has the key.
    devices: BTreeSet<Arc<str>>,
    /// Value → devices with `key=value`.
    by_value: HashMap<String, BTreeSet<Arc<str>>>,
}

/// Registered selectors filed under one requirement each of them cannot match
/// without, so a device change only evaluates selectors that could be affected.
#[derive(Debug, Default)]
struct SelectorAnchors {
    /// key → value → selectors that need `key=value` (from `=` or `in`).
    by_pair: HashMap<String, HashMap<String, BTreeSet<Arc<str>>>>,
    /// key → selectors that need the key (from `key`, `>` or `<`).
    by_key: HashMap<String, BTreeSet<Arc<str>>>,
    /// Selectors with no positive requirement (everything, or negative tests only):
    /// candidates for every device.
    unanchored: BTreeSet<Arc<str>>,
}

/// Where a selector is filed in [`SelectorAnchors`].
enum Anchor<'a> {
    Pairs(&'a str, Vec<&'a str>),
    Key(&'a str),
    Unanchored,
    Never,
}

fn anchor_of(selector: &Selector) -> Anchor<'_> {
    if selector.is_nothing() {
        return Anchor::Never;
    }
    let requirements = selector.requirements();
    if let Some((key, value)) = requirements.iter().find_map(|r| match r.test() {
        LabelTest::Equals(value) => Some((r.key(), value)),
        _ => None,
    }) {
        return Anchor::Pairs(key, vec![value.as_str()]);
    }
    if let Some((key, values)) = requirements.iter().find_map(|r| match r.test() {
        LabelTest::In(values) => Some((r.key(), values)),
        _ => None,
    }) {
        return Anchor::Pairs(key, values.iter().map(String::as_str).collect());
    }
    match requirements.iter().find(|r| r.test().requires_key()) {
        Some(requirement) => Anchor::Key(requirement.key()),
        None => Anchor::Unanchored,
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
    devices: BTreeMap<Arc<str>, LabelMap>,
    postings: HashMap<String, KeyPostings>,
    selectors: BTreeMap<Arc<str>, Selector>,
    anchors: SelectorAnchors,
}

impl DeviceIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of devices in the index.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether the index holds no device.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The labels of a device, if it is in the index.
    pub fn device_labels(&self, device_id: &str) -> Option<&BTreeMap<String, String>> {
        self.devices.get(device_id)
    }

    /// Adds a device or replaces its labels, and reports which registered selectors
    /// started or stopped matching it. A device that was not in the index matched
    /// no selector before.
    pub fn upsert_device(
        &mut self,
        device_id: &str,
        labels: BTreeMap<String, String>,
    ) -> SelectorChanges {
        let (id, old) = match self.devices.remove_entry(device_id) {
            Some((id, old)) => (id, Some(old)),
            None => (Arc::from(device_id), None),
        };
        let empty = LabelMap::new();
        let old_labels = old.as_ref().unwrap_or(&empty);
        for (key, value) in old_labels {
            if labels.get(key) == Some(value) {
                continue;
            }
            let Some(postings) = self.postings.get_mut(key.as_str()) else {
                continue;
            };
            if let Some(devices) = postings.by_value.get_mut(value.as_str()) {
                devices.remove(&id);
                if devices.is_empty() {
                    postings.by_value.remove(value.as_str());
                }
            }
            if !labels.contains_key(key) {
                postings.devices.remove(&id);
                if postings.devices.is_empty() {
                    self.postings.remove(key.as_str());
                }
            }
        }
        for (key, value) in &labels {
            if old_labels.get(key) == Some(value) {
                continue;
            }
            let postings = self.postings.entry(key.clone()).or_default();
            postings
                .by_value
                .entry(value.clone())
                .or_default()
                .insert(id.clone());
            if !old_labels.contains_key(key) {
                postings.devices.insert(id.clone());
            }
        }
        let changes = self.compare_verdicts(old.as_ref(), Some(&labels));
        self.devices.insert(id, labels);
        changes
    }

    /// Removes a device; reports the registered selectors that matched it (all in
    /// `stopped`), or `None` when the device was not in the index.
    pub fn remove_device(&mut self, device_id: &str) -> Option<SelectorChanges> {
        let (id, labels) = self.devices.remove_entry(device_id)?;
        for (key, value) in &labels {
            let Some(postings) = self.postings.get_mut(key.as_str()) else {
                continue;
            };
            if let Some(devices) = postings.by_value.get_mut(value.as_str()) {
                devices.remove(&id);
                if devices.is_empty() {
                    postings.by_value.remove(value.as_str());
                }
            }
            postings.devices.remove(&id);
            if postings.devices.is_empty() {
                self.postings.remove(key.as_str());
            }
        }
        Some(self.compare_verdicts(Some(&labels), None))
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
        let mut best: Option<(usize, Vec<&BTreeSet<Arc<str>>>)> = None;
        for requirement in selector.requirements() {
            let postings = self.postings.get(requirement.key());
            let lists: Vec<&BTreeSet<Arc<str>>> = match requirement.test() {
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
        let matches = |id: &&Arc<str>| {
            self.devices
                .get(id.as_ref())
                .is_some_and(|labels| selector.matches(labels))
        };
        match best {
            None => self
                .devices
                .iter()
                .filter(|(_, labels)| selector.matches(*labels))
                .map(|(id, _)| id.as_ref())
                .collect(),
            Some((_, lists)) if lists.len() == 1 => lists
                .iter()
                .flat_map(|list| list.iter())
                .filter(matches)
                .map(AsRef::as_ref)
                .collect(),
            Some((_, lists)) => {
                // `in` with several values: the lists are disjoint (one value per key
                // and device), so merging them is a sort.
                let mut ids: Vec<&Arc<str>> = lists.iter().flat_map(|l| l.iter()).collect();
                ids.sort_unstable();
                ids.into_iter().filter(matches).map(AsRef::as_ref).collect()
            }
        }
    }

    /// Registers (or replaces) a named selector whose verdict changes
    /// [`DeviceIndex::upsert_device`] reports; returns the selector it replaced.
    /// Use [`DeviceIndex::select`] for the devices it matches now.
    pub fn register_selector(&mut self, name: &str, selector: Selector) -> Option<Selector> {
        let previous = self.unregister_selector(name);
        let name: Arc<str> = Arc::from(name);
        match anchor_of(&selector) {
            Anchor::Pairs(key, values) => {
                let by_value = self.anchors.by_pair.entry(key.to_owned()).or_default();
                for value in values {
                    by_value
                        .entry(value.to_owned())
                        .or_default()
                        .insert(name.clone());
                }
            }
            Anchor::Key(key) => {
                self.anchors
                    .by_key
                    .entry(key.to_owned())
                    .or_default()
                    .insert(name.clone());
            }
            Anchor::Unanchored => {
                self.anchors.unanchored.insert(name.clone());
            }
            Anchor::Never => {}
        }
        self.selectors.insert(name, selector);
        previous
    }

    /// Removes a registered selector; returns it, or `None` if no such name.
    pub fn unregister_selector(&mut self, name: &str) -> Option<Selector> {
        let selector = self.selectors.remove(name)?;
        match anchor_of(&selector) {
            Anchor::Pairs(key, values) => {
                if let Some(by_value) = self.anchors.by_pair.get_mut(key) {
                    for value in values {
                        if let Some(names) = by_value.get_mut(value) {
                            names.remove(name);
                            if names.is_empty() {
                                by_value.remove(value);
                            }
                        }
                    }
                    if by_value.is_empty() {
                        self.anchors.by_pair.remove(key);
                    }
                }
            }
            Anchor::Key(key) => {
                if let Some(names) = self.anchors.by_key.get_mut(key) {
                    names.remove(name);
                    if names.is_empty() {
                        self.anchors.by_key.remove(key);
                    }
                }
            }
            Anchor::Unanchored => {
                self.anchors.unanchored.remove(name);
            }
            Anchor::Never => {}
        }
        Some(selector)
    }

    /// A registered selector by name.
    pub fn registered_selector(&self, name: &str) -> Option<&Selector> {
        self.selectors.get(name)
    }

    /// Names of every registered selector, sorted.
    pub fn registered_selectors(&self) -> impl Iterator<Item = &str> {
        self.selectors.keys().map(AsRef::as_ref)
    }

    /// Names of the registered selectors that match a device, sorted; empty for an
    /// unknown device.
    pub fn selectors_matching_device(&self, device_id: &str) -> Vec<&str> {
        self.devices
            .get(device_id)
            .map(|labels| self.matching_selectors(labels))
            .unwrap_or_default()
            .into_iter()
            .map(AsRef::as_ref)
            .collect()
    }

    /// Registered selectors that can possibly match `labels`: those anchored on one
    /// of its pairs or keys, plus the unanchored ones. Sorted, without duplicates.
    fn candidates<'s>(&'s self, labels: &LabelMap, into: &mut Vec<&'s Arc<str>>) {
        for (key, value) in labels {
            if let Some(names) = self
                .anchors
                .by_pair
                .get(key.as_str())
                .and_then(|by_value| by_value.get(value.as_str()))
            {
                into.extend(names.iter());
            }
            if let Some(names) = self.anchors.by_key.get(key.as_str()) {
                into.extend(names.iter());
            }
        }
    }

    fn matching_selectors(&self, labels: &LabelMap) -> Vec<&Arc<str>> {
        let mut candidates = Vec::new();
        self.candidates(labels, &mut candidates);
        candidates.sort_unstable();
        candidates.dedup();
        let anchored = candidates
            .into_iter()
            .filter_map(|name| self.selectors.get_key_value(name));
        let unanchored = self
            .anchors
            .unanchored
            .iter()
            .filter_map(|name| self.selectors.get_key_value(name));
        let mut matching: Vec<&Arc<str>> = anchored
            .chain(unanchored)
            .filter(|(_, selector)| selector.matches(labels))
            .map(|(name, _)| name)
            .collect();
        matching.sort_unstable();
        matching
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
        let difference = |a: &[&Arc<str>], b: &[&Arc<str>]| -> Vec<String> {
            a.iter()
                .filter(|name| b.binary_search(name).is_err())
                .map(|name| name.to_string())
                .collect()
        };
        SelectorChanges {
            started: difference(&after, &before),
            stopped: difference(&before, &after),
        }
    }
}
