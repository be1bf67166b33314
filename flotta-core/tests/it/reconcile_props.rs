//! Property tests of reconciliation: version invariance, plan convergence and
//! idempotence, rollout limits, and rendering with dangling references.

use std::collections::BTreeMap;

use flotta_core::model::{EdgeDevice, EdgeWorkload, IntOrString, RolloutBatch, RolloutPolicy};
use flotta_core::reconcile::{
    ConfigVersion, ObservedState, ProblemReason, RenderedConfig, RolloutDevice, WorkloadPhase,
    apply_to, decide_rollout, plan, render_device_config,
};
use flotta_core::wire;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use proptest::prelude::*;
use serde_json::Value;

fn arb_workload() -> impl Strategy<Value = wire::Workload> {
    (
        0..6usize,
        0..3usize,
        proptest::collection::vec(0..4usize, 0..3),
    )
        .prop_map(|(name, image, configmaps)| wire::Workload {
            name: Some(format!("w{name}")),
            specification: Some(format!("containers:\n- name: main\n  image: img{image}\n")),
            configmaps: (!configmaps.is_empty()).then(|| {
                configmaps
                    .iter()
                    .map(|c| format!("name: cm{c}\n"))
                    .collect()
            }),
            ..Default::default()
        })
}

fn dedup_by_name<T>(mut items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    let mut seen = std::collections::BTreeSet::new();
    items.retain(|item| seen.insert(key(item)));
    items
}

prop_compose! {
    fn arb_message()(
        workloads in proptest::collection::vec(arb_workload(), 0..6),
        secrets in proptest::collection::vec((0..4usize, 0..3usize), 0..4),
        files in proptest::collection::vec((0..4usize, 0..3usize), 0..4),
        mounts in proptest::collection::vec(0..4usize, 0..3),
        period in 1..100i64,
        os in proptest::option::of((0..3usize, any::<bool>())),
    ) -> wire::DeviceConfigurationMessage {
        wire::DeviceConfigurationMessage {
            device_id: Some("dev".into()),
            configuration: Some(wire::DeviceConfiguration {
                heartbeat: Some(wire::HeartbeatConfiguration {
                    period_seconds: Some(period),
                    ..Default::default()
                }),
                os: os.map(|(commit, auto)| wire::OsInformation {
                    commit_id: Some(format!("c{commit}")),
                    automatically_upgrade: Some(auto),
                    ..Default::default()
                }),
                mounts: Some(dedup_by_name(mounts, |m| m.to_string()).into_iter().map(|m| wire::MountInfo {
                    device: Some(format!("/dev/sd{m}")),
                    directory: Some(format!("/mnt/{m}")),
                    ..Default::default()
                }).collect()),
                files: Some(dedup_by_name(files, |f| f.0.to_string()).into_iter().map(|(path, content)| wire::FileInfo {
                    path: format!("/etc/f{path}"),
                    content: format!("content {content}"),
                    ..Default::default()
                }).collect()),
                ..Default::default()
            }),
            workloads: Some(dedup_by_name(workloads, |w| w.name.clone().unwrap_or_default())),
            secrets: Some(dedup_by_name(secrets, |s| s.0.to_string()).into_iter().map(|(name, data)| wire::Secret {
                name: Some(format!("s{name}")),
                data: Some(format!("{{\"k\":\"{data}\"}}")),
                ..Default::default()
            }).collect()),
            ..Default::default()
        }
    }
}

/// Rebuilds every object of a JSON value with its keys in reverse order.
fn reverse_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reverse_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(reverse_keys).collect()),
        other => other.clone(),
    }
}

fn expected_after(a: &RenderedConfig, b: &RenderedConfig) -> ObservedState {
    let mut expected = ObservedState::from_config(b);
    let upgrades = b
        .message
        .configuration
        .as_ref()
        .and_then(|c| c.os.as_ref())
        .is_some_and(|os| os.automatically_upgrade == Some(true));
    if !upgrades {
        expected.os = ObservedState::from_config(a).os;
    }
    expected
}

