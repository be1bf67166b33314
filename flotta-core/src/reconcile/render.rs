//! Rendering: from a device, its sets, the workloads that target it and the secrets
//! and config maps they reference, to the device configuration message the device
//! downloads, with its content-hash version.
//!
//! Rules:
//! - Only objects in the device's namespace count (a missing namespace is `default`).
//! - A device belongs to a set when its `flotta/member-of` label names the set
//!   (Flotta) or the set's `selector` matches its labels. When several sets claim it,
//!   the one its label names wins, else the first by name; a
//!   [`ProblemReason::SeveralDeviceSets`] warning says so.
//! - The set's `template.spec`, rendered for the device (see [`super::template`]),
//!   then the set's own spec: each section they define (`heartbeat`, `osInformation`,
//!   `metrics`, `storage`, `logCollection`, `mounts`, `files`) replaces the device's
//!   own (Flotta's rule: no deep merge). A template that fails to render is not applied
//!   at all, and each failure is a problem.
//! - A workload targets the device when `spec.device` names it or its
//!   `deviceSelector` matches the device's labels; workloads being deleted are left out.
//! - A workload's image pull secret (`imageRegistries.secretRef`, key
//!   `.dockerconfigjson`) becomes its `imageRegistries.authFile`; secrets named by its
//!   containers' `env[].valueFrom.secretKeyRef` and `envFrom[].secretRef` (init
//!   containers too) go to the message's `secrets` (whole data, as JSON of base64
//!   values, as Flotta sends it); config maps named by `envFrom[].configMapRef`,
//!   `env[].valueFrom.configMapKeyRef` and `volumes[].configMap` go to the workload's
//!   `configmaps` as YAML, with their server-side metadata (uid, resourceVersion, ...)
//!   removed so it cannot change the version. No other secret or config map is sent.
//! - A reference to a missing object (not marked `optional`) is a problem, and the
//!   workload is left out of the message. A rendered config with error problems must
//!   not be sent: the device keeps its last good one (see [`RenderedConfig::has_errors`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};

use crate::model::{
    self, Condition, EdgeDevice, EdgeDeviceSet, EdgeDeviceSpec, EdgeWorkload, MEMBER_OF_LABEL,
    ObjectMeta, Time,
};
use crate::selector::Selector;
use crate::wire;

use super::template::render_template_value;
use super::version::ConfigVersion;

/// Heartbeat period a device gets when neither it nor its set sets one (Flotta's
/// default).
pub const DEFAULT_HEARTBEAT_PERIOD_SECONDS: i64 = 60;

/// Key of an image pull secret holding the registry auth file.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";

/// Why part of a configuration could not be rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProblemReason {
    /// A set template parameter did not render (e.g. a missing label).
    TemplateFailed,
    /// A referenced secret or config map (or a key in it) does not exist.
    DanglingReference,
    /// A label selector is not valid.
    InvalidSelector,
    /// A workload's pod could not be encoded.
    InvalidWorkload,
    /// Several sets claim the device; one was chosen (a warning).
    SeveralDeviceSets,
    /// The message could not be encoded for hashing.
    EncodingFailed,
}

impl ProblemReason {
    /// The reason as a one-word `CamelCase` string, for conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TemplateFailed => "TemplateFailed",
            Self::DanglingReference => "DanglingReference",
            Self::InvalidSelector => "InvalidSelector",
            Self::InvalidWorkload => "InvalidWorkload",
            Self::SeveralDeviceSets => "SeveralDeviceSets",
            Self::EncodingFailed => "EncodingFailed",
        }
    }

    /// Whether the problem makes the configuration unfit to send.
    pub fn is_error(self) -> bool {
        !matches!(self, Self::SeveralDeviceSets)
    }
}

/// One problem met while rendering a device's configuration.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RenderProblem {
    /// What kind of problem.
    pub reason: ProblemReason,
    /// The object at fault, as `Kind/name`.
    pub object: String,
    /// Path of the offending field in that object.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

/// Name of the condition [`RenderedConfig::condition`] produces.
pub const CONFIG_RENDERED_CONDITION: &str = "ConfigRendered";

