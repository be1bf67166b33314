//! Field-selector whitelists of the flotta resources.

use time::OffsetDateTime;

use super::field::{FieldKind, FieldSpec, FieldValue, Fields, metadata_field_value};
use crate::model::{EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeWorkload, Time};

const fn string(path: &'static str) -> FieldSpec {
    FieldSpec::new(path, FieldKind::String)
}

const fn number(path: &'static str) -> FieldSpec {
    FieldSpec::new(path, FieldKind::Number)
}

const fn timestamp(path: &'static str) -> FieldSpec {
    FieldSpec::new(path, FieldKind::Timestamp)
}

const fn boolean(path: &'static str) -> FieldSpec {
    FieldSpec::new(path, FieldKind::Boolean)
}

/// The `metadata.*` entries every resource list starts with; keep in step with
/// [`super::METADATA_FIELDS`].
macro_rules! with_metadata {
    ($($field:expr),* $(,)?) => {
        &[
            string("metadata.name"),
            string("metadata.namespace"),
            timestamp("metadata.creationTimestamp"),
            number("metadata.generation"),
            $($field),*
        ]
    };
}

fn text(value: Option<&str>) -> Option<FieldValue<'_>> {
    value.map(|v| FieldValue::String(v.into()))
}

fn instant(value: Option<&Time>) -> Option<FieldValue<'static>> {
    value
        .and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.0.as_nanosecond()).ok())
        .map(FieldValue::Timestamp)
}

fn integer(value: Option<impl Into<i64>>) -> Option<FieldValue<'static>> {
    value.map(|v| FieldValue::Number(v.into()))
}

