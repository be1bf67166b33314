//! A device set's `template.metadata` given to its member devices: the labels and
//! annotations it names, rendered with the device's own metadata
//! (`{{ .metadata.name }}`, ...), are set on the device resource itself.
//!
//! The keys the template set are recorded in the device's
//! [`TEMPLATE_KEYS_ANNOTATION`], so that a key the template drops is removed
//! again and a key the template never named is never touched. The
//! `flotta/member-of` label is never set from a template, and a template whose
//! labels would take the device out of the set applies nothing (it would
//! otherwise flip in and out of membership).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::render::{claiming_sets, is_member};
use super::template::render_template_map;
use crate::model::{EdgeDevice, EdgeDeviceSet, MEMBER_OF_LABEL};

/// Annotation on a device recording the label and annotation keys its set's
/// template gave it (JSON: `{"labels": [...], "annotations": [...]}`).
pub const TEMPLATE_KEYS_ANNOTATION: &str = "flotta-rs.io/template-keys";

/// A device's labels and annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceMetadata {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TemplateKeys {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    labels: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    annotations: BTreeSet<String>,
}

/// Sets `desired` in `current`, removing the keys of `previous` it no longer has.
fn merge(
    current: &BTreeMap<String, String>,
    previous: &BTreeSet<String>,
    desired: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = current.clone();
    for key in previous {
        if !desired.contains_key(key) {
            merged.remove(key);
        }
    }
    merged.extend(desired.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

/// The device's labels and annotations once the template of the set that applies
/// to it (see [`claiming_sets`]) is given; `None` when nothing changes, or when the
/// template cannot be rendered for this device (the render problem is reported by
/// the device's `SpecValid` condition) or would take it out of the set.
pub fn apply_template_metadata(
    device: &EdgeDevice,
    sets: &[EdgeDeviceSet],
) -> Option<DeviceMetadata> {
    let current = DeviceMetadata {
        labels: device.metadata.labels.clone().unwrap_or_default(),
        annotations: device.metadata.annotations.clone().unwrap_or_default(),
    };
    let previous: TemplateKeys = current
        .annotations
        .get(TEMPLATE_KEYS_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let (members, _) = claiming_sets(device, sets);
    let template_metadata = members
        .first()
        .and_then(|set| set.spec.template.as_ref())
        .and_then(|template| template.metadata.as_ref());
    let render = |map: Option<&BTreeMap<String, String>>, path: &str| {
        render_template_map(&map.cloned().unwrap_or_default(), &device.metadata, path).ok()
    };
    let mut labels = render(
        template_metadata.and_then(|m| m.labels.as_ref()),
        "spec.template.metadata.labels",
    )?;
    labels.remove(MEMBER_OF_LABEL);
    let mut annotations = render(
        template_metadata.and_then(|m| m.annotations.as_ref()),
        "spec.template.metadata.annotations",
    )?;
    annotations.remove(TEMPLATE_KEYS_ANNOTATION);
    let keys = TemplateKeys {
        labels: labels.keys().cloned().collect(),
        annotations: annotations.keys().cloned().collect(),
    };
    let mut updated = DeviceMetadata {
        labels: merge(&current.labels, &previous.labels, &labels),
        annotations: merge(&current.annotations, &previous.annotations, &annotations),
    };
    updated.annotations.remove(TEMPLATE_KEYS_ANNOTATION);
    if keys != TemplateKeys::default() {
        updated.annotations.insert(
            TEMPLATE_KEYS_ANNOTATION.to_owned(),
            serde_json::to_string(&keys).unwrap_or_default(),
        );
    }
    if updated == current {
        return None;
    }
    if let Some(set) = members.first() {
        let mut relabelled = device.clone();
        relabelled.metadata.labels = Some(updated.labels.clone());
        if !is_member(&relabelled, set).unwrap_or(false) {
            return None;
        }
    }
    Some(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(labels: serde_json::Value, annotations: serde_json::Value) -> EdgeDevice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDevice",
            "metadata": {"name": "cam-7", "namespace": "lab", "labels": labels,
                "annotations": annotations},
            "spec": {}
        }))
        .expect("device")
    }

    fn set(template_metadata: serde_json::Value) -> EdgeDeviceSet {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDeviceSet",
            "metadata": {"name": "cameras", "namespace": "lab"},
            "spec": {"selector": {"matchLabels": {"site": "lab"}},
                "template": {"metadata": template_metadata}}
        }))
        .expect("set")
    }

    #[test]
    fn template_labels_are_rendered_set_and_recorded() {
        let sets = [set(serde_json::json!({
            "labels": {"role": "camera", "unit": "{{ .metadata.name }}",
                "flotta/member-of": "elsewhere"},
            "annotations": {"owner": "vision-team"}}))];
        let device = device(
            serde_json::json!({"site": "lab", "rack": "r1"}),
            serde_json::json!({}),
        );
        let updated = apply_template_metadata(&device, &sets).expect("changed");
        assert_eq!(updated.labels["role"], "camera");
        assert_eq!(updated.labels["unit"], "cam-7");
        assert_eq!(updated.labels["rack"], "r1", "other labels stay");
        assert!(!updated.labels.contains_key(MEMBER_OF_LABEL));
        assert_eq!(updated.annotations["owner"], "vision-team");
        assert_eq!(
            updated.annotations[TEMPLATE_KEYS_ANNOTATION],
            r#"{"labels":["role","unit"],"annotations":["owner"]}"#
        );
        // Applied once, nothing more to do.
        let mut applied = device.clone();
        applied.metadata.labels = Some(updated.labels);
        applied.metadata.annotations = Some(updated.annotations);
        assert_eq!(apply_template_metadata(&applied, &sets), None);

        // The template drops `unit`: it goes; `rack`, never the template's, stays.
        let fewer = [set(serde_json::json!({"labels": {"role": "camera"}}))];
        let again = apply_template_metadata(&applied, &fewer).expect("changed");
        assert!(!again.labels.contains_key("unit"));
        assert!(!again.annotations.contains_key("owner"));
        assert_eq!(again.labels["rack"], "r1");
        assert_eq!(
            again.annotations[TEMPLATE_KEYS_ANNOTATION],
            r#"{"labels":["role"]}"#
        );
    }

    #[test]
    fn a_template_that_would_leave_the_set_or_fails_to_render_applies_nothing() {
        let leaving = [set(serde_json::json!({"labels": {"site": "elsewhere"}}))];
        let member = device(serde_json::json!({"site": "lab"}), serde_json::json!({}));
        assert_eq!(apply_template_metadata(&member, &leaving), None);
        let broken = [set(
            serde_json::json!({"labels": {"zone": "{{ .metadata.labels.zone }}"}}),
        )];
        assert_eq!(apply_template_metadata(&member, &broken), None);
        let outsider = device(serde_json::json!({"site": "home"}), serde_json::json!({}));
        let any = [set(serde_json::json!({"labels": {"role": "camera"}}))];
        assert_eq!(apply_template_metadata(&outsider, &any), None);
    }
}
