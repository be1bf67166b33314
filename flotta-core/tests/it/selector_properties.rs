//! Property tests: canonical printing reads back, and the `DeviceIndex` answers and
//! change reports equal a naive scan.

use std::collections::{BTreeMap, BTreeSet};

use flotta_core::selector::{DeviceIndex, LabelTest, Requirement, Selector};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;

const KEYS: &[&str] = &["app", "tier", "zone", "example.com/gpu", "x.io/rev"];
const VALUES: &[&str] = &["", "1", "2", "10", "edge", "core", "a-b.c_d"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES).prop_map(str::to_owned)
}

fn test() -> impl Strategy<Value = LabelTest> {
    prop_oneof![
        Just(LabelTest::Exists),
        Just(LabelTest::DoesNotExist),
        value().prop_map(LabelTest::Equals),
        value().prop_map(LabelTest::NotEquals),
        btree_set(value(), 1..4).prop_map(LabelTest::In),
        btree_set(value(), 1..4).prop_map(LabelTest::NotIn),
        (0i64..12).prop_map(LabelTest::GreaterThan),
        (0i64..12).prop_map(LabelTest::LessThan),
    ]
}

fn selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        1 => Just(Selector::nothing()),
        12 => vec((key(), test()), 0..4).prop_map(|requirements| {
            Selector::from_requirements(requirements.into_iter().map(|(key, test)| {
                Requirement::new(key, test).unwrap_or_else(|e| panic!("generated requirement: {e}"))
            }))
        }),
    ]
}

/// One requirement as a user may write it, in every form Kubernetes accepts:
/// `in` / `notin` as keys and values, `==`, bounds with leading zeros, and value
/// lists with empty entries.
fn requirement_text() -> impl Strategy<Value = String> {
    let key = || prop::sample::select(&["a", "b", "in", "notin", "x.io/k"][..]);
    let value = || prop::sample::select(&["1", "007", "in", "notin", "v"][..]);
    let space = || prop::sample::select(&["", " ", "\t"][..]);
    prop_oneof![
        key().prop_map(str::to_owned),
        (space(), key()).prop_map(|(s, k)| format!("!{s}{k}")),
        (
            key(),
            space(),
            prop::sample::select(&["=", "==", "!="][..]),
            prop_oneof![Just(""), value()]
        )
            .prop_map(|(k, s, o, v)| format!("{k}{s}{o}{s}{v}")),
        (
            key(),
            prop::sample::select(&[">", "<"][..]),
            prop::sample::select(&["0", "00", "7", "007", "10"][..])
        )
            .prop_map(|(k, o, n)| format!("{k}{o}{n}")),
        (
            key(),
            prop::sample::select(&[" in ", " notin "][..]),
            vec(value(), 0..4),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(k, o, values, leading, trailing)| {
                let list = if values.is_empty() {
                    String::new()
                } else {
                    // an empty entry first or last is the empty value
                    format!(
                        "{}{}{}",
                        if leading { "," } else { "" },
                        values.join(","),
                        if trailing { "," } else { "" }
                    )
                };
                format!("{k}{o}({list})")
            }),
    ]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(key(), value(), 0..5)
}

#[derive(Debug, Clone)]
enum Operation {
    Upsert(u8, BTreeMap<String, String>),
    Remove(u8),
    Register(u8, Selector),
    Unregister(u8),
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (0u8..20, labels()).prop_map(|(id, l)| Operation::Upsert(id, l)),
        1 => (0u8..20).prop_map(Operation::Remove),
        2 => (0u8..8, selector()).prop_map(|(n, s)| Operation::Register(n, s)),
        1 => (0u8..8).prop_map(Operation::Unregister),
    ]
}

fn naive_select<'a>(
    devices: &'a BTreeMap<String, BTreeMap<String, String>>,
    selector: &Selector,
) -> Vec<&'a str> {
    devices
        .iter()
        .filter(|(_, labels)| selector.matches(*labels))
        .map(|(id, _)| id.as_str())
        .collect()
}

