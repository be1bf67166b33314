//! Selector benchmarks: one match against a 12-label device, and a `DeviceIndex`
//! of 100,000 devices with 1,000 registered selectors (a label change and a query),
//! each beside the naive scan it replaces, measured in the same run.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flotta_core::selector::{DeviceIndex, Selector};

const DEVICES: usize = 100_000;
const SELECTORS: usize = 1_000;

/// Twelve labels of a realistic device: a few high-cardinality ones (site, rack),
/// a few low-cardinality ones (tier, arch).
fn device_labels(i: usize) -> BTreeMap<String, String> {
    let pairs = [
        ("app", format!("app-{}", i % 50)),
        ("tier", ["edge", "core", "gateway"][i % 3].to_owned()),
        ("arch", ["arm64", "amd64"][i % 2].to_owned()),
        ("site", format!("site-{}", i % 200)),
        ("rack", format!("rack-{}", i % 1_000)),
        ("zone", format!("zone-{}", i % 8)),
        ("hw.example.com/model", format!("m{}", i % 20)),
        ("hw.example.com/gpu", i.is_multiple_of(4).to_string()),
        ("os", ["rhel", "fedora", "debian"][i % 3].to_owned()),
        ("rev", (i % 30).to_string()),
        ("owner", format!("team-{}", i % 12)),
        (
            "channel",
            ["stable", "canary"][usize::from(i.is_multiple_of(10))].to_owned(),
        ),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A mix of what workloads and device sets use: equality on a high-cardinality key,
/// set membership, existence plus negation, integer comparison, and a few
/// negative-only selectors.
fn registered_selector(i: usize) -> Selector {
    let text = match i % 10 {
        0..=3 => format!("app=app-{},tier=edge", i % 50),
        4 | 5 => format!(
            "site in (site-{}, site-{}),arch=arm64",
            i % 200,
            (i + 7) % 200
        ),
        6 => format!("rack=rack-{},!maintenance", i % 1_000),
        7 => format!("zone=zone-{},rev>{}", i % 8, i % 30),
        8 => format!(
            "hw.example.com/model in (m{},m{}),channel!=canary",
            i % 20,
            (i + 3) % 20
        ),
        _ if i % 100 == 9 => format!("owner notin (team-{}),!decommissioned", i % 12),
        _ => format!("owner=team-{},os!=debian", i % 12),
    };
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn bench_matches(c: &mut Criterion) {
    let labels = device_labels(42);
    let selector: Selector = "app=app-42,tier in (edge,core),!maintenance,rev>3,channel!=canary"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(selector.matches(&labels));
    c.bench_function("selector/matches_12_labels", |b| {
        b.iter(|| black_box(&selector).matches(black_box(&labels)))
    });
}

fn bench_index(c: &mut Criterion) {
    let mut index = DeviceIndex::new();
    let mut devices = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let id = format!("device-{i:06}");
        index.upsert_device(&id, device_labels(i));
        devices.push((id, device_labels(i)));
    }
    let selectors: Vec<(String, Selector)> = (0..SELECTORS)
        .map(|i| (format!("workload-{i:04}"), registered_selector(i)))
        .collect();
    for (name, selector) in &selectors {
        index.register_selector(name, selector.clone());
    }

    // One device flips between two label sets that differ in several keys, so every
    // iteration really changes the verdict of some selectors.
    let device = "device-000042";
    let before = device_labels(42);
    let mut after = device_labels(43);
    after.insert("maintenance".to_owned(), "true".to_owned());
    let changes = index.upsert_device(device, after.clone());
    assert!(
        !changes.is_empty(),
        "the benchmark change must move some selector"
    );
    let mut flip = false;
    c.bench_function("selector/index_label_change_1000_selectors", |b| {
        b.iter(|| {
            flip = !flip;
            let labels = if flip { before.clone() } else { after.clone() };
            black_box(index.upsert_device(device, labels))
        })
    });
    // Baseline: what a change costs without the selector index, re-evaluating every
    // registered selector against the old and the new labels.
    c.bench_function("selector/naive_label_change_1000_selectors", |b| {
        b.iter(|| {
            flip = !flip;
            let (old, new) = if flip {
                (&after, &before)
            } else {
                (&before, &after)
            };
            let started: Vec<&str> = selectors
                .iter()
                .filter(|(_, s)| s.matches(new) && !s.matches(old))
                .map(|(n, _)| n.as_str())
                .collect();
            let stopped: Vec<&str> = selectors
                .iter()
                .filter(|(_, s)| s.matches(old) && !s.matches(new))
                .map(|(n, _)| n.as_str())
                .collect();
            black_box((started, stopped))
        })
    });

    let query: Selector = "site=site-17,tier=edge,!maintenance"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let naive = |selector: &Selector| -> usize {
        devices
            .iter()
            .filter(|(_, labels)| selector.matches(labels))
            .count()
    };
    assert_eq!(index.select(&query).len(), naive(&query));
    c.bench_function("selector/index_select_100k_devices", |b| {
        b.iter(|| black_box(index.select(black_box(&query))))
    });
    c.bench_function("selector/naive_select_100k_devices", |b| {
        b.iter(|| black_box(naive(black_box(&query))))
    });
}

criterion_group!(benches, bench_matches, bench_index);
criterion_main!(benches);
