//! One workload of the configuration message: its pod, and the secrets and config
//! maps its pod spec references (see the rules in the parent module).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};

use crate::model::{self, EdgeWorkload, ObjectMeta};
use crate::wire;

use super::{
    DOCKER_CONFIG_JSON_KEY, ProblemReason, References, RenderProblem, dangling, device::allow_list,
    name_of, secret_value,
};

/// A reference from a pod to a secret or config map, with whether it may be absent.
struct PodReference {
    name: String,
    key: Option<String>,
    optional: bool,
    field: String,
}

/// Secrets and config maps a pod spec references (see the module documentation).
fn pod_references(pod: &PodSpec) -> (Vec<PodReference>, Vec<PodReference>) {
    let mut secrets = Vec::new();
    let mut config_maps = Vec::new();
    let no_containers = Vec::new();
    let groups = [
        ("containers", &pod.containers),
        (
            "initContainers",
            pod.init_containers.as_ref().unwrap_or(&no_containers),
        ),
    ];
    for (group, containers) in groups {
        for (c, container) in containers.iter().enumerate() {
            for (e, env_from) in container.env_from.iter().flatten().enumerate() {
                let field = format!("spec.pod.spec.{group}[{c}].envFrom[{e}]");
                if let Some(r) = &env_from.secret_ref {
                    secrets.push(PodReference {
                        name: r.name.clone(),
                        key: None,
                        optional: r.optional.unwrap_or(false),
                        field: format!("{field}.secretRef"),
                    });
                }
                if let Some(r) = &env_from.config_map_ref {
                    config_maps.push(PodReference {
                        name: r.name.clone(),
                        key: None,
                        optional: r.optional.unwrap_or(false),
                        field: format!("{field}.configMapRef"),
                    });
                }
            }
            for (e, env) in container.env.iter().flatten().enumerate() {
                let field = format!("spec.pod.spec.{group}[{c}].env[{e}].valueFrom");
                let Some(value_from) = &env.value_from else {
                    continue;
                };
                if let Some(r) = &value_from.secret_key_ref {
                    secrets.push(PodReference {
                        name: r.name.clone(),
                        key: Some(r.key.clone()),
                        optional: r.optional.unwrap_or(false),
                        field: format!("{field}.secretKeyRef"),
                    });
                }
                if let Some(r) = &value_from.config_map_key_ref {
                    config_maps.push(PodReference {
                        name: r.name.clone(),
                        key: Some(r.key.clone()),
                        optional: r.optional.unwrap_or(false),
                        field: format!("{field}.configMapKeyRef"),
                    });
                }
            }
        }
    }
    for (v, volume) in pod.volumes.iter().flatten().enumerate() {
        if let Some(source) = &volume.secret
            && let Some(name) = &source.secret_name
        {
            secrets.push(PodReference {
                name: name.clone(),
                key: None,
                optional: source.optional.unwrap_or(false),
                field: format!("spec.pod.spec.volumes[{v}].secret"),
            });
        }
        if let Some(source) = &volume.config_map {
            config_maps.push(PodReference {
                name: source.name.clone(),
                key: None,
                optional: source.optional.unwrap_or(false),
                field: format!("spec.pod.spec.volumes[{v}].configMap"),
            });
        }
    }
    (secrets, config_maps)
}

/// A config map as sent to the device: only what the workload sees, so that
/// server-side bookkeeping (uid, resourceVersion, managedFields) never changes the
/// configuration version.
fn config_map_for_device(config_map: &ConfigMap) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: config_map.metadata.name.clone(),
            namespace: config_map.metadata.namespace.clone(),
            labels: config_map.metadata.labels.clone(),
            annotations: config_map.metadata.annotations.clone(),
            ..Default::default()
        },
        data: config_map.data.clone(),
        binary_data: config_map.binary_data.clone(),
        immutable: config_map.immutable,
    }
}

/// The wire secret: name and the data section as JSON of base64 values (string data
/// merged in, encoded the same way).
fn secret_for_device(secret: &Secret) -> Result<wire::Secret, serde_json::Error> {
    let mut data: BTreeMap<String, ByteString> = secret.data.clone().unwrap_or_default();
    for (key, value) in secret.string_data.iter().flatten() {
        data.insert(key.clone(), ByteString(value.clone().into_bytes()));
    }
    Ok(wire::Secret {
        name: secret.metadata.name.clone(),
        data: Some(serde_json::to_string(&data)?),
        extra: Default::default(),
    })
}

fn secret_has_key(secret: &Secret, key: &str) -> bool {
    secret.data.as_ref().is_some_and(|d| d.contains_key(key))
        || secret
            .string_data
            .as_ref()
            .is_some_and(|d| d.contains_key(key))
}

fn config_map_has_key(config_map: &ConfigMap, key: &str) -> bool {
    config_map
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key(key))
        || config_map
            .binary_data
            .as_ref()
            .is_some_and(|d| d.contains_key(key))
}