/// A device's rendered configuration: the wire message, its version, and what went
/// wrong on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedConfig {
    /// The message, `version` filled in.
    pub message: wire::DeviceConfigurationMessage,
    /// Content hash of the message.
    pub version: ConfigVersion,
    /// Problems, in the order met.
    pub problems: Vec<RenderProblem>,
    /// Name of the set whose configuration applied, if any.
    pub device_set: Option<String>,
}

impl RenderedConfig {
    /// Wraps a configuration message (e.g. one an agent downloaded): computes its
    /// version and stamps it into the message.
    pub fn from_message(mut message: wire::DeviceConfigurationMessage) -> Self {
        let mut problems = Vec::new();
        let version = match ConfigVersion::of(&message) {
            Ok(version) => version,
            Err(error) => {
                problems.push(RenderProblem {
                    reason: ProblemReason::EncodingFailed,
                    object: "DeviceConfigurationMessage".into(),
                    field: String::new(),
                    message: error.to_string(),
                });
                ConfigVersion::default()
            }
        };
        message.version = Some(version.to_string());
        Self {
            message,
            version,
            problems,
            device_set: None,
        }
    }

    /// Whether a problem makes this configuration unfit to send.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.reason.is_error())
    }

    /// The `ConfigRendered` condition for the device's status: `True` without error
    /// problems, else `False` with the first error's reason and every error listed.
    pub fn condition(&self, now: &Time) -> Condition {
        let errors: Vec<&RenderProblem> = self
            .problems
            .iter()
            .filter(|p| p.reason.is_error())
            .collect();
        match errors.first() {
            None => Condition {
                type_: CONFIG_RENDERED_CONDITION.into(),
                status: "True".into(),
                reason: "Rendered".into(),
                message: format!("configuration version {}", self.version),
                last_transition_time: now.clone(),
                observed_generation: None,
            },
            Some(first) => Condition {
                type_: CONFIG_RENDERED_CONDITION.into(),
                status: "False".into(),
                reason: first.reason.as_str().into(),
                message: errors
                    .iter()
                    .map(|p| format!("{} {}: {}", p.object, p.field, p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                last_transition_time: now.clone(),
                observed_generation: None,
            },
        }
    }
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Whether `set` claims `device`: its `flotta/member-of` label names the set or the
/// set's selector matches. Same namespace only.
pub fn is_member(device: &EdgeDevice, set: &EdgeDeviceSet) -> Result<bool, RenderProblem> {
    if namespace_of(&device.metadata) != namespace_of(&set.metadata) {
        return Ok(false);
    }
    let labels = device.metadata.labels.as_ref();
    let set_name = name_of(&set.metadata);
    if labels
        .and_then(|l| l.get(MEMBER_OF_LABEL))
        .is_some_and(|v| v == set_name)
    {
        return Ok(true);
    }
    match &set.spec.selector {
        None => Ok(false),
        Some(selector) => {
            let selector = Selector::try_from(selector).map_err(|e| RenderProblem {
                reason: ProblemReason::InvalidSelector,
                object: format!("EdgeDeviceSet/{set_name}"),
                field: "spec.selector".into(),
                message: e.to_string(),
            })?;
            Ok(selector.matches(&device.metadata))
        }
    }
}

/// Whether `workload` targets `device` by name or selector (same namespace, not
/// being deleted).
pub fn workload_targets(
    device: &EdgeDevice,
    workload: &EdgeWorkload,
) -> Result<bool, RenderProblem> {
    if workload.metadata.deletion_timestamp.is_some()
        || namespace_of(&device.metadata) != namespace_of(&workload.metadata)
    {
        return Ok(false);
    }
    if workload
        .spec
        .device
        .as_deref()
        .is_some_and(|name| name == name_of(&device.metadata))
    {
        return Ok(true);
    }
    match &workload.spec.device_selector {
        None => Ok(false),
        Some(selector) => {
            let selector = Selector::try_from(selector).map_err(|e| RenderProblem {
                reason: ProblemReason::InvalidSelector,
                object: format!("EdgeWorkload/{}", name_of(&workload.metadata)),
                field: "spec.deviceSelector".into(),
                message: e.to_string(),
            })?;
            Ok(selector.matches(&device.metadata))
        }
    }
}

/// Renders the configuration of `device`: picks its set among `device_sets` and the
/// workloads among `workloads` that target it, then calls
/// [`render_device_config_for_workloads`]. See the module documentation for the rules.
pub fn render_device_config(
    device: &EdgeDevice,
    device_sets: &[EdgeDeviceSet],
    workloads: &[EdgeWorkload],
    secrets: &[Secret],
    config_maps: &[ConfigMap],
) -> RenderedConfig {
    let mut problems = Vec::new();
    let mut selected = Vec::new();
    for workload in workloads {
        match workload_targets(device, workload) {
            Ok(true) => selected.push(workload),
            Ok(false) => {}
            Err(problem) => problems.push(problem),
        }
    }
    let mut rendered =
        render_device_config_for_workloads(device, device_sets, &selected, secrets, config_maps);
    problems.append(&mut rendered.problems);
    rendered.problems = problems;
    rendered
}

/// Renders the configuration of `device` with workloads already selected (e.g. by
/// the server's [`DeviceIndex`](crate::selector::DeviceIndex)); `workloads` are taken
/// as they are, without checking their targets. Rollouts pass here the workload
/// version each device should run.
pub fn render_device_config_for_workloads(
    device: &EdgeDevice,
    device_sets: &[EdgeDeviceSet],
    workloads: &[&EdgeWorkload],
    secrets: &[Secret],
    config_maps: &[ConfigMap],
) -> RenderedConfig {
    let refs = References::in_namespace(namespace_of(&device.metadata), secrets, config_maps);
    let prepared: Vec<PreparedWorkload> =
        workloads.iter().map(|w| prepare_with(w, &refs)).collect();
    let prepared: Vec<&PreparedWorkload> = prepared.iter().collect();
    render_with(device, device_sets, &prepared, &refs)
}

/// A workload rendered once, to be shared by every device it targets: its wire form
/// does not depend on the device. Fleet-scale servers prepare each workload when it
/// (or a secret or config map it references) changes, and render devices with
/// [`render_device_config_prepared`].
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedWorkload {
    /// Workload name.
    pub name: String,
    /// The wire workload; `None` when a problem keeps it off devices.
    pub workload: Option<wire::Workload>,
    /// Secrets the workload's containers read.
    pub secrets: Vec<wire::Secret>,
    /// Problems met while rendering it.
    pub problems: Vec<RenderProblem>,
}

impl PreparedWorkload {
    /// Version of this workload's rendered form (a content hash), the version a
    /// rollout hands out with [`decide_rollout`](super::decide_rollout); `None` when the
    /// workload could not be rendered.
    pub fn version(&self) -> Option<ConfigVersion> {
        self.workload
            .as_ref()
            .and_then(|w| ConfigVersion::of(w).ok())
    }
}

/// Renders a workload once for all its devices (see [`PreparedWorkload`]).
pub fn prepare_workload(
    workload: &EdgeWorkload,
    secrets: &[Secret],
    config_maps: &[ConfigMap],
) -> PreparedWorkload {
    let refs = References::in_namespace(namespace_of(&workload.metadata), secrets, config_maps);
    prepare_with(workload, &refs)
}

fn prepare_with(workload: &EdgeWorkload, refs: &References<'_>) -> PreparedWorkload {
    let mut problems = Vec::new();
    let rendered = render_workload(workload, refs, &mut problems);
    let (workload_out, secrets) = match rendered {
        Some((w, s)) => (Some(w), s),
        None => (None, Vec::new()),
    };
    PreparedWorkload {
        name: name_of(&workload.metadata).to_owned(),
        workload: workload_out,
        secrets,
        problems,
    }
}

/// Renders the configuration of `device` from prepared workloads (see
/// [`PreparedWorkload`]); `secrets` and `config_maps` serve the device-level sections
/// (storage, metrics, log collection).
pub fn render_device_config_prepared(
    device: &EdgeDevice,
    device_sets: &[EdgeDeviceSet],
    workloads: &[&PreparedWorkload],
    secrets: &[Secret],
    config_maps: &[ConfigMap],
) -> RenderedConfig {
    let refs = References::in_namespace(namespace_of(&device.metadata), secrets, config_maps);
    render_with(device, device_sets, workloads, &refs)
}

fn render_with(
    device: &EdgeDevice,
    device_sets: &[EdgeDeviceSet],
    workloads: &[&PreparedWorkload],
    refs: &References<'_>,
) -> RenderedConfig {
    let mut problems = Vec::new();
    let set = choose_device_set(device, device_sets, &mut problems);
    let spec = effective_spec(device, set, &mut problems);
    let configuration = device_configuration(&spec, refs, &mut problems);

    let mut wire_workloads = Vec::with_capacity(workloads.len());
    let mut wire_secrets: BTreeMap<String, wire::Secret> = BTreeMap::new();
    let mut ordered: Vec<&PreparedWorkload> = workloads.to_vec();
    ordered.sort_by(|a, b| a.name.cmp(&b.name));
    ordered.dedup_by(|a, b| a.name == b.name);
    for prepared in ordered {
        problems.extend(prepared.problems.iter().cloned());
        if let Some(workload) = &prepared.workload {
            wire_workloads.push(workload.clone());
            for secret in &prepared.secrets {
                wire_secrets
                    .entry(secret.name.clone().unwrap_or_default())
                    .or_insert_with(|| secret.clone());
            }
        }
    }

    let message = wire::DeviceConfigurationMessage {
        device_id: Some(name_of(&device.metadata).to_owned()),
        version: None,
        configuration: Some(configuration),
        workloads: Some(wire_workloads),
        workloads_monitoring_interval: None,
        secrets: Some(wire_secrets.into_values().collect()),
        extra: Default::default(),
    };
    let mut rendered = RenderedConfig::from_message(message);
    problems.append(&mut rendered.problems);
    rendered.problems = problems;
    rendered.device_set = set.map(|s| name_of(&s.metadata).to_owned());
    rendered
}

struct References<'a> {
    secrets: BTreeMap<&'a str, &'a Secret>,
    config_maps: BTreeMap<&'a str, &'a ConfigMap>,
}

impl<'a> References<'a> {
    fn in_namespace(namespace: &str, secrets: &'a [Secret], config_maps: &'a [ConfigMap]) -> Self {
        Self {
            secrets: secrets
                .iter()
                .filter(|s| namespace_of(&s.metadata) == namespace)
                .map(|s| (name_of(&s.metadata), s))
                .collect(),
            config_maps: config_maps
                .iter()
                .filter(|c| namespace_of(&c.metadata) == namespace)
                .map(|c| (name_of(&c.metadata), c))
                .collect(),
        }
    }
}

fn choose_device_set<'a>(
    device: &EdgeDevice,
    device_sets: &'a [EdgeDeviceSet],
    problems: &mut Vec<RenderProblem>,
) -> Option<&'a EdgeDeviceSet> {
    let mut members: Vec<&EdgeDeviceSet> = Vec::new();
    for set in device_sets {
        match is_member(device, set) {
            Ok(true) => members.push(set),
            Ok(false) => {}
            Err(problem) => problems.push(problem),
        }
    }
    let labelled = device
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MEMBER_OF_LABEL));
    members.sort_by_key(|set| {
        let name = name_of(&set.metadata);
        (labelled.is_none_or(|l| l != name), name)
    });
    members.dedup_by(|a, b| name_of(&a.metadata) == name_of(&b.metadata));
    let chosen = members.first().copied();
    if let (Some(chosen), true) = (chosen, members.len() > 1) {
        problems.push(RenderProblem {
            reason: ProblemReason::SeveralDeviceSets,
            object: format!("EdgeDevice/{}", name_of(&device.metadata)),
            field: "metadata.labels".into(),
            message: format!(
                "sets {} all claim the device; {} applies",
                members
                    .iter()
                    .map(|s| name_of(&s.metadata))
                    .collect::<Vec<_>>()
                    .join(", "),
                name_of(&chosen.metadata)
            ),
        });
    }
    chosen
}