proptest! {
    #[test]
    fn version_is_invariant_under_reordering(
        message in arb_message(),
        seed in any::<u64>(),
    ) {
        let original = ConfigVersion::of(&message).expect("encodes");
        let mut shuffled = message.clone();
        let rotate = |len: usize| if len == 0 { 0 } else { (seed as usize) % len };
        if let Some(w) = shuffled.workloads.as_mut() {
            let n = rotate(w.len());
            w.rotate_left(n);
            w.reverse();
            for workload in w.iter_mut() {
                if let Some(c) = workload.configmaps.as_mut() { c.reverse(); }
            }
        }
        if let Some(s) = shuffled.secrets.as_mut() { let n = rotate(s.len()); s.rotate_left(n); }
        if let Some(c) = shuffled.configuration.as_mut() {
            if let Some(f) = c.files.as_mut() { f.reverse(); }
            if let Some(m) = c.mounts.as_mut() { m.reverse(); }
        }
        prop_assert_eq!(&ConfigVersion::of(&shuffled).expect("encodes"), &original);

        let mut value = serde_json::to_value(&message).expect("encodes");
        if let Value::Object(map) = &mut value { map.remove("version"); }
        prop_assert_eq!(&ConfigVersion::of_value(&reverse_keys(&value)), &original);
    }

    #[test]
    fn version_changes_with_content(message in arb_message(), period in 100..200i64) {
        let mut changed = message.clone();
        if let Some(h) = changed.configuration.as_mut().and_then(|c| c.heartbeat.as_mut()) {
            h.period_seconds = Some(period);
        }
        prop_assert_ne!(
            ConfigVersion::of(&message).expect("encodes"),
            ConfigVersion::of(&changed).expect("encodes")
        );
    }

    #[test]
    fn applying_the_plan_reaches_the_desired_state(a in arb_message(), b in arb_message()) {
        let a = RenderedConfig::from_message(a);
        let b = RenderedConfig::from_message(b);
        let observed = ObservedState::from_config(&a);
        let actions = plan(&a, &b, &observed);
        let after = apply_to(&observed, &actions);
        prop_assert_eq!(&after, &expected_after(&a, &b));
        prop_assert!(plan(&b, &b, &after).is_empty(), "planning again after applying yields nothing");
    }

    #[test]
    fn planning_a_config_against_itself_is_empty(x in arb_message()) {
        let x = RenderedConfig::from_message(x);
        prop_assert!(plan(&x, &x, &ObservedState::from_config(&x)).is_empty());
    }

    #[test]
    fn rollout_never_exceeds_max_unavailable(
        fleet in proptest::collection::vec((0..3usize, 0..4usize, 0..2usize), 1..40),
        cap in 0..10i32,
        limits in proptest::collection::vec(1..10i32, 0..3),
        threshold in 0..=100u32,
    ) {
        let names: Vec<String> = (0..fleet.len()).map(|i| format!("d{i:02}")).collect();
        let labels = BTreeMap::new();
        let versions = [None, Some("v1"), Some("v2")];
        let phases = [WorkloadPhase::Running, WorkloadPhase::Deploying, WorkloadPhase::Failed, WorkloadPhase::Unknown];
        let devices: Vec<RolloutDevice<'_>> = fleet
            .iter()
            .zip(&names)
            .map(|((version, phase, assigned_new), name)| {
                let reported = versions[*version];
                RolloutDevice {
                    name,
                    labels: &labels,
                    assigned_version: if *assigned_new == 1 { Some("v2") } else { reported },
                    reported_version: reported,
                    phase: phases[*phase],
                }
            })
            .collect();
        let policy = RolloutPolicy {
            batches: Some(limits.iter().map(|l| RolloutBatch { limit: Some(IntOrString::Int(*l)), ..Default::default() }).collect()),
            max_unavailable: Some(IntOrString::Int(cap)),
            success_threshold: Some(IntOrString::String(format!("{threshold}%"))),
            ..Default::default()
        };
        let decision = decide_rollout(Some(&policy), "v2", &devices).expect("valid policy");
        let unavailable = |d: &RolloutDevice<'_>| d.phase != WorkloadPhase::Running
            || (d.assigned_version == Some("v2") && d.reported_version != Some("v2"));
        let before = devices.iter().filter(|d| unavailable(d)).count();
        let newly_unavailable = devices
            .iter()
            .filter(|d| !unavailable(d) && decision.newly_assigned.iter().any(|n| n == d.name))
            .count();
        let cap = usize::try_from(cap).expect("non-negative");
        prop_assert!(newly_unavailable <= cap.saturating_sub(before),
            "{newly_unavailable} newly unavailable with {before} already down and cap {cap}");
        for d in &devices {
            let had = d.assigned_version == Some("v2") || d.reported_version == Some("v2");
            prop_assert!(!had || decision.assigned.iter().any(|n| n == d.name), "assignments are never taken back");
        }
    }

    #[test]
    fn dangling_references_give_problems_not_panics(
        secret_refs in proptest::collection::vec(0..4usize, 0..3),
        config_refs in proptest::collection::vec(0..4usize, 0..3),
        existing_secrets in proptest::collection::btree_set(0..4usize, 0..4),
        existing_configs in proptest::collection::btree_set(0..4usize, 0..4),
    ) {
        let env: Vec<String> = secret_refs
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{{name: E{i}, valueFrom: {{secretKeyRef: {{name: s{s}, key: k}}}}}}"))
            .collect();
        let env_from: Vec<String> = config_refs
            .iter()
            .map(|c| format!("{{configMapRef: {{name: c{c}}}}}"))
            .collect();
        let workload: EdgeWorkload = serde_yaml_ng::from_str(&format!(
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata: {{name: w}}\nspec:\n  type: pod\n  device: d\n  pod:\n    spec: {{containers: [{{name: m, image: i, env: [{}], envFrom: [{}]}}]}}\n",
            env.join(", "),
            env_from.join(", ")
        )).expect("fixture parses");
        let device = EdgeDevice::new("d", Default::default());
        let secrets: Vec<Secret> = existing_secrets.iter().map(|s| Secret {
            metadata: flotta_core::model::ObjectMeta { name: Some(format!("s{s}")), ..Default::default() },
            string_data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
            ..Default::default()
        }).collect();
        let configs: Vec<ConfigMap> = existing_configs.iter().map(|c| ConfigMap {
            metadata: flotta_core::model::ObjectMeta { name: Some(format!("c{c}")), ..Default::default() },
            ..Default::default()
        }).collect();
        let rendered = render_device_config(&device, &[], &[workload], &secrets, &configs);
        let missing = secret_refs.iter().filter(|s| !existing_secrets.contains(s)).count()
            + config_refs.iter().filter(|c| !existing_configs.contains(c)).count();
        prop_assert_eq!(rendered.problems.len(), missing);
        prop_assert!(rendered.problems.iter().all(|p| p.reason == ProblemReason::DanglingReference));
        let included = rendered.message.workloads.as_ref().is_some_and(|w| !w.is_empty());
        prop_assert_eq!(included, missing == 0);
    }
}