impl Fields for EdgeDevice {
    const FIELDS: &'static [FieldSpec] = with_metadata![
        string("status.phase"),
        timestamp("status.lastSeen"),
        string("status.lastSyncedResourceVersion"),
        string("status.upgradeInformation.currentCommitID"),
        string("status.upgradeInformation.lastUpgradeStatus"),
        string("spec.osInformation.commitID"),
        string("spec.osInformation.image"),
        boolean("spec.osInformation.automaticallyUpgrade"),
        timestamp("spec.requestTime"),
    ];

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        let status = self.status.as_ref();
        let upgrade = status.and_then(|s| s.upgrade_information.as_ref());
        let os = self.spec.os_information.as_ref();
        match path {
            "status.phase" => text(status.and_then(|s| s.phase.as_deref())),
            "status.lastSeen" => instant(status.and_then(|s| s.last_seen.as_ref())),
            "status.lastSyncedResourceVersion" => {
                text(status.and_then(|s| s.last_synced_resource_version.as_deref()))
            }
            "status.upgradeInformation.currentCommitID" => {
                text(upgrade.map(|u| u.current_commit_id.as_str()))
            }
            "status.upgradeInformation.lastUpgradeStatus" => {
                text(upgrade.and_then(|u| u.last_upgrade_status.as_deref()))
            }
            "spec.osInformation.commitID" => text(os.and_then(|o| o.commit_id.as_deref())),
            "spec.osInformation.image" => text(os.and_then(|o| o.image.as_deref())),
            "spec.osInformation.automaticallyUpgrade" => os
                .and_then(|o| o.automatically_upgrade)
                .map(FieldValue::Boolean),
            "spec.requestTime" => instant(self.spec.request_time.as_ref()),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

impl Fields for EdgeDeviceSet {
    const FIELDS: &'static [FieldSpec] = with_metadata![
        number("status.deviceCount"),
        number("status.observedGeneration"),
    ];

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        let status = self.status.as_ref();
        match path {
            "status.deviceCount" => integer(status.and_then(|s| s.device_count)),
            "status.observedGeneration" => integer(status.and_then(|s| s.observed_generation)),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

impl Fields for EdgeWorkload {
    const FIELDS: &'static [FieldSpec] = with_metadata![
        string("spec.type"),
        string("spec.device"),
        number("status.observedGeneration"),
        number("status.currentBatch"),
        number("status.phaseCounts.deploying"),
        number("status.phaseCounts.running"),
        number("status.phaseCounts.failed"),
        number("status.phaseCounts.unknown"),
    ];

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        let status = self.status.as_ref();
        let counts = status.and_then(|s| s.phase_counts.as_ref());
        match path {
            "spec.type" => text(Some(self.spec.type_.as_str())),
            "spec.device" => text(self.spec.device.as_deref()),
            "status.observedGeneration" => integer(status.and_then(|s| s.observed_generation)),
            "status.currentBatch" => integer(status.and_then(|s| s.current_batch)),
            "status.phaseCounts.deploying" => integer(counts.map(|c| c.deploying)),
            "status.phaseCounts.running" => integer(counts.map(|c| c.running)),
            "status.phaseCounts.failed" => integer(counts.map(|c| c.failed)),
            "status.phaseCounts.unknown" => integer(counts.map(|c| c.unknown)),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

impl Fields for EdgeDeviceSignedRequest {
    const FIELDS: &'static [FieldSpec] = with_metadata![
        boolean("spec.approved"),
        string("spec.targetNamespace"),
        string("spec.targetSet"),
    ];

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        match path {
            "spec.approved" => self.spec.approved.map(FieldValue::Boolean),
            "spec.targetNamespace" => text(Some(self.spec.target_namespace.as_str())),
            "spec.targetSet" => text(self.spec.target_set.as_deref()),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::METADATA_FIELDS;
    use super::*;

    fn starts_with_metadata(fields: &[FieldSpec]) -> bool {
        fields.get(..METADATA_FIELDS.len()) == Some(METADATA_FIELDS)
    }

    #[test]
    fn every_whitelist_offers_the_metadata_fields_once() {
        for fields in [
            EdgeDevice::FIELDS,
            EdgeDeviceSet::FIELDS,
            EdgeWorkload::FIELDS,
            EdgeDeviceSignedRequest::FIELDS,
        ] {
            assert!(starts_with_metadata(fields));
            let mut paths: Vec<_> = fields.iter().map(|f| f.path).collect();
            paths.sort_unstable();
            paths.dedup();
            assert_eq!(paths.len(), fields.len(), "duplicate path in {fields:?}");
        }
    }

    /// Every whitelisted path must be read by `field_value`: a fully populated
    /// object answers `Some` for each one.
    #[test]
    fn every_whitelisted_field_is_readable() {
        let device: EdgeDevice = serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": "d1", "namespace": "ns", "generation": 2,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"requestTime": "2026-01-01T00:00:00Z",
                     "osInformation": {"commitID": "abc", "image": "os:1", "automaticallyUpgrade": true}},
            "status": {"phase": "up", "lastSeen": "2026-01-02T00:00:00Z",
                       "lastSyncedResourceVersion": "7",
                       "upgradeInformation": {"currentCommitID": "abc", "lastUpgradeStatus": "succeeded"}}
        }))
        .expect("device fixture");
        for spec in EdgeDevice::FIELDS {
            assert!(device.field_value(spec.path).is_some(), "{}", spec.path);
        }
        let set: EdgeDeviceSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDeviceSet",
            "metadata": {"name": "s", "namespace": "ns", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {},
            "status": {"deviceCount": 3, "observedGeneration": 1}
        }))
        .expect("device set fixture");
        for spec in EdgeDeviceSet::FIELDS {
            assert!(set.field_value(spec.path).is_some(), "{}", spec.path);
        }
        let request: EdgeDeviceSignedRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDeviceSignedRequest",
            "metadata": {"name": "r", "namespace": "ns", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"approved": true, "targetNamespace": "ns", "targetSet": "s"}
        }))
        .expect("signed request fixture");
        for spec in EdgeDeviceSignedRequest::FIELDS {
            assert!(request.field_value(spec.path).is_some(), "{}", spec.path);
        }
    }
}
