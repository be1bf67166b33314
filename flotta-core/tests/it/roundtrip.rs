//! Every Flotta sample and payload parses into our types and serializes back
//! without losing or changing a field.

use flotta_core::model::{EdgeDevice, EdgeDeviceSet, EdgeWorkload, Hardware};
use flotta_core::wire::{self, Heartbeat, Message, RegistrationInfo};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::reference::{flotta_dir, read};

/// Drops `null` members: our types treat `null` and absent alike (as Flotta's Go
/// code does) and write neither, so `"workloads": null` comes back absent.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn assert_round_trip<T: DeserializeOwned + Serialize>(what: &str, input: Value) -> T {
    let typed: T = serde_json::from_value(input.clone())
        .unwrap_or_else(|e| panic!("{what} does not parse: {e}"));
    let output = serde_json::to_value(&typed).unwrap_or_else(|e| panic!("{what}: {e}"));
    if output != input {
        assert_eq!(
            output,
            without_nulls(input),
            "{what} changed on a round trip"
        );
    }
    typed
}

/// A `misc/*.json.in` payload with its load-test template markers (`${__UUID()}`
/// and any `{{...}}`) replaced by plausible values.
fn json_payload(relative: &str) -> Option<Value> {
    let dir = flotta_dir()?;
    let mut text = read(&dir, relative);
    text = text.replace("${__UUID()}", "5b0bbe8e-3b7f-4c43-9d5a-0d1c6f2a9e11");
    while let Some(start) = text.find("{{") {
        let Some(len) = text[start..].find("}}") else {
            break;
        };
        text.replace_range(start..start + len + 2, "placeholder");
    }
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}")))
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

#[test]
fn flotta_heartbeat_payload_round_trips() {
    let Some(input) = json_payload("misc/scale-tests-edgedevice-heartbeat-message.json.in") else {
        return;
    };
    let message: Message = assert_round_trip("heartbeat message", input);
    assert_eq!(
        message.directive.as_deref(),
        Some(wire::directive::HEARTBEAT)
    );
    assert_eq!(message.type_, Some(wire::MessageType::Data));
    let content = message.content.clone().expect("has content");
    let heartbeat: Heartbeat = assert_round_trip("heartbeat content", content);
    assert_eq!(heartbeat.status.as_deref(), Some("up"));
    assert_eq!(heartbeat.version.as_deref(), Some("188721"));
    assert!(heartbeat.workloads.is_none());
    // `time` is not in Flotta's API definition; it is kept as an unknown field.
    assert!(heartbeat.extra.contains_key("time"));
}

#[test]
fn flotta_heartbeat_with_events_payload_round_trips() {
    let Some(input) =
        json_payload("misc/scale-tests-edgedevice-heartbeat-with-events-message.json.in")
    else {
        return;
    };
    let message: Message = assert_round_trip("heartbeat message", input);
    let heartbeat: Heartbeat = message.content_as().expect("heartbeat content");
    let content = message.content.clone().expect("has content");
    assert_round_trip::<Heartbeat>("heartbeat content", content);
    let events = heartbeat.events.expect("has events");
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].type_.as_deref(), Some("warn"));
    let workloads = heartbeat.workloads.expect("has workloads");
    let statuses: Vec<_> = workloads
        .iter()
        .filter_map(|w| w.status.as_deref())
        .collect();
    assert_eq!(statuses, ["Running", "Created", "Running"]);
}

#[test]
fn flotta_registration_payload_round_trips() {
    let Some(input) = json_payload("misc/scale-tests-edgedevice-registration-message.json.in")
    else {
        return;
    };
    // The load-test file wraps the message as {"DeviceID": ..., "Message": ...}.
    let message = input.get("Message").cloned().expect("wrapped message");
    let message: Message = assert_round_trip("registration message", message);
    assert_eq!(
        message.directive.as_deref(),
        Some(wire::directive::REGISTRATION)
    );
    let content = message.content.clone().expect("has content");
    let info: RegistrationInfo = assert_round_trip("registration content", content);
    // `os_image_id` is not in Flotta's API definition; kept as an unknown field.
    assert!(info.extra.contains_key("os_image_id"));
    let hardware = info.hardware.expect("has hardware");
    let cpu = hardware.cpu.as_ref().expect("has cpu");
    assert_eq!(cpu.count, Some(8));
    assert_eq!(
        cpu.frequency.as_ref().map(ToString::to_string).as_deref(),
        Some("3600")
    );

    // The same inventory in the resource shape, and back.
    let resource = Hardware::try_from(hardware.clone()).expect("converts to the model");
    assert_eq!(
        resource.cpu.as_ref().and_then(|c| c.frequency.as_deref()),
        Some("3600")
    );
    assert_eq!(
        resource.interfaces.len(),
        hardware.interfaces.as_ref().map_or(0, Vec::len)
    );
    let back = wire::HardwareInfo::try_from(resource).expect("converts back");
    assert_eq!(back.cpu, hardware.cpu);
    assert_eq!(back.gpus, hardware.gpus);
    assert_eq!(back.memory, hardware.memory);
}

#[test]
fn flottas_ansible_samples_load_and_the_empty_execution_is_refused_by_field() {
    use flotta_core::manifest::AnyResource;
    use flotta_core::validation::Validate;
    let Some(dir) = flotta_dir() else {
        return;
    };
    let config = flotta_core::manifest::parse_manifests(&read(
        &dir,
        "samples/management_v1alpha1_edgeconfig.yaml",
    ))
    .expect("EdgeConfig sample");
    let [AnyResource::EdgeConfig(config)] = config.as_slice() else {
        panic!("one EdgeConfig: {config:?}");
    };
    assert_eq!(config.validate(), vec![], "Flotta's sample is valid");
    let playbook = config.spec.edge_playbook.as_ref().expect("edgePlaybook");
    assert_eq!(playbook.timeout_seconds, Some(150));
    let text = flotta_core::ansible::decode_content(&playbook.playbooks[0].content)
        .expect("the sample's playbook decodes");
    assert!(text.contains("hello world"), "{text}");
    // Flotta's PlaybookExecution sample is a scaffold whose spec is empty (null):
    // refused, naming the field.
    let err = flotta_core::manifest::parse_manifests(&read(
        &dir,
        "samples/management_v1alpha1_playbookexecution.yaml",
    ))
    .expect_err("an execution without a spec");
    assert_eq!(err.field_path(), Some("spec"), "{err}");
}

#[test]
fn flotta_samples_load_as_one_manifest() {
    let Some(dir) = flotta_dir() else {
        return;
    };
    let manifest: String = [
        "samples/management_v1alpha1_edgedevice.yaml",
        "samples/management_v1alpha1_edgedeviceset.yaml",
        "samples/management_v1alpha1_edgeworkload.yaml",
    ]
    .iter()
    .map(|file| format!("---\n{}", read(&dir, file)))
    .collect();
    let resources = flotta_core::manifest::parse_manifests(&manifest).expect("samples load");
    let kinds: Vec<&str> = resources.iter().map(|r| r.kind()).collect();
    assert_eq!(kinds, ["EdgeDevice", "EdgeDeviceSet", "EdgeWorkload"]);
    for resource in &resources {
        use flotta_core::validation::Validate;
        assert_eq!(
            resource.validate(),
            [],
            "{} sample is valid",
            resource.kind()
        );
    }
}
