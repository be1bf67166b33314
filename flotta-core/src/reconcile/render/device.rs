//! The device's own section of the configuration message: heartbeat, metrics (with
//! their allow lists), storage, log collection, mounts and files, rendered from the
//! effective spec with the config maps and secrets they name.

use crate::model::{self, EdgeDeviceSpec};
use crate::wire;

use super::{
    DEFAULT_HEARTBEAT_PERIOD_SECONDS, DEFAULT_MAX_SILENCE_SECONDS, References, RenderProblem,
    config_map_value, dangling, longest_long_poll_seconds, secret_value,
};

/// Reads a metric allow list config map (key `metrics_list.yaml`, YAML `names: [...]`,
/// as Flotta).
pub(super) fn allow_list(
    reference: Option<&model::ObjectRef>,
    refs: &References<'_>,
    object: &str,
    field: &str,
    problems: &mut Vec<RenderProblem>,
) -> Option<wire::MetricsAllowList> {
    #[derive(serde::Deserialize)]
    struct Names {
        #[serde(default)]
        names: Vec<String>,
    }
    let name = &reference?.name;
    let Some(config_map) = refs.config_map(name.as_str()) else {
        problems.push(dangling(
            object.to_owned(),
            field,
            format!("config map '{name}' does not exist"),
        ));
        return None;
    };
    let Some(text) = config_map_value(config_map, "metrics_list.yaml") else {
        problems.push(dangling(
            object.to_owned(),
            field,
            format!("config map '{name}' has no key 'metrics_list.yaml'"),
        ));
        return None;
    };
    match serde_yaml_ng::from_str::<Names>(text) {
        Ok(list) => Some(wire::MetricsAllowList {
            names: Some(list.names),
            extra: Default::default(),
        }),
        Err(e) => {
            problems.push(dangling(
                object.to_owned(),
                field,
                format!("config map '{name}' key 'metrics_list.yaml' is not a names list: {e}"),
            ));
            None
        }
    }
}

fn component_metrics(
    component: &model::ComponentMetricsConfiguration,
    refs: &References<'_>,
    object: &str,
    field: &str,
    problems: &mut Vec<RenderProblem>,
) -> wire::ComponentMetricsConfiguration {
    wire::ComponentMetricsConfiguration {
        interval: component.interval,
        allow_list: allow_list(
            component.allow_list.as_ref(),
            refs,
            object,
            &format!("{field}.allowList"),
            problems,
        ),
        disabled: component.disabled,
        extra: Default::default(),
    }
}