/// Sections of a device spec a set may replace.
struct Sections {
    files: Option<Vec<model::ConfigFile>>,
    heartbeat: Option<model::HeartbeatConfiguration>,
    log_collection: Option<model::LogCollection>,
    metrics: Option<model::MetricsConfiguration>,
    mounts: Option<Vec<model::Mount>>,
    os_information: Option<model::OsInformation>,
    storage: Option<model::StorageConfiguration>,
}

fn overlay(spec: &mut EdgeDeviceSpec, sections: Sections) {
    if sections.files.is_some() {
        spec.files = sections.files;
    }
    if sections.heartbeat.is_some() {
        spec.heartbeat = sections.heartbeat;
    }
    if sections.log_collection.is_some() {
        spec.log_collection = sections.log_collection;
    }
    if sections.metrics.is_some() {
        spec.metrics = sections.metrics;
    }
    if sections.mounts.is_some() {
        spec.mounts = sections.mounts;
    }
    if sections.os_information.is_some() {
        spec.os_information = sections.os_information;
    }
    if sections.storage.is_some() {
        spec.storage = sections.storage;
    }
}

/// The device spec with the set's template and sections applied.
fn effective_spec(
    device: &EdgeDevice,
    set: Option<&EdgeDeviceSet>,
    problems: &mut Vec<RenderProblem>,
) -> EdgeDeviceSpec {
    let mut spec = device.spec.clone();
    let Some(set) = set else {
        return spec;
    };
    let set_name = name_of(&set.metadata);
    if let Some(template) = set.spec.template.as_ref().and_then(|t| t.spec.as_ref()) {
        match render_template_spec(template, &device.metadata) {
            Ok(rendered) => overlay(
                &mut spec,
                Sections {
                    files: rendered.files,
                    heartbeat: rendered.heartbeat,
                    log_collection: rendered.log_collection,
                    metrics: rendered.metrics,
                    mounts: rendered.mounts,
                    os_information: rendered.os_information,
                    storage: rendered.storage,
                },
            ),
            Err(errors) => {
                problems.extend(errors.into_iter().map(|(field, message)| RenderProblem {
                    reason: ProblemReason::TemplateFailed,
                    object: format!("EdgeDeviceSet/{set_name}"),
                    field,
                    message,
                }))
            }
        }
    }
    let own = set.spec.clone();
    overlay(
        &mut spec,
        Sections {
            files: own.files,
            heartbeat: own.heartbeat,
            log_collection: own.log_collection,
            metrics: own.metrics,
            mounts: own.mounts,
            os_information: own.os_information,
            storage: own.storage,
        },
    );
    spec
}

