//! `EdgeDeviceSet.status` from the devices of its namespace: how many devices the
//! set claims, how many run the configuration rendered for them, and what is wrong
//! (template parameters that do not render for a member, an invalid selector,
//! devices other sets claim too).

use std::collections::BTreeMap;

use crate::model::{Condition, EdgeDevice, EdgeDeviceSet, EdgeDeviceSetStatus, Time};

use super::render::{claiming_sets, render_template_spec};
use super::revision::RolloutTarget;
use super::status::{
    ConditionSet, DeviceWorkloadState, device_condition, heartbeat_period_of, is_stale,
};

/// Condition types of a device set.
pub mod set_condition {
    /// `False` when the set's template does not render for some member
    /// (`TemplateFailed`) or its selector is invalid (`InvalidSelector`), with the
    /// devices and problems in the message; `True` (`Valid`) otherwise.
    pub const VALID: &str = "Valid";
    /// `True` (`SeveralDeviceSets`) when other sets also claim some of the set's
    /// devices; the message says which set applies to each.
    pub const MULTIPLE_OWNERS: &str = "MultipleOwners";
    /// `True` (`AllUpdated`) when every member's `Updated` condition is `True`.
    pub const UPDATED: &str = "Updated";
}

/// Most devices named in one condition message.
const MAX_NAMED: usize = 10;

fn name_of(set: &EdgeDeviceSet) -> &str {
    set.metadata.name.as_deref().unwrap_or("")
}

fn listed(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(MAX_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_NAMED {
        text.push_str(&format!("; and {} more", items.len() - MAX_NAMED));
    }
    text
}

/// What a member runs of its set whose live revision is `live`, for the set's
/// rollout: `Unknown` when silent, `Current` when the configuration it reports
/// running holds `live` (`status.deviceSetRevision`), `Failed` with the reason of
/// its `Degraded` condition when it is degraded and does not run `live` (an agent
/// refusing or failing to apply a version reports so), `Older` otherwise.
pub fn set_member_state(device: &EdgeDevice, live: &str, now: &Time) -> DeviceWorkloadState {
    let status = device.status.as_ref();
    if is_stale(
        status.and_then(|s| s.last_seen.as_ref()),
        now,
        heartbeat_period_of(device),
    ) {
        return DeviceWorkloadState::Unknown;
    }
    if status.and_then(|s| s.device_set_revision.as_deref()) == Some(live) {
        return DeviceWorkloadState::Current;
    }
    let degraded = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == device_condition::DEGRADED && c.status == "True")
        })
        .map(|c| c.reason.clone());
    match degraded {
        Some(reason) => DeviceWorkloadState::Failed(reason),
        None => DeviceWorkloadState::Older,
    }
}

/// The targets of `set`'s rollout among `devices` (every set of the namespace in
/// `sets`): the devices whose configuration the set applies to (the first of the
/// sets claiming it), each with its [`set_member_state`] against `live`.
pub fn set_rollout_targets<'a>(
    set: &EdgeDeviceSet,
    devices: &'a [EdgeDevice],
    sets: &[EdgeDeviceSet],
    live: &str,
    now: &Time,
) -> Vec<RolloutTarget<'a>> {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let name = name_of(set);
    devices
        .iter()
        .filter(|device| {
            claiming_sets(device, sets)
                .0
                .first()
                .is_some_and(|s| name_of(s) == name)
        })
        .map(|device| RolloutTarget {
            name: device.metadata.name.as_deref().unwrap_or(""),
            labels: device.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
            state: set_member_state(device, live, now),
        })
        .collect()
}

