//! Interim rendering of a device's configuration message and its version.
//!
//! This is a minimal stand-in until `flotta_core::reconcile::render_device_config`
//! lands: it renders the heartbeat, OS and mount settings of the device (or of its
//! device set, when it is a member of one) and every workload of the device's
//! namespace that names the device or whose `deviceSelector` matches its labels. The
//! version is a content hash of the rendered message, so that nothing but a change of
//! what the device receives changes it. Everything outside this file only calls
//! [`render_device_config`].

use std::collections::BTreeMap;

use flotta_core::model::{
    EdgeDevice, EdgeDeviceSet, EdgeDeviceSpec, EdgeWorkload, HeartbeatConfiguration, Mount,
    OsInformation,
};
use flotta_core::selector::{Labels, Selector};
use serde_json::{Map, Value, json};
use sha2::Digest;

/// The label that makes a device a member of a device set (Flotta's convention).
pub(super) const MEMBER_OF_LABEL: &str = "flotta/member-of";

/// How often the agent checks its workloads, seconds (Flotta's default).
const WORKLOADS_MONITORING_INTERVAL: u64 = 15;

/// A device's configuration message (`device-configuration-message`) and its version.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RenderedConfig {
    /// The message, `version` included.
    pub message: Value,
    /// Content hash of the message without its `version`.
    pub version: String,
}

/// Renders the configuration of `device`, given its device set (if any) and the
/// workloads of its namespace.
pub(super) fn render_device_config(
    device: &EdgeDevice,
    set: Option<&EdgeDeviceSet>,
    workloads: &[EdgeWorkload],
) -> RenderedConfig {
    let device_id = device.metadata.name.clone().unwrap_or_default();
    let (heartbeat, os, mounts) = match set {
        Some(set) => (
            set.spec.heartbeat.as_ref(),
            set.spec.os_information.as_ref(),
            set.spec.mounts.as_deref(),
        ),
        None => device_settings(&device.spec),
    };
    let mut configuration = Map::new();
    if let Some(heartbeat) = heartbeat {
        configuration.insert("heartbeat".into(), heartbeat_json(heartbeat));
    }
    if let Some(os) = os {
        configuration.insert("os".into(), os_json(os));
    }
    if let Some(mounts) = mounts {
        configuration.insert(
            "mounts".into(),
            Value::Array(mounts.iter().map(mount_json).collect()),
        );
    }
    let mut targeted: Vec<&EdgeWorkload> = workloads
        .iter()
        .filter(|w| targets(w, device, &device_id))
        .collect();
    targeted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let workloads: Vec<Value> = targeted.into_iter().map(workload_json).collect();

    let mut message = Map::new();
    message.insert("device_id".into(), Value::String(device_id));
    message.insert("configuration".into(), Value::Object(configuration));
    message.insert("workloads".into(), Value::Array(workloads));
    message.insert(
        "workloads_monitoring_interval".into(),
        Value::from(WORKLOADS_MONITORING_INTERVAL),
    );
    let mut message = Value::Object(message);
    let version = content_hash(&message);
    if let Some(object) = message.as_object_mut() {
        object.insert("version".into(), Value::String(version.clone()));
    }
    RenderedConfig { message, version }
}

fn device_settings(
    spec: &EdgeDeviceSpec,
) -> (
    Option<&HeartbeatConfiguration>,
    Option<&OsInformation>,
    Option<&[Mount]>,
) {
    (
        spec.heartbeat.as_ref(),
        spec.os_information.as_ref(),
        spec.mounts.as_deref(),
    )
}

fn targets(workload: &EdgeWorkload, device: &EdgeDevice, device_id: &str) -> bool {
    if workload.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if workload.spec.device.as_deref() == Some(device_id) {
        return true;
    }
    match &workload.spec.device_selector {
        // A selector that does not parse selects nothing rather than everything.
        Some(selector) => Selector::try_from(selector).is_ok_and(|s| s.matches(device)),
        None => false,
    }
}

fn content_hash(message: &Value) -> String {
    let bytes = serde_json::to_vec(message).unwrap_or_default();
    let digest = sha2::Sha256::digest(&bytes);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value);
    }
}

fn heartbeat_json(heartbeat: &HeartbeatConfiguration) -> Value {
    let mut out = Map::new();
    insert_some(
        &mut out,
        "period_seconds",
        heartbeat.period_seconds.map(Value::from),
    );
    if let Some(profile) = &heartbeat.hardware_profile {
        let mut p = Map::new();
        insert_some(&mut p, "include", profile.include.map(Value::from));
        insert_some(&mut p, "scope", profile.scope.clone().map(Value::from));
        out.insert("hardware_profile".into(), Value::Object(p));
    }
    Value::Object(out)
}

