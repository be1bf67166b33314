//! Every Flotta sample and payload parses into our types and serializes back
//! without losing or changing a field.

use flotta_core::model::{EdgeDevice, EdgeDeviceSet, EdgeWorkload};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::reference::{flotta_dir, read};

fn assert_round_trip<T: DeserializeOwned + Serialize>(what: &str, input: Value) -> T {
    let typed: T = serde_json::from_value(input.clone())
        .unwrap_or_else(|e| panic!("{what} does not parse: {e}"));
    let output = serde_json::to_value(&typed).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(output, input, "{what} changed on a round trip");
    typed
}

fn yaml_sample(relative: &str) -> Option<Value> {
    let dir = flotta_dir()?;
    let text = read(&dir, relative);
    Some(serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}")))
}

#[test]
fn flotta_edge_device_sample_round_trips() {
    let Some(input) = yaml_sample("samples/management_v1alpha1_edgedevice.yaml") else {
        return;
    };
    let device: EdgeDevice = assert_round_trip("EdgeDevice sample", input);
    assert_eq!(
        device.spec.heartbeat.and_then(|h| h.period_seconds),
        Some(5)
    );
    let status = device.status.expect("sample has a status");
    // The sample predates the CRD: hardware uses the wire's snake_case keys, which
    // are preserved as unknown fields.
    let hardware = status.hardware.expect("sample has hardware");
    assert!(hardware.system_vendor.is_none());
    assert!(hardware.extra.contains_key("system_vendor"));
    assert!(status.extra.contains_key("lastSeenTime"));
}

#[test]
fn flotta_edge_device_set_sample_round_trips() {
    let Some(input) = yaml_sample("samples/management_v1alpha1_edgedeviceset.yaml") else {
        return;
    };
    let set: EdgeDeviceSet = assert_round_trip("EdgeDeviceSet sample", input);
    let os = set.spec.os_information.expect("sample has osInformation");
    assert_eq!(os.automatically_upgrade, Some(true));
    let logs = set.spec.log_collection.expect("sample has logCollection");
    assert_eq!(
        logs.get("syslog")
            .and_then(|l| l.syslog_config.as_ref())
            .map(|r| r.name.as_str()),
        Some("syslog-config-map")
    );
}

#[test]
fn flotta_edge_workload_sample_round_trips() {
    let Some(input) = yaml_sample("samples/management_v1alpha1_edgeworkload.yaml") else {
        return;
    };
    let workload: EdgeWorkload = assert_round_trip("EdgeWorkload sample", input);
    assert_eq!(workload.spec.type_, "pod");
    assert_eq!(workload.spec.pod.spec.containers.len(), 1);
    // `data.paths` is an outdated field (now `ingress`/`egress`), preserved as unknown.
    let data = workload.spec.data.expect("sample has data");
    assert!(data.egress.is_none());
    assert!(data.extra.contains_key("paths"));
}
