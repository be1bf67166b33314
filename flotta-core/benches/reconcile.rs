//! Reconciliation benchmarks: rendering across a fleet, planning a 50-workload
//! configuration, and a rollout decision over 100,000 devices.
//!
//! Run: `cargo bench -p flotta-core --bench reconcile -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use flotta_core::model::{
    EdgeDevice, EdgeDeviceSpec, EdgeWorkload, IntOrString, RolloutBatch, RolloutPolicy,
};
use flotta_core::reconcile::{
    ObservedState, PreparedWorkload, RenderedConfig, RolloutDevice, WorkloadPhase, decide_rollout,
    plan, prepare_workload, render_device_config_for_workloads, render_device_config_prepared,
};
use flotta_core::wire;

const FLEET: usize = 10_000;
const WORKLOADS: usize = 100;

fn workloads() -> Vec<EdgeWorkload> {
    (0..WORKLOADS)
        .map(|i| {
            serde_yaml_ng::from_str(&format!(
                "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata: {{name: w{i:03}, namespace: default, labels: {{app: w{i}}}}}\nspec:\n  type: pod\n  deviceSelector: {{matchLabels: {{fleet: f}}}}\n  pod:\n    spec: {{containers: [{{name: main, image: 'registry.local/app{i}:1.0', ports: [{{containerPort: 80, hostPort: {port}}}], env: [{{name: MODE, value: fast}}]}}]}}\n",
                port = 8000 + i
            ))
            .unwrap_or_else(|e| panic!("fixture: {e}"))
        })
        .collect()
}

fn devices() -> Vec<EdgeDevice> {
    (0..FLEET)
        .map(|i| {
            let mut device = EdgeDevice::new(format!("device-{i:05}"), EdgeDeviceSpec::default());
            device.metadata.namespace = Some("default".into());
            device.metadata.labels = Some(BTreeMap::from([("fleet".into(), "f".into())]));
            device
        })
        .collect()
}

fn render(c: &mut Criterion) {
    let workloads = workloads();
    let selected: Vec<&EdgeWorkload> = workloads.iter().collect();
    let devices = devices();
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    let one = render_device_config_for_workloads(&devices[0], &[], &selected, &[], &[]);
    group.bench_function(
        "baseline: serialize one rendered 100-workload message",
        |b| b.iter(|| serde_json::to_vec(black_box(&one.message))),
    );
    group.bench_function("one device x 100 workloads", |b| {
        b.iter(|| {
            render_device_config_for_workloads(black_box(&devices[0]), &[], &selected, &[], &[])
        })
    });
    let prepared: Vec<PreparedWorkload> = workloads
        .iter()
        .map(|w| prepare_workload(w, &[], &[]))
        .collect();
    let prepared: Vec<&PreparedWorkload> = prepared.iter().collect();
    group.bench_function("one device x 100 prepared workloads", |b| {
        b.iter(|| render_device_config_prepared(black_box(&devices[0]), &[], &prepared, &[], &[]))
    });
    group.bench_function("10,000 devices x 100 prepared workloads", |b| {
        b.iter(|| {
            for device in &devices {
                black_box(render_device_config_prepared(
                    device,
                    &[],
                    &prepared,
                    &[],
                    &[],
                ));
            }
        })
    });
    group.finish();
}

fn config(workloads: usize, image_version: usize) -> RenderedConfig {
    RenderedConfig::from_message(wire::DeviceConfigurationMessage {
        device_id: Some("d".into()),
        configuration: Some(wire::DeviceConfiguration {
            heartbeat: Some(wire::HeartbeatConfiguration {
                period_seconds: Some(60),
                ..Default::default()
            }),
            ..Default::default()
        }),
        workloads: Some(
            (0..workloads)
                .map(|i| wire::Workload {
                    name: Some(format!("w{i:03}")),
                    specification: Some(format!(
                        "containers:\n- name: main\n  image: registry.local/app{i}:{}\n",
                        if i % 5 == 0 { image_version } else { 1 }
                    )),
                    ..Default::default()
                })
                .collect(),
        ),
        secrets: Some(Vec::new()),
        ..Default::default()
    })
}

fn planning(c: &mut Criterion) {
    let current = config(50, 1);
    let desired = config(50, 2);
    let observed = ObservedState::from_config(&current);
    let mut group = c.benchmark_group("plan");
    group.bench_function("baseline: clone a 50-workload config", |b| {
        b.iter_batched(
            || (),
            |()| black_box(&desired).clone(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("50 workloads, 10 changed", |b| {
        b.iter(|| {
            plan(
                black_box(&current),
                black_box(&desired),
                black_box(&observed),
            )
        })
    });
    group.bench_function("50 workloads, unchanged", |b| {
        let same = ObservedState::from_config(&desired);
        b.iter(|| plan(black_box(&desired), black_box(&desired), black_box(&same)))
    });
    group.finish();
}

fn rollout(c: &mut Criterion) {
    const DEVICES: usize = 100_000;
    let names: Vec<String> = (0..DEVICES).map(|i| format!("device-{i:06}")).collect();
    let labels: Vec<BTreeMap<String, String>> = (0..DEVICES)
        .map(|i| BTreeMap::from([("ring".into(), (i % 10).to_string())]))
        .collect();
    let devices: Vec<RolloutDevice<'_>> = (0..DEVICES)
        .map(|i| {
            let updated = i < 1_000;
            RolloutDevice {
                name: &names[i],
                labels: &labels[i],
                assigned_version: Some(if updated { "v2" } else { "v1" }),
                reported_version: Some(if updated { "v2" } else { "v1" }),
                phase: if i % 97 == 0 {
                    WorkloadPhase::Unknown
                } else {
                    WorkloadPhase::Running
                },
            }
        })
        .collect();
    let policy = RolloutPolicy {
        batches: Some(vec![
            RolloutBatch {
                limit: Some(IntOrString::String("1%".into())),
                ..Default::default()
            },
            RolloutBatch {
                selector: Some(
                    serde_yaml_ng::from_str("{matchLabels: {ring: '1'}}")
                        .unwrap_or_else(|e| panic!("fixture: {e}")),
                ),
                limit: Some(IntOrString::String("10%".into())),
                ..Default::default()
            },
        ]),
        max_unavailable: Some(IntOrString::String("5%".into())),
        success_threshold: Some(IntOrString::String("95%".into())),
        ..Default::default()
    };
    let mut group = c.benchmark_group("rollout");
    group.sample_size(20);
    group.bench_function("baseline: sort 100,000 device names", |b| {
        b.iter_batched(
            || names.iter().map(String::as_str).collect::<Vec<_>>(),
            |mut sorted| {
                sorted.sort_unstable();
                sorted
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("decision over 100,000 devices", |b| {
        b.iter(|| decide_rollout(Some(black_box(&policy)), "v2", black_box(&devices)))
    });
    group.finish();
}

criterion_group!(benches, render, planning, rollout);
criterion_main!(benches);