fn naive_verdicts(
    selectors: &BTreeMap<String, Selector>,
    labels: Option<&BTreeMap<String, String>>,
) -> BTreeSet<String> {
    selectors
        .iter()
        .filter(|(_, s)| labels.is_some_and(|l| s.matches(l)))
        .map(|(name, _)| name.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_text_reads_back(selector in selector()) {
        prop_assume!(!selector.is_nothing());
        let text = selector.to_string();
        let reparsed: Selector = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&reparsed, &selector);
        prop_assert_eq!(reparsed.to_string(), text);
    }

    #[test]
    fn parsing_random_text_never_panics_and_round_trips(
        text in "[a-z0-9 ,!=<>()./_-]{0,24}|(in|notin|a|b|=|==|!=|,|\\(|\\)| |!|<|>|1|0)*"
    ) {
        if let Ok(selector) = text.parse::<Selector>() {
            let canonical = selector.to_string();
            let reparsed = canonical.parse::<Selector>().ok();
            prop_assert_eq!(reparsed.as_ref(), Some(&selector));
            prop_assert_eq!(reparsed.map(|s| s.to_string()), Some(canonical));
        }
    }

    #[test]
    fn written_selectors_parse_and_print_stably(
        parts in vec(requirement_text(), 0..6),
        objects in vec(btree_map(
            prop::sample::select(&["a", "b", "in", "notin", "x.io/k"][..]).prop_map(str::to_owned),
            prop::sample::select(&["", "1", "007", "7", "in", "notin", "v", "+8"][..]).prop_map(str::to_owned),
            0..4,
        ), 1..6),
    ) {
        let text = parts.join(",");
        let selector: Selector = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        // every requirement is kept, duplicates included
        prop_assert_eq!(selector.requirements().len(), parts.len());
        let canonical = selector.to_string();
        let reparsed: Selector = canonical.parse().map_err(|e| TestCaseError::fail(format!("{canonical:?}: {e}")))?;
        prop_assert_eq!(&reparsed, &selector, "{:?} -> {:?}", text, canonical);
        prop_assert_eq!(reparsed.to_string(), canonical);
        // comma is AND: the whole selects what every part selects on its own
        for labels in &objects {
            let each = parts.iter().all(|part| part.parse::<Selector>().is_ok_and(|s| s.matches(labels)));
            prop_assert_eq!(selector.matches(labels), each, "{:?} on {:?}", text, labels);
        }
    }

    #[test]
    fn index_select_equals_naive_scan(
        devices in btree_map("[a-z]{1,3}", labels(), 0..40),
        selectors in vec(selector(), 1..8),
    ) {
        let mut index = DeviceIndex::new();
        for (id, labels) in &devices {
            index.upsert_device(id, labels.clone());
        }
        for selector in &selectors {
            prop_assert_eq!(index.select(selector), naive_select(&devices, selector), "{}", selector);
        }
    }

    #[test]
    fn index_changes_equal_naive_recomputation(operations in vec(operation(), 1..60)) {
        let mut index = DeviceIndex::new();
        let mut devices: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut selectors: BTreeMap<String, Selector> = BTreeMap::new();
        for operation in operations {
            match operation {
                Operation::Upsert(id, labels) => {
                    let id = format!("dev-{id}");
                    let before = naive_verdicts(&selectors, devices.get(&id));
                    let after = naive_verdicts(&selectors, Some(&labels));
                    let changes = index.upsert_device(&id, labels.clone());
                    devices.insert(id, labels);
                    prop_assert_eq!(changes.started, after.difference(&before).cloned().collect::<Vec<_>>());
                    prop_assert_eq!(changes.stopped, before.difference(&after).cloned().collect::<Vec<_>>());
                }
                Operation::Remove(id) => {
                    let id = format!("dev-{id}");
                    let before = devices.remove(&id);
                    let changes = index.remove_device(&id);
                    prop_assert_eq!(changes.is_some(), before.is_some());
                    if let Some(changes) = changes {
                        prop_assert!(changes.started.is_empty());
                        prop_assert_eq!(changes.stopped, naive_verdicts(&selectors, before.as_ref()).into_iter().collect::<Vec<_>>());
                    }
                }
                Operation::Register(name, selector) => {
                    let name = format!("sel-{name}");
                    let previous = index.register_selector(&name, selector.clone());
                    prop_assert_eq!(previous, selectors.insert(name, selector));
                }
                Operation::Unregister(name) => {
                    let name = format!("sel-{name}");
                    prop_assert_eq!(index.unregister_selector(&name), selectors.remove(&name));
                }
            }
            for (id, labels) in &devices {
                let expected: Vec<String> = naive_verdicts(&selectors, Some(labels)).into_iter().collect();
                prop_assert_eq!(index.selectors_matching_device(id), expected);
            }
            prop_assert_eq!(index.len(), devices.len());
            prop_assert_eq!(index.registered_selectors(), selectors.keys().map(String::as_str).collect::<Vec<_>>());
        }
        for selector in selectors.values() {
            prop_assert_eq!(index.select(selector), naive_select(&devices, selector));
        }
    }
}
