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
//!   containers' `env[].valueFrom.secretKeyRef` and `envFrom[].secretRef` and `volumes[].secret` (init
//!   containers too) go to the message's `secrets` (whole data, as JSON of base64
//!   values, as Flotta sends it); config maps named by `envFrom[].configMapRef`,
//!   `env[].valueFrom.configMapKeyRef` and `volumes[].configMap` go to the workload's
//!   `configmaps` as YAML, with their server-side metadata (uid, resourceVersion, ...)
//!   removed so it cannot change the version. No other secret or config map is sent.
//! - A reference to a missing object (not marked `optional`) is a problem, and the
//!   workload cannot be rendered. A server that rendered the workload before keeps
//!   sending that last good rendering ([`keep_last_good`]), so a missing reference
//!   never removes a running workload; the workload's `ReferencesResolved` condition
//!   ([`references_condition`]) names the missing objects.
//! - Every secret and config map a rendering looked up, found or not, is listed in
//!   its [`ObjectUses`]: a change to one of them (its creation included) is exactly
//!   what makes the rendering stale.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use crate::model::{self, Condition, EdgeDevice, EdgeDeviceSet, EdgeWorkload, ObjectMeta, Time};
use crate::selector::Selector;
use crate::wire;

use super::version::ConfigVersion;
use device::device_configuration;
use workload::render_workload;

mod device;
mod served;
mod sets;
mod workload;

pub use served::{ServedConfig, ServedSource};
use sets::{choose_device_set, effective_spec};
pub use sets::{claiming_sets, is_member, render_template_spec};

/// Heartbeat period a device gets when neither it nor its set sets one (Flotta's
/// default).
pub const DEFAULT_HEARTBEAT_PERIOD_SECONDS: i64 = 60;

/// The longest configuration long-poll a server keeps parked, seconds.
pub const MAX_LONG_POLL_SECONDS: i64 = 300;

/// How long a flotta-rs agent stays without a heartbeat while nothing changes,
/// when neither its device nor its set says (`maxSilenceSeconds`).
pub const DEFAULT_MAX_SILENCE_SECONDS: i64 = 900;

/// The longest long-poll that keeps a device with this heartbeat period from
/// being judged offline: the server stamps `lastSeen` when a poll arrives and
/// when it is answered, and a device is offline after
/// [`UNKNOWN_AFTER_PERIODS`](crate::reconcile::status::UNKNOWN_AFTER_PERIODS) silent
/// periods, so 2.5 periods leave half a period for the next poll to arrive
/// (capped at [`MAX_LONG_POLL_SECONDS`]). It is also the default wait.
pub fn longest_long_poll_seconds(period_seconds: i64) -> i64 {
    (period_seconds.max(1).saturating_mul(5) / 2).clamp(1, MAX_LONG_POLL_SECONDS)
}

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

    /// Whether the problem makes the configuration unfit to send. A missing
    /// reference does not: it is handled per workload, which keeps its last
    /// resolved revision or is left out ([`keep_last_good`]), and the workload's
    /// `ReferencesResolved` condition says so.
    pub fn is_error(self) -> bool {
        !matches!(self, Self::SeveralDeviceSets | Self::DanglingReference)
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

/// Name of the condition [`RenderedConfig::condition`] produces: whether the
/// device's inputs render into a configuration fit to send (Flight Control's name).
pub const CONFIG_RENDERED_CONDITION: &str = "SpecValid";

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
    /// Revision of that set the rendering used, once the set has a rollout record
    /// ([`super::SetRevision`]; its rollout may assign an earlier one).
    pub device_set_revision: Option<String>,
    /// The secrets and config maps the rendering looked up.
    pub uses: ObjectUses,
}

/// The secrets and config maps (by name, in the rendered object's namespace) a
/// rendering looked up, whether they existed or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectUses {
    /// Secret names.
    pub secrets: BTreeSet<String>,
    /// Config map names.
    pub config_maps: BTreeSet<String>,
}

impl ObjectUses {
    /// Adds everything `other` uses.
    pub fn extend(&mut self, other: &ObjectUses) {
        self.secrets.extend(other.secrets.iter().cloned());
        self.config_maps.extend(other.config_maps.iter().cloned());
    }