/// The status of `set` at `now`, given the devices of its namespace and every set
/// there (`sets`, `set` among them): `deviceCount` (devices it claims),
/// `updatedDevices`, `observedGeneration` and the conditions of
/// [`set_condition`]. Conditions keep their transition time while their status
/// holds.
pub fn device_set_status(
    set: &EdgeDeviceSet,
    devices: &[EdgeDevice],
    sets: &[EdgeDeviceSet],
    now: &Time,
) -> EdgeDeviceSetStatus {
    let name = name_of(set);
    let mut count = 0i64;
    let mut updated = 0i64;
    let mut template_problems = Vec::new();
    let mut selector_problem = None;
    let mut shared = Vec::new();
    for device in devices {
        let device_name = device.metadata.name.as_deref().unwrap_or("");
        let (claimers, problems) = claiming_sets(device, sets);
        if let Some(problem) = problems
            .into_iter()
            .find(|p| p.object == format!("EdgeDeviceSet/{name}"))
        {
            selector_problem = Some(problem.message);
        }
        if !claimers.iter().any(|s| name_of(s) == name) {
            continue;
        }
        count += 1;
        let is_updated = device
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == device_condition::UPDATED && c.status == "True")
            });
        if is_updated {
            updated += 1;
        }
        let applies = claimers.first().is_some_and(|s| name_of(s) == name);
        if claimers.len() > 1 {
            let others: Vec<&str> = claimers
                .iter()
                .map(|s| name_of(s))
                .filter(|n| *n != name)
                .collect();
            shared.push(format!(
                "{device_name} (also claimed by {}; {} applies)",
                others.join(", "),
                claimers.first().map_or("", |s| name_of(s))
            ));
        }
        if !applies {
            continue;
        }
        if let Some(template) = set.spec.template.as_ref().and_then(|t| t.spec.as_ref())
            && let Err(errors) = render_template_spec(template, &device.metadata)
        {
            for (field, message) in errors {
                template_problems.push(format!("{device_name}: {field}: {message}"));
            }
        }
    }

    let previous: &[Condition] = set
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let mut conditions = ConditionSet {
        previous,
        now,
        generation: set.metadata.generation,
        conditions: Vec::with_capacity(3),
    };
    match (&selector_problem, template_problems.is_empty()) {
        (Some(message), _) => conditions.set(
            set_condition::VALID,
            false,
            "InvalidSelector",
            format!("spec.selector: {message}"),
        ),
        (None, false) => conditions.set(
            set_condition::VALID,
            false,
            "TemplateFailed",
            listed(&template_problems),
        ),
        (None, true) => conditions.set(set_condition::VALID, true, "Valid", String::new()),
    }
    if shared.is_empty() {
        conditions.set(
            set_condition::MULTIPLE_OWNERS,
            false,
            "SingleOwner",
            String::new(),
        );
    } else {
        conditions.set(
            set_condition::MULTIPLE_OWNERS,
            true,
            "SeveralDeviceSets",
            listed(&shared),
        );
    }
    let all_updated = count > 0 && updated == count;
    conditions.set(
        set_condition::UPDATED,
        all_updated,
        if count == 0 {
            "NoDevices"
        } else if all_updated {
            "AllUpdated"
        } else {
            "NotAllUpdated"
        },
        format!("{updated} of {count} devices run the configuration rendered for them"),
    );

    EdgeDeviceSetStatus {
        conditions: Some(conditions.conditions),
        device_count: Some(count),
        observed_generation: set.metadata.generation,
        updated_devices: Some(updated),
        // The rollout step's record replaces it (the server's status task).
        rollout: set.status.as_ref().and_then(|s| s.rollout.clone()),
        extra: set
            .status
            .as_ref()
            .map(|s| s.extra.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn now() -> Time {
        Time(Timestamp::from_second(1000).expect("in range"))
    }

    fn device(name: &str, labels: serde_json::Value, updated: bool) -> EdgeDevice {
        serde_json::from_value(json!({
            "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDevice",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {},
            "status": {"conditions": [{"type": "Updated", "status": if updated {"True"} else {"False"},
                "reason": "x", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .expect("device")
    }

    fn set(name: &str, spec: serde_json::Value) -> EdgeDeviceSet {
        serde_json::from_value(json!({
            "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDeviceSet",
            "metadata": {"name": name, "namespace": "default", "generation": 3},
            "spec": spec,
        }))
        .expect("set")
    }

    fn condition<'a>(status: &'a EdgeDeviceSetStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == type_))
            .expect("condition")
    }

    #[test]
    fn counts_members_and_updated_devices() {
        let fleet = set("fleet", json!({"selector": {"matchLabels": {"site": "a"}}}));
        let devices = [
            device("a1", json!({"site": "a"}), true),
            device("a2", json!({"site": "a"}), false),
            device("b1", json!({"site": "b"}), true),
            device("m", json!({"flotta/member-of": "fleet"}), true),
        ];
        let status = device_set_status(&fleet, &devices, std::slice::from_ref(&fleet), &now());
        assert_eq!(status.device_count, Some(3));
        assert_eq!(status.updated_devices, Some(2));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(condition(&status, set_condition::VALID).status, "True");
        assert_eq!(
            condition(&status, set_condition::MULTIPLE_OWNERS).status,
            "False"
        );
        assert_eq!(
            condition(&status, set_condition::UPDATED).reason,
            "NotAllUpdated"
        );
    }

    #[test]
    fn template_problems_and_shared_devices_are_conditions() {
        let templated = set(
            "templated",
            json!({"selector": {"matchLabels": {"site": "a"}},
                "template": {"spec": {"files": [{"path": "/etc/{{ .metadata.labels.zone }}",
                "content": "x"}]}}}),
        );
        let other = set(
            "other",
            json!({"selector": {"matchLabels": {"kind": "cam"}}}),
        );
        let sets = [templated.clone(), other.clone()];
        let devices = [
            device("a1", json!({"site": "a", "zone": "z1"}), true),
            device("a2", json!({"site": "a"}), true),
            device(
                "a3",
                json!({"site": "a", "zone": "z3", "kind": "cam"}),
                true,
            ),
        ];
        let status = device_set_status(&templated, &devices, &sets, &now());
        assert_eq!(status.device_count, Some(3));
        let valid = condition(&status, set_condition::VALID);
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("False", "TemplateFailed")
        );
        assert!(valid.message.starts_with("a2: "), "{valid:?}");
        assert!(!valid.message.contains("a1"), "{valid:?}");
        let owners = condition(&status, set_condition::MULTIPLE_OWNERS);
        assert_eq!(owners.status, "True");
        assert!(
            owners
                .message
                .contains("a3 (also claimed by other; other applies)"),
            "{owners:?}"
        );
        let other_status = device_set_status(&other, &devices, &sets, &now());
        assert_eq!(other_status.device_count, Some(1));
        assert_eq!(
            condition(&other_status, set_condition::UPDATED).status,
            "True"
        );
    }
}