mod enforced_rollout {
    use std::collections::{BTreeMap, BTreeSet};

    use flotta_core::model::{
        EdgeWorkloadSpec, IntOrString, LabelSelector, RolloutBatch, RolloutPolicy,
    };
    use flotta_core::reconcile::{
        DeviceWorkloadState, RolloutControls, RolloutRecord, RolloutTarget, WorkloadRevision,
        step_rollout,
    };
    use proptest::prelude::*;

    fn revision(name: &str) -> WorkloadRevision {
        WorkloadRevision {
            revision: name.into(),
            generation: None,
            spec: EdgeWorkloadSpec::default(),
        }
    }

    fn arb_quantity(max_count: i32) -> impl Strategy<Value = IntOrString> {
        prop_oneof![
            (1..=max_count).prop_map(IntOrString::Int),
            (1..=100u32).prop_map(|p| IntOrString::String(format!("{p}%"))),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = RolloutPolicy> {
        (
            proptest::collection::vec(
                (
                    proptest::option::of(arb_quantity(6)),
                    proptest::option::of(0..3u8),
                ),
                0..4,
            ),
            proptest::option::of(arb_quantity(4)),
            proptest::option::of(0..=100u32),
            any::<bool>(),
        )
            .prop_map(
                |(batches, max_unavailable, threshold, manual)| RolloutPolicy {
                    batches: Some(
                        batches
                            .into_iter()
                            .map(|(limit, ring)| RolloutBatch {
                                limit,
                                selector: ring.map(|r| LabelSelector {
                                    match_labels: Some(BTreeMap::from([(
                                        "ring".to_owned(),
                                        r.to_string(),
                                    )])),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    max_unavailable,
                    success_threshold: threshold.map(|t| IntOrString::String(format!("{t}%"))),
                    manual_approval: manual.then_some(true),
                    ..Default::default()
                },
            )
    }

    /// What a device does between two steps: 0 nothing, 1 run what it was given,
    /// 2 fail on it, 3 fall silent, 4 come back.
    fn arb_events(devices: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(0..5u8, devices), 1..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_device_outside_a_released_batch_gets_the_new_revision_and_the_cap_holds(
            (rings, events) in (1..16usize).prop_flat_map(|n| (
                proptest::collection::vec(0..3u8, n),
                arb_events(n),
            )),
            policy in arb_policy(),
            approvals in proptest::collection::vec(any::<bool>(), 12),
            pauses in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let names: Vec<String> = (0..rings.len()).map(|i| format!("d{i:02}")).collect();
            let labels: Vec<BTreeMap<String, String>> = rings
                .iter()
                .map(|r| BTreeMap::from([("ring".to_owned(), r.to_string())]))
                .collect();
            let mut states = vec![DeviceWorkloadState::Older; names.len()];
            let targets = |states: &[DeviceWorkloadState]| -> Vec<RolloutTarget<'_>> {
                names.iter().zip(&labels).zip(states).map(|((name, labels), state)| RolloutTarget {
                    name,
                    labels,
                    state: state.clone(),
                }).collect()
            };
            let (mut record, _) = step_rollout(
                Some(&policy), None, &revision("v1"), &targets(&states), RolloutControls::default(), 0,
            ).expect("valid policy");
            let cap = |total: usize| match &policy.max_unavailable {
                None => usize::MAX,
                Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
                Some(IntOrString::String(p)) => {
                    let p: usize = p.trim_end_matches('%').parse().unwrap_or(0);
                    (total * p).div_ceil(100)
                }
            };
            let mut approved: Option<u32> = None;
            let mut ever_updated: BTreeSet<String> = BTreeSet::new();
            for (step, events) in events.iter().enumerate() {
                let before = record.clone();
                if approvals.get(step).copied().unwrap_or(false) {
                    approved = Some(before.released_batches);
                }
                let controls = RolloutControls {
                    paused: pauses.get(step).copied().unwrap_or(false) && step % 3 == 2,
                    approved_batch: approved,
                };
                let unavailable = |record: &RolloutRecord, states: &[DeviceWorkloadState]| {
                    names.iter().zip(states).filter(|(name, state)| {
                        let updated = record.complete && record.current_revision.as_deref() == Some("v2")
                            || record.updated.contains(name);
                        match state {
                            DeviceWorkloadState::Current => false,
                            DeviceWorkloadState::Older => updated,
                            _ => true,
                        }
                    }).count()
                };
                let down_before = if before.current_revision.as_deref() == Some("v2") {
                    unavailable(&before, &states)
                } else {
                    states.iter().filter(|s| !matches!(s, DeviceWorkloadState::Older)).count()
                };
                let (next, _) = step_rollout(
                    Some(&policy), Some(&before), &revision("v2"), &targets(&states), controls, i64::try_from(step).unwrap_or(0),
                ).expect("valid policy");
                // 1. Every device given v2 belongs to a released batch.
                let released = next.batches.iter().enumerate()
                    .filter(|(_, b)| b.released).count();
                prop_assert!(next.complete || usize::try_from(next.released_batches).unwrap_or(0) == released);
                if !next.complete {
                    // Recompute membership the way core orders it: updated first, then by name.
                    let updated: BTreeSet<&String> = next.updated.iter().collect();
                    for batch in next.batches.iter().filter(|b| !b.released) {
                        prop_assert_eq!(batch.updated, 0, "an unreleased batch has no updated device: {:?}", next);
                    }
                    prop_assert_eq!(
                        next.batches.iter().map(|b| b.updated as usize).sum::<usize>(),
                        updated.len()
                    );
                }
                // 2. Assignments are never taken back within a revision.
                for name in &before.updated {
                    prop_assert!(next.complete || next.updated.contains(name));
                }
                // 3. maxUnavailable: giving devices the new revision never pushes the
                // count of unavailable targets above the cap (or above what it was).
                let down_after = unavailable(&next, &states);
                prop_assert!(
                    down_after <= cap(names.len()).max(down_before),
                    "{down_after} unavailable after the step, {down_before} before, cap {}", cap(names.len())
                );
                // 4. Manual approval: no batch past the approved one is released.
                if policy.manual_approval == Some(true) && !next.complete {
                    let limit = approved.unwrap_or(0) + 1;
                    prop_assert!(next.released_batches <= limit.max(1));
                }
                ever_updated.extend(next.updated.iter().cloned());
                // The devices act on what they were given.
                for ((name, state), event) in names.iter().zip(&mut states).zip(events) {
                    let given = next.complete || next.updated.contains(name);
                    *state = match (event, given) {
                        (1, true) => DeviceWorkloadState::Current,
                        (2, true) => DeviceWorkloadState::Failed("WorkloadExited".into()),
                        (3, _) => DeviceWorkloadState::Unknown,
                        (4, false) => DeviceWorkloadState::Older,
                        (4, true) => DeviceWorkloadState::Current,
                        _ => state.clone(),
                    };
                    // A device never runs v2 unless it was given it.
                    prop_assert!(given || *state != DeviceWorkloadState::Current);
                }
                record = next;
            }
        }
    }
}
