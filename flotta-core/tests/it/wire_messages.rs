//! Our own wire fixtures: every section of the configuration message, enrolment
//! and registration, with Flotta's exact keys.

use flotta_core::model;
use flotta_core::wire::{
    self, DeviceConfigurationMessage, EnrolmentInfo, Message, RegistrationResponse, WireError,
};
use serde_json::{Value, json};

fn configuration_fixture() -> Value {
    json!({
        "device_id": "6f1c2a9e-4b1d-4e7a-9c3f-2d8e5b7a1c04",
        "version": "sha256:5d41402abc4b2a76b9719d911017c592",
        "workloads_monitoring_interval": 15,
        "configuration": {
            "ansible-manager": {"period_seconds": 60},
            "heartbeat": {"period_seconds": 30, "hardware_profile": {"include": true, "scope": "delta"}},
            "storage": {"s3": {
                "bucket_host": "s3.plant.example", "bucket_port": 443, "bucket_name": "frames",
                "bucket_region": "eu-1", "aws_access_key_id": "AKIAEXAMPLE",
                "aws_secret_access_key": "c2VjcmV0", "aws_ca_bundle": "-----BEGIN CERTIFICATE-----"
            }},
            "metrics": {
                "retention": {"max_mib": 200, "max_hours": 24},
                "system": {"interval": 60, "allow_list": {"names": ["node_cpu_seconds_total"]}, "disabled": false},
                "data-transfer": {"interval": 120, "disabled": true},
                "receiver": {"url": "https://metrics.example/write", "timeout_seconds": 10, "request_num_samples": 500, "caCert": "PEM"}
            },
            "os": {"commit_id": "0305686e", "hosted_objects_url": "https://os.example/repo", "automatically_upgrade": true},
            "log-collection": {"plant-syslog": {"kind": "syslog", "buffer_size": 32, "syslog_config": {"address": "10.0.0.5:514", "protocol": "tcp"}}},
            "mounts": [{"device": "/dev/sdb1", "directory": "/var/lib/data", "type": "ext4", "options": "rw"}],
            "files": [{"path": "/etc/app.conf", "content": "a=1\n", "mode": "0644"}]
        },
        "workloads": [{
            "name": "frame-grabber",
            "namespace": "plant-north",
            "labels": {"app": "frame-grabber"},
            "annotations": {"example.com/owner": "vision"},
            "specification": "containers:\n- name: grabber\n  image: grabber:1.4\n",
            "data": {"ingress": [{"source": "models", "target": "model-store"}], "egress": [{"source": "frames", "target": "camera-frames"}]},
            "imageRegistries": {"authFile": "{\"auths\":{}}"},
            "metrics": {"path": "/metrics", "port": 8080, "interval": 60, "allow_list": {"names": ["fps"]},
                        "containers": {"grabber": {"disabled": false, "path": "/m", "port": 9000}}},
            "configmaps": ["apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"],
            "log_collection": "plant-syslog"
        }],
        "secrets": [{"name": "registry", "data": "{\"token\":\"dG9r\"}"}]
    })
}

#[test]
fn configuration_message_round_trips_with_every_section() {
    let input = configuration_fixture();
    let message: DeviceConfigurationMessage =
        serde_json::from_value(input.clone()).expect("parses");
    assert_eq!(serde_json::to_value(&message).expect("serializes"), input);
    let configuration = message.configuration.as_ref().expect("has configuration");
    assert_eq!(
        configuration
            .ansible_manager
            .as_ref()
            .and_then(|a| a.period_seconds),
        Some(60)
    );
    let metrics = configuration.metrics.as_ref().expect("has metrics");
    assert_eq!(
        metrics.data_transfer.as_ref().and_then(|d| d.disabled),
        Some(true)
    );
    let logs = configuration
        .log_collection
        .as_ref()
        .expect("has log-collection");
    assert_eq!(logs["plant-syslog"].buffer_size, Some(32));
    // Nothing landed in `extra`: every key above is a known field.
    assert!(configuration.extra.is_empty());
    let workload = &message.workloads.as_ref().expect("has workloads")[0];
    assert!(workload.extra.is_empty());
    assert_eq!(
        workload
            .image_registries
            .as_ref()
            .and_then(|r| r.auth_file.as_deref()),
        Some("{\"auths\":{}}")
    );
}

#[test]
fn configuration_sections_convert_from_the_model() {
    let mount = model::Mount {
        device: Some("/dev/sdb1".into()),
        folder: Some("/var/lib/data".into()),
        type_: Some("ext4".into()),
        options: Some("rw".into()),
        extra: Default::default(),
    };
    let heartbeat = model::HeartbeatConfiguration {
        period_seconds: Some(30),
        hardware_profile: Some(model::HardwareProfileConfiguration {
            include: Some(true),
            scope: Some("delta".into()),
            extra: Default::default(),
        }),
        // Beyond Flotta, and absent from its fixture when not set.
        long_poll_seconds: None,
        max_silence_seconds: None,
        extra: Default::default(),
    };
    let fixture = configuration_fixture();
    assert_eq!(
        serde_json::to_value(wire::MountInfo::from(mount)).expect("serializes"),
        fixture["configuration"]["mounts"][0]
    );
    assert_eq!(
        serde_json::to_value(wire::HeartbeatConfiguration::from(heartbeat)).expect("serializes"),
        fixture["configuration"]["heartbeat"]
    );
}

#[test]
fn enrolment_message_carries_features_and_namespace() {
    let input = json!({
        "type": "data",
        "message_id": "9a4c1f0e-1111-4c2b-8f00-5a6b7c8d9e0f",
        "version": 1,
        "sent": "2026-03-02T09:14:00+01:00",
        "directive": "enrolment",
        "content": {
            "target_namespace": "plant-north",
            "features": {"modelName": "Raspberry Pi 4", "hardware": {"hostname": "camera-17",
                "host_devices": [{"path": "/dev/video0", "device_type": "character", "uid": 0, "gid": 44, "major": 81, "minor": 0}]}}
        }
    });
    let message: Message = serde_json::from_value(input.clone()).expect("parses");
    assert_eq!(serde_json::to_value(&message).expect("serializes"), input);
    let info: EnrolmentInfo = message.content_as().expect("enrolment content");
    assert_eq!(info.target_namespace.as_deref(), Some("plant-north"));
    let hardware = info.features.and_then(|f| f.hardware).expect("hardware");
    let resource = model::Hardware::try_from(hardware).expect("converts");
    let device = &resource.host_devices.expect("host devices")[0];
    assert_eq!(
        (device.owner, device.group, device.major),
        (Some(0), Some(44), Some(81))
    );
}

#[test]
fn content_of_the_wrong_shape_names_the_field() {
    let message = Message::data(
        "m-1",
        wire::directive::HEARTBEAT,
        &json!({"workloads": [{"name": "a", "status": 3}]}),
    )
    .expect("builds");
    let err = message
        .content_as::<wire::Heartbeat>()
        .expect_err("status is a string");
    match err {
        WireError::InvalidContent { path, .. } => assert_eq!(path, "workloads[0].status"),
        other => panic!("unexpected {other}"),
    }
    let empty = Message {
        content: None,
        ..message
    };
    assert!(matches!(
        empty.content_as::<RegistrationResponse>(),
        Err(WireError::MissingContent)
    ));
}