    /// Whether the secret (`secret` true) or config map named `name` is used.
    pub fn uses(&self, secret: bool, name: &str) -> bool {
        if secret {
            self.secrets.contains(name)
        } else {
            self.config_maps.contains(name)
        }
    }
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
            device_set_revision: None,
            uses: ObjectUses::default(),
        }
    }

    /// Whether a problem makes this configuration unfit to send.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.reason.is_error())
    }

    /// The revision of each workload in the message, by name: the content hash of
    /// its wire form ([`super::fingerprint`]), which agents report back.
    pub fn workload_revisions(&self) -> BTreeMap<String, String> {
        self.message
            .workloads
            .iter()
            .flatten()
            .filter_map(|w| Some((w.name.clone()?, super::fingerprint(w).to_string())))
            .collect()
    }

    /// The heartbeat period the message sets (Flotta's default when it sets none).
    pub fn heartbeat_period_seconds(&self) -> i64 {
        self.message
            .configuration
            .as_ref()
            .and_then(|c| c.heartbeat.as_ref())
            .and_then(|h| h.period_seconds)
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_HEARTBEAT_PERIOD_SECONDS)
    }

    /// The `SpecValid` condition for the device's status: `True` (`Valid`) without
    /// error problems, else `False` with the first error's reason and every error
    /// listed.
    pub fn condition(&self, now: &Time) -> Condition {
        let (status, reason, message) = match self.spec_error() {
            None => (
                "True",
                "Valid".to_owned(),
                format!("configuration version {}", self.version),
            ),
            Some((reason, message)) => ("False", reason.as_str().to_owned(), message),
        };
        Condition {
            type_: CONFIG_RENDERED_CONDITION.into(),
            status: status.into(),
            reason,
            message,
            last_transition_time: now.clone(),
            observed_generation: None,
        }
    }

    /// The first error problem's reason and every error problem, for people; `None`
    /// when the configuration is fit to send.
    pub fn spec_error(&self) -> Option<(ProblemReason, String)> {
        let errors: Vec<&RenderProblem> = self
            .problems
            .iter()
            .filter(|p| p.reason.is_error())
            .collect();
        let first = errors.first()?;
        Some((
            first.reason,
            errors
                .iter()
                .map(|p| format!("{} {}: {}", p.object, p.field, p.message))
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }

    /// The warning that several sets claim the device, if they do.
    pub fn owners_warning(&self) -> Option<&str> {
        self.problems
            .iter()
            .find(|p| p.reason == ProblemReason::SeveralDeviceSets)
            .map(|p| p.message.as_str())
    }
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
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
/// workloads among `workloads` that target it, each with the revision its rollout
/// assigns the device ([`workload_for_device`](super::workload_for_device)), then calls
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
    let name = device.metadata.name.as_deref().unwrap_or_default();
    for workload in workloads {
        match workload_targets(device, workload) {
            // The revision the workload's rollout assigns this device.
            Ok(true) => selected.push(super::revision::workload_for_device(workload, name)),
            Ok(false) => {}
            Err(problem) => problems.push(problem),
        }
    }
    let selected: Vec<&EdgeWorkload> = selected.iter().map(AsRef::as_ref).collect();
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
    /// The secrets and config maps it looked up.
    pub uses: ObjectUses,
    /// Whether `workload` is an earlier rendering kept because this one failed on a
    /// missing reference (see [`keep_last_good`]).
    pub held_back: bool,
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
        uses: refs.take_uses(),
        held_back: false,
    }
}

/// What a server sends for a workload whose new rendering is `next`, given the
/// rendering it sent before (`previous`): `next`, unless `next` failed only on
/// missing references (secrets, config maps or their keys) while `previous` had
/// rendered; then `previous`'s wire workload and secrets, with `next`'s problems and
/// uses, marked [`PreparedWorkload::held_back`]. So a missing reference never
/// removes a running workload, and once the reference appears the workload
/// converges on its new rendering.
pub fn keep_last_good(
    previous: Option<&PreparedWorkload>,
    next: PreparedWorkload,
) -> PreparedWorkload {
    let dangling_only = next.workload.is_none()
        && !next.problems.is_empty()
        && next
            .problems
            .iter()
            .all(|p| p.reason == ProblemReason::DanglingReference);
    match previous {
        Some(previous) if dangling_only && previous.workload.is_some() => PreparedWorkload {
            workload: previous.workload.clone(),
            secrets: previous.secrets.clone(),
            held_back: true,
            ..next
        },
        _ => next,
    }
}

/// Type of the condition [`references_condition`] produces.
pub const REFERENCES_RESOLVED_CONDITION: &str = "ReferencesResolved";