/// Renders a template spec for a device; errors as (field path, message).
pub fn render_template_spec(
    template: &EdgeDeviceSpec,
    device: &ObjectMeta,
) -> Result<EdgeDeviceSpec, Vec<(String, String)>> {
    let mut value = serde_json::to_value(template)
        .map_err(|e| vec![("spec.template.spec".to_owned(), e.to_string())])?;
    let errors = render_template_value(&mut value, device, "spec.template.spec");
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| (e.path, e.source.to_string()))
            .collect());
    }
    serde_json::from_value(value)
        .map_err(|e| vec![("spec.template.spec".to_owned(), e.to_string())])
}

fn dangling(object: String, field: impl Into<String>, message: String) -> RenderProblem {
    RenderProblem {
        reason: ProblemReason::DanglingReference,
        object,
        field: field.into(),
        message,
    }
}

fn bytes_to_string(bytes: &ByteString) -> String {
    String::from_utf8_lossy(&bytes.0).into_owned()
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(bytes_to_string)
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
}

fn config_map_value<'a>(config_map: &'a ConfigMap, key: &str) -> Option<&'a str> {
    config_map
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(String::as_str)
}

/// Reads a metric allow list config map (key `metrics_list.yaml`, YAML `names: [...]`,
/// as Flotta).
fn allow_list(
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
    let Some(config_map) = refs.config_maps.get(name.as_str()) else {
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

fn device_configuration(
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
    let heartbeat = wire::HeartbeatConfiguration {
        period_seconds: heartbeat
            .period_seconds
            .or(Some(DEFAULT_HEARTBEAT_PERIOD_SECONDS)),
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
                    match refs.config_maps.get(reference.name.as_str()) {
                        Some(config_map) => Some(wire::SyslogConfig {
                            address: config_map_value(config_map, "Address")
                                .or_else(|| config_map_value(config_map, "address"))
                                .map(str::to_owned),
                            protocol: config_map_value(config_map, "Protocol")
                                .or_else(|| config_map_value(config_map, "protocol"))
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
        match refs.config_maps.get(name.as_str()) {
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
        match refs.secrets.get(name.as_str()) {
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
fn render_workload(
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
            match refs.secrets.get(reference.name.as_str()) {
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
        match refs.secrets.get(reference.name.as_str()) {
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
        match refs.config_maps.get(reference.name.as_str()) {
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
        annotations: workload.metadata.annotations.clone(),
        extra: Default::default(),
    };
    Some((rendered, used_secrets.into_values().collect()))
}