/// Renders one workload, with the secrets it needs; `None` (and problems) when a
/// reference dangles or the pod cannot be encoded.
pub(super) fn render_workload(
    workload: &EdgeWorkload,
    refs: &References<'_>,
    problems: &mut Vec<RenderProblem>,
) -> Option<(wire::Workload, Vec<wire::Secret>)> {
    let name = name_of(&workload.metadata);
    let object = format!("EdgeWorkload/{name}");
    let before = problems.len();
    let spec = &workload.spec;

    let specification = match serde_yaml_ng::to_string(&spec.pod.spec) {
        Ok(text) => text,
        Err(e) => {
            problems.push(RenderProblem {
                reason: ProblemReason::InvalidWorkload,
                object: object.clone(),
                field: "spec.pod.spec".into(),
                message: e.to_string(),
            });
            String::new()
        }
    };

    let image_registries = spec
        .image_registries
        .as_ref()
        .and_then(|r| r.secret_ref.as_ref())
        .and_then(|reference| {
            let field = "spec.imageRegistries.secretRef";
            match refs.secret(reference.name.as_str()) {
                None => {
                    problems.push(dangling(
                        object.clone(),
                        field,
                        format!("secret '{}' does not exist", reference.name),
                    ));
                    None
                }
                Some(secret) => match secret_value(secret, DOCKER_CONFIG_JSON_KEY) {
                    None => {
                        problems.push(dangling(
                            object.clone(),
                            field,
                            format!(
                                "secret '{}' has no key '{DOCKER_CONFIG_JSON_KEY}'",
                                reference.name
                            ),
                        ));
                        None
                    }
                    Some(auth_file) => Some(wire::ImageRegistries {
                        auth_file: Some(auth_file),
                        extra: Default::default(),
                    }),
                },
            }
        });

    let (secret_refs, config_map_refs) = pod_references(&spec.pod.spec);
    let mut used_secrets: BTreeMap<String, wire::Secret> = BTreeMap::new();
    for reference in secret_refs {
        match refs.secret(reference.name.as_str()) {
            None if reference.optional => {}
            None => problems.push(dangling(
                object.clone(),
                reference.field,
                format!("secret '{}' does not exist", reference.name),
            )),
            Some(secret) => {
                if let Some(key) = &reference.key
                    && !secret_has_key(secret, key)
                    && !reference.optional
                {
                    problems.push(dangling(
                        object.clone(),
                        reference.field,
                        format!("secret '{}' has no key '{key}'", reference.name),
                    ));
                    continue;
                }
                match secret_for_device(secret) {
                    Ok(wire_secret) => {
                        used_secrets.insert(reference.name, wire_secret);
                    }
                    Err(e) => problems.push(RenderProblem {
                        reason: ProblemReason::EncodingFailed,
                        object: format!("Secret/{}", reference.name),
                        field: "data".into(),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
    let mut configmaps: BTreeMap<String, String> = BTreeMap::new();
    for reference in config_map_refs {
        match refs.config_map(reference.name.as_str()) {
            None if reference.optional => {}
            None => problems.push(dangling(
                object.clone(),
                reference.field,
                format!("config map '{}' does not exist", reference.name),
            )),
            Some(config_map) => {
                if let Some(key) = &reference.key
                    && !config_map_has_key(config_map, key)
                    && !reference.optional
                {
                    problems.push(dangling(
                        object.clone(),
                        reference.field,
                        format!("config map '{}' has no key '{key}'", reference.name),
                    ));
                    continue;
                }
                match serde_yaml_ng::to_string(&config_map_for_device(config_map)) {
                    Ok(text) => {
                        configmaps.insert(reference.name, text);
                    }
                    Err(e) => problems.push(RenderProblem {
                        reason: ProblemReason::EncodingFailed,
                        object: format!("ConfigMap/{}", reference.name),
                        field: String::new(),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }

    let metrics = spec.metrics.as_ref().map(|m| wire::Metrics {
        path: m.path.clone(),
        port: m.port,
        allow_list: allow_list(
            m.allow_list.as_ref(),
            refs,
            &object,
            "spec.metrics.allowList",
            problems,
        ),
        interval: m.interval,
        containers: m.containers.as_ref().map(|containers| {
            containers
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        wire::ContainerMetrics {
                            disabled: c.disabled,
                            path: c.path.clone(),
                            port: c.port,
                            extra: Default::default(),
                        },
                    )
                })
                .collect()
        }),
        extra: Default::default(),
    });
    let data = spec.data.as_ref().map(|d| {
        let paths = |paths: &Option<Vec<model::DataPath>>| {
            paths.as_ref().map(|paths| {
                paths
                    .iter()
                    .map(|p| wire::DataPath {
                        source: Some(p.source.clone()),
                        target: Some(p.target.clone()),
                        extra: Default::default(),
                    })
                    .collect()
            })
        };
        wire::DataConfiguration {
            ingress: paths(&d.ingress),
            egress: paths(&d.egress),
            extra: Default::default(),
        }
    });

    if problems.len() > before {
        return None;
    }
    let configmaps: BTreeSet<String> = configmaps.into_values().collect();
    let rendered = wire::Workload {
        name: Some(name.to_owned()),
        namespace: workload.metadata.namespace.clone(),
        labels: workload.metadata.labels.clone(),
        specification: Some(specification),
        data,
        image_registries,
        metrics,
        configmaps: (!configmaps.is_empty()).then(|| configmaps.into_iter().collect()),
        log_collection: spec.log_collection.clone(),
        annotations: device_annotations(workload.metadata.annotations.as_ref()),
        extra: Default::default(),
    };
    Some((rendered, used_secrets.into_values().collect()))
}

/// The workload's annotations devices are sent: all but the rollout controls
/// (`rollout.flotta.io/...`), which steer the server, not the device, and must not
/// make a new revision; none when nothing is left (an operator's pause then resume
/// leaves an empty map, which must not make a new revision either).
fn device_annotations(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Option<std::collections::BTreeMap<String, String>> {
    use crate::reconcile::revision::ROLLOUT_ANNOTATION_PREFIX;
    let kept: std::collections::BTreeMap<String, String> = annotations?
        .iter()
        .filter(|(key, _)| !key.starts_with(ROLLOUT_ANNOTATION_PREFIX))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}