fn os_json(os: &OsInformation) -> Value {
    let mut out = Map::new();
    insert_some(&mut out, "commit_id", os.commit_id.clone().map(Value::from));
    insert_some(
        &mut out,
        "hosted_objects_url",
        os.hosted_objects_url.clone().map(Value::from),
    );
    insert_some(
        &mut out,
        "automatically_upgrade",
        os.automatically_upgrade.map(Value::from),
    );
    Value::Object(out)
}

fn mount_json(mount: &Mount) -> Value {
    let mut out = Map::new();
    insert_some(&mut out, "device", mount.device.clone().map(Value::from));
    insert_some(&mut out, "directory", mount.folder.clone().map(Value::from));
    insert_some(&mut out, "type", mount.type_.clone().map(Value::from));
    insert_some(&mut out, "options", mount.options.clone().map(Value::from));
    Value::Object(out)
}

fn string_map(map: Option<&BTreeMap<String, String>>) -> Value {
    Value::Object(
        map.into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn workload_json(workload: &EdgeWorkload) -> Value {
    let specification = serde_yaml_ng::to_string(&workload.spec.pod.spec).unwrap_or_default();
    let mut out = Map::new();
    out.insert(
        "name".into(),
        Value::from(workload.metadata.name.clone().unwrap_or_default()),
    );
    out.insert(
        "namespace".into(),
        Value::from(workload.metadata.namespace.clone().unwrap_or_default()),
    );
    out.insert(
        "labels".into(),
        string_map(workload.metadata.labels.as_ref()),
    );
    out.insert(
        "annotations".into(),
        string_map(workload.metadata.annotations.as_ref()),
    );
    out.insert("specification".into(), Value::String(specification));
    if let Some(data) = &workload.spec.data {
        let paths = |paths: &Option<Vec<flotta_core::model::DataPath>>| {
            Value::Array(
                paths
                    .iter()
                    .flatten()
                    .map(|p| json!({"source": p.source, "target": p.target}))
                    .collect(),
            )
        };
        out.insert(
            "data".into(),
            json!({"ingress": paths(&data.ingress), "egress": paths(&data.egress)}),
        );
    }
    insert_some(
        &mut out,
        "log_collection",
        workload.spec.log_collection.clone().map(Value::from),
    );
    Value::Object(out)
}

/// The name of the device set `device` is a member of, if any.
pub(super) fn member_of(device: &EdgeDevice) -> Option<&str> {
    device.label(MEMBER_OF_LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, labels: &[(&str, &str)]) -> EdgeDevice {
        let mut device = EdgeDevice::new(name, EdgeDeviceSpec::default());
        device.metadata.namespace = Some("ns".into());
        device.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        device
    }

    fn workload(value: Value) -> EdgeWorkload {
        serde_json::from_value(value).expect("valid workload")
    }

    #[test]
    fn renders_workloads_by_name_and_selector_only() {
        let dev = device("dev-1", &[("site", "a")]);
        let by_name = workload(
            json!({"apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeWorkload", "metadata": {"name": "w-name", "namespace": "ns"},
            "spec": {"type": "pod", "device": "dev-1", "pod": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        );
        let by_selector = workload(
            json!({"apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeWorkload", "metadata": {"name": "w-sel", "namespace": "ns"},
            "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"site": "a"}}, "pod": {"spec": {"containers": []}}}}),
        );
        let other = workload(
            json!({"apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeWorkload", "metadata": {"name": "w-other", "namespace": "ns"},
            "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"site": "b"}}, "pod": {"spec": {"containers": []}}}}),
        );
        let rendered = render_device_config(&dev, None, &[other, by_selector, by_name]);
        let names: Vec<&str> = rendered.message["workloads"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|w| w["name"].as_str())
            .collect();
        assert_eq!(names, ["w-name", "w-sel"]);
        assert_eq!(rendered.message["device_id"], "dev-1");
        assert_eq!(rendered.message["version"], rendered.version.as_str());
        assert!(
            rendered.message["workloads"][0]["specification"]
                .as_str()
                .expect("yaml")
                .contains("image: i")
        );
    }

    #[test]
    fn version_changes_with_content_only() {
        let dev = device("dev-1", &[]);
        let a = render_device_config(&dev, None, &[]);
        let b = render_device_config(&dev, None, &[]);
        assert_eq!(a.version, b.version);
        let mut changed = dev.clone();
        changed.spec.heartbeat = Some(HeartbeatConfiguration {
            period_seconds: Some(30),
            ..Default::default()
        });
        let c = render_device_config(&changed, None, &[]);
        assert_ne!(a.version, c.version);
        assert_eq!(
            c.message["configuration"]["heartbeat"]["period_seconds"],
            30
        );
    }
}