/// Status field holding the last workload spec whose references all resolved
/// (written with a `True` [`REFERENCES_RESOLVED_CONDITION`], kept while it is
/// `False`), so that a server starting while a reference is missing still has the
/// last good revision to send ([`prepare_with_last_resolved`]).
pub const LAST_RESOLVED_SPEC_FIELD: &str = "lastResolvedSpec";

/// Prepares `workload`; when that fails only on missing references and there is no
/// earlier rendering in memory, renders `last_resolved` (the spec recorded in
/// [`LAST_RESOLVED_SPEC_FIELD`]) instead and keeps it as the last good rendering, as
/// [`keep_last_good`] would have.
pub fn prepare_with_last_resolved(
    workload: &EdgeWorkload,
    last_resolved: Option<&model::EdgeWorkloadSpec>,
    secrets: &[Secret],
    config_maps: &[ConfigMap],
) -> PreparedWorkload {
    let next = prepare_workload(workload, secrets, config_maps);
    let Some(spec) = last_resolved.filter(|_| next.workload.is_none()) else {
        return next;
    };
    let mut earlier = workload.clone();
    earlier.spec = spec.clone();
    let previous = prepare_workload(&earlier, secrets, config_maps);
    keep_last_good(Some(&previous), next)
}

/// The workload's `ReferencesResolved` condition: `True` when every secret and
/// config map it references exists (with the keys it reads), else `False` with
/// reason `DanglingReference` and a message naming each missing object and the
/// field referencing it. The transition time of `previous` is kept while the
/// status does not change.
pub fn references_condition(
    workload: &EdgeWorkload,
    secrets: &[Secret],
    config_maps: &[ConfigMap],
    previous: Option<&Condition>,
    now: &Time,
) -> Condition {
    let prepared = prepare_workload(workload, secrets, config_maps);
    let missing: Vec<String> = prepared
        .problems
        .iter()
        .filter(|p| p.reason == ProblemReason::DanglingReference)
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect();
    let (status, reason, message) = if missing.is_empty() {
        (
            "True",
            "Resolved",
            "every referenced secret and config map exists".to_owned(),
        )
    } else {
        (
            "False",
            ProblemReason::DanglingReference.as_str(),
            format!(
                "{}; devices keep the last configuration they were sent",
                missing.join("; ")
            ),
        )
    };
    let last_transition_time = previous
        .filter(|p| p.status == status)
        .map(|p| p.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: REFERENCES_RESOLVED_CONDITION.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: workload.metadata.generation,
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
    // The revision of the set its rollout assigns this device.
    let (staged, set_revision) = match set {
        Some(set) => {
            let (staged, revision) = super::revision::for_device(set, name_of(&device.metadata));
            (Some(staged), revision)
        }
        None => (None, None),
    };
    let spec = effective_spec(device, staged.as_deref(), &mut problems);
    let mut configuration = device_configuration(&spec, refs, &mut problems);
    // A device labelled to run an EdgeConfig polls for its playbooks.
    configuration.ansible_manager =
        crate::ansible::manager_configuration(device.metadata.labels.as_ref());

    let mut wire_workloads = Vec::with_capacity(workloads.len());
    let mut wire_secrets: BTreeMap<String, wire::Secret> = BTreeMap::new();
    let mut ordered: Vec<&PreparedWorkload> = workloads.to_vec();
    ordered.sort_by(|a, b| a.name.cmp(&b.name));
    ordered.dedup_by(|a, b| a.name == b.name);
    let mut uses = refs.take_uses();
    for prepared in ordered {
        uses.extend(&prepared.uses);
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
    rendered.device_set_revision = set_revision;
    rendered.uses = uses;
    rendered
}

struct References<'a> {
    secrets: BTreeMap<&'a str, &'a Secret>,
    config_maps: BTreeMap<&'a str, &'a ConfigMap>,
    /// Every name looked up, found or not.
    uses: RefCell<ObjectUses>,
}

impl<'a> References<'a> {
    fn secret(&self, name: &str) -> Option<&'a Secret> {
        self.uses.borrow_mut().secrets.insert(name.to_owned());
        self.secrets.get(name).copied()
    }

    fn config_map(&self, name: &str) -> Option<&'a ConfigMap> {
        self.uses.borrow_mut().config_maps.insert(name.to_owned());
        self.config_maps.get(name).copied()
    }

    /// The names looked up so far; the record starts again empty.
    fn take_uses(&self) -> ObjectUses {
        self.uses.take()
    }

    fn in_namespace(namespace: &str, secrets: &'a [Secret], config_maps: &'a [ConfigMap]) -> Self {
        Self {
            uses: RefCell::new(ObjectUses::default()),
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
