//! Device sets: which sets claim a device, which one applies, and the device spec
//! its layers make (the device's own sections, replaced by the set's, then by the
//! set's template rendered for the device).

use crate::model::{self, EdgeDevice, EdgeDeviceSet, EdgeDeviceSpec, MEMBER_OF_LABEL, ObjectMeta};
use crate::selector::Selector;

use super::{ProblemReason, RenderProblem, name_of, namespace_of};
use crate::reconcile::template::render_template_value;

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

/// The sets that claim `device` (see [`is_member`]), the one that applies first:
/// the set its `flotta/member-of` label names, else the first by name. Invalid set
/// selectors are returned as problems.
pub fn claiming_sets<'a>(
    device: &EdgeDevice,
    device_sets: &'a [EdgeDeviceSet],
) -> (Vec<&'a EdgeDeviceSet>, Vec<RenderProblem>) {
    let mut problems = Vec::new();
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
    (members, problems)
}

pub(super) fn choose_device_set<'a>(
    device: &EdgeDevice,
    device_sets: &'a [EdgeDeviceSet],
    problems: &mut Vec<RenderProblem>,
) -> Option<&'a EdgeDeviceSet> {
    let (members, mut found) = claiming_sets(device, device_sets);
    problems.append(&mut found);
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
    update_policy: Option<model::UpdatePolicy>,
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
    if sections.update_policy.is_some() {
        spec.update_policy = sections.update_policy;
    }
    if sections.storage.is_some() {
        spec.storage = sections.storage;
    }
}

/// The device spec with the set's template and sections applied.
pub(super) fn effective_spec(
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
                    update_policy: rendered.update_policy,
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
            update_policy: own.update_policy,
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