pub(super) fn device_configuration(
    spec: &EdgeDeviceSpec,
    refs: &References<'_>,
    problems: &mut Vec<RenderProblem>,
) -> wire::DeviceConfiguration {
    let object = "EdgeDevice";
    let heartbeat = spec
        .heartbeat
        .clone()
        .map(wire::HeartbeatConfiguration::from)
        .unwrap_or_default();
    // Flotta's device worker reads `hardware_profile` on its first heartbeat without
    // checking for its absence, and Flotta's operator always sends one: so do we.
    let period = heartbeat
        .period_seconds
        .unwrap_or(DEFAULT_HEARTBEAT_PERIOD_SECONDS);
    let heartbeat = wire::HeartbeatConfiguration {
        period_seconds: Some(period),
        // Validation keeps a device's own values within bounds; a set's period may
        // still shorten what is safe, so the wait is held to it here.
        long_poll_seconds: Some(
            heartbeat
                .long_poll_seconds
                .map_or(longest_long_poll_seconds(period), |wait| {
                    wait.clamp(1, longest_long_poll_seconds(period))
                }),
        ),
        max_silence_seconds: heartbeat
            .max_silence_seconds
            .or(Some(DEFAULT_MAX_SILENCE_SECONDS.max(period))),
        hardware_profile: heartbeat
            .hardware_profile
            .or_else(|| Some(wire::HardwareProfileConfiguration::default())),
        ..heartbeat
    };
    let metrics = spec.metrics.as_ref().map(|m| wire::MetricsConfiguration {
        retention: m.retention.as_ref().map(|r| wire::MetricsRetention {
            max_mib: r.max_mib,
            max_hours: r.max_hours,
            extra: Default::default(),
        }),
        system: m
            .system
            .as_ref()
            .map(|c| component_metrics(c, refs, object, "spec.metrics.system", problems)),
        data_transfer: m
            .data_transfer
            .as_ref()
            .map(|c| component_metrics(c, refs, object, "spec.metrics.dataTransfer", problems)),
        receiver: m.receiver_configuration.as_ref().map(|r| {
            let ca_cert = r.ca_secret_name.as_ref().and_then(|name| {
                match refs
                    .secrets
                    .get(name.as_str())
                    .map(|s| secret_value(s, "ca.crt"))
                {
                    Some(Some(ca)) => Some(ca),
                    Some(None) => {
                        problems.push(dangling(
                            object.into(),
                            "spec.metrics.receiverConfiguration.caSecretName",
                            format!("secret '{name}' has no key 'ca.crt'"),
                        ));
                        None
                    }
                    None => {
                        problems.push(dangling(
                            object.into(),
                            "spec.metrics.receiverConfiguration.caSecretName",
                            format!("secret '{name}' does not exist"),
                        ));
                        None
                    }
                }
            });
            wire::MetricsReceiverConfiguration {
                url: r.url.clone(),
                timeout_seconds: r.timeout_seconds,
                request_num_samples: r.request_num_samples,
                ca_cert,
                extra: Default::default(),
            }
        }),
        extra: Default::default(),
    });
    let log_collection = spec.log_collection.as_ref().map(|targets| {
        targets
            .iter()
            .map(|(name, target)| {
                let syslog_config = target.syslog_config.as_ref().and_then(|reference| {
                    let field = format!("spec.logCollection.{name}.syslogConfig");
                    match refs.config_map(reference.name.as_str()) {
                        Some(config_map) => Some(wire::SyslogConfig {
                            address: config_map_value(config_map, "Address")
                                .or_else(|| config_map_value(config_map, "address"))
                                .map(str::to_owned),
                            protocol: config_map_value(config_map, "Protocol")
                                .or_else(|| config_map_value(config_map, "protocol"))
                                .map(str::to_owned),
                            ca_cert: config_map_value(config_map, "CA")
                                .or_else(|| config_map_value(config_map, "ca.crt"))
                                .map(str::to_owned),
                            extra: Default::default(),
                        }),
                        None => {
                            problems.push(dangling(
                                object.into(),
                                field,
                                format!("config map '{}' does not exist", reference.name),
                            ));
                            None
                        }
                    }
                });
                (
                    name.clone(),
                    wire::LogsCollectionInformation {
                        kind: target.kind.clone(),
                        buffer_size: target.buffer_size,
                        syslog_config,
                        extra: Default::default(),
                    },
                )
            })
            .collect()
    });
    let storage = spec
        .storage
        .as_ref()
        .map(|storage| wire::StorageConfiguration {
            s3: storage.s3.as_ref().map(|s3| s3_storage(s3, refs, problems)),
            extra: Default::default(),
        });
    wire::DeviceConfiguration {
        ansible_manager: None,
        heartbeat: Some(heartbeat),
        storage,
        metrics,
        os: spec.os_information.clone().map(wire::OsInformation::from),
        update_policy: spec.update_policy.clone().map(wire::UpdatePolicy::from),
        log_collection,
        mounts: spec
            .mounts
            .as_ref()
            .map(|mounts| mounts.iter().cloned().map(wire::MountInfo::from).collect()),
        files: spec
            .files
            .as_ref()
            .map(|files| files.iter().cloned().map(wire::FileInfo::from).collect()),
        extra: Default::default(),
    }
}

/// Resolves the S3 bucket from its config map (`BUCKET_HOST`, `BUCKET_PORT`,
/// `BUCKET_NAME`, `BUCKET_REGION`) and secret (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_CA_BUNDLE`), the ObjectBucketClaim convention Flotta
/// follows.
fn s3_storage(
    s3: &model::S3StorageConfiguration,
    refs: &References<'_>,
    problems: &mut Vec<RenderProblem>,
) -> wire::S3StorageConfiguration {
    let mut out = wire::S3StorageConfiguration::default();
    if let Some(name) = &s3.config_map_name {
        match refs.config_map(name.as_str()) {
            Some(config_map) => {
                let get = |key| config_map_value(config_map, key).map(str::to_owned);
                out.bucket_host = get("BUCKET_HOST");
                out.bucket_name = get("BUCKET_NAME");
                out.bucket_region = get("BUCKET_REGION");
                out.bucket_port =
                    config_map_value(config_map, "BUCKET_PORT").and_then(|p| p.trim().parse().ok());
            }
            None => problems.push(dangling(
                "EdgeDevice".into(),
                "spec.storage.s3.configMapName",
                format!("config map '{name}' does not exist"),
            )),
        }
    }
    if let Some(name) = &s3.secret_name {
        match refs.secret(name.as_str()) {
            Some(secret) => {
                out.aws_access_key_id = secret_value(secret, "AWS_ACCESS_KEY_ID");
                out.aws_secret_access_key = secret_value(secret, "AWS_SECRET_ACCESS_KEY");
                out.aws_ca_bundle = secret_value(secret, "AWS_CA_BUNDLE");
            }
            None => problems.push(dangling(
                "EdgeDevice".into(),
                "spec.storage.s3.secretName",
                format!("secret '{name}' does not exist"),
            )),
        }
    }
    out
}
