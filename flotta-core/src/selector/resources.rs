//! Field-selector whitelists of the flotta resources, reached from the kind table
//! through [`ResourceKind::fields`] and from each type through [`Fields::FIELDS`].

use time::OffsetDateTime;

use super::field::{FieldKind, FieldSpec, FieldValue, Fields, metadata_field_value};
use crate::kind::ResourceKind;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

use crate::model::{
    EdgeConfig, EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeWorkload, Event,
    PlaybookExecution, Repository, ResourceSync, Time,
};

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

impl ResourceKind {
    /// The fields a field selector may name on objects of this kind, with their
    /// types; unknown fields are refused with this list.
    pub const fn fields(self) -> &'static [FieldSpec] {
        match self {
            ResourceKind::EdgeDevice => EDGE_DEVICE_FIELDS,
            ResourceKind::EdgeDeviceSet => EDGE_DEVICE_SET_FIELDS,
            ResourceKind::EdgeWorkload => EDGE_WORKLOAD_FIELDS,
            ResourceKind::EdgeDeviceSignedRequest => EDGE_DEVICE_SIGNED_REQUEST_FIELDS,
            ResourceKind::EdgeConfig | ResourceKind::PlaybookExecution => ANSIBLE_FIELDS,
            ResourceKind::Repository | ResourceKind::ResourceSync => GITOPS_FIELDS,
            ResourceKind::Secret => SECRET_FIELDS,
            ResourceKind::ConfigMap => CONFIG_MAP_FIELDS,
            ResourceKind::Event => EVENT_FIELDS,
            ResourceKind::Role
            | ResourceKind::RoleBinding
            | ResourceKind::ClusterRole
            | ResourceKind::ClusterRoleBinding => RBAC_FIELDS,
        }
    }
}

const EDGE_DEVICE_FIELDS: &[FieldSpec] = with_metadata![
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

impl Fields for EdgeDevice {
    const FIELDS: &'static [FieldSpec] = ResourceKind::EdgeDevice.fields();

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

const EDGE_DEVICE_SET_FIELDS: &[FieldSpec] = with_metadata![
    number("status.deviceCount"),
    number("status.observedGeneration"),
];

impl Fields for EdgeDeviceSet {
    const FIELDS: &'static [FieldSpec] = ResourceKind::EdgeDeviceSet.fields();

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        let status = self.status.as_ref();
        match path {
            "status.deviceCount" => integer(status.and_then(|s| s.device_count)),
            "status.observedGeneration" => integer(status.and_then(|s| s.observed_generation)),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

const EDGE_WORKLOAD_FIELDS: &[FieldSpec] = with_metadata![
    string("spec.type"),
    string("spec.device"),
    number("status.observedGeneration"),
    number("status.currentBatch"),
    number("status.phaseCounts.deploying"),
    number("status.phaseCounts.running"),
    number("status.phaseCounts.failed"),
    number("status.phaseCounts.unknown"),
];

impl Fields for EdgeWorkload {
    const FIELDS: &'static [FieldSpec] = ResourceKind::EdgeWorkload.fields();

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

const EDGE_DEVICE_SIGNED_REQUEST_FIELDS: &[FieldSpec] = with_metadata![
    boolean("spec.approved"),
    string("spec.targetNamespace"),
    string("spec.targetSet"),
];

impl Fields for EdgeDeviceSignedRequest {
    const FIELDS: &'static [FieldSpec] = ResourceKind::EdgeDeviceSignedRequest.fields();

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        match path {
            "spec.approved" => self.spec.approved.map(FieldValue::Boolean),
            "spec.targetNamespace" => text(Some(self.spec.target_namespace.as_str())),
            "spec.targetSet" => text(self.spec.target_set.as_deref()),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

// As Kubernetes: a secret's `type` is selectable, its data never is.
const SECRET_FIELDS: &[FieldSpec] = with_metadata![string("type")];

impl Fields for Secret {
    const FIELDS: &'static [FieldSpec] = ResourceKind::Secret.fields();

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        match path {
            "type" => text(self.type_.as_deref()),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

const EVENT_FIELDS: &[FieldSpec] = with_metadata![
    string("involvedObject.kind"),
    string("involvedObject.name"),
    string("involvedObject.namespace"),
    string("involvedObject.uid"),
    string("involvedObject.apiVersion"),
    string("reason"),
    string("type"),
    string("source.component"),
    string("source.host"),
    number("count"),
    timestamp("firstTimestamp"),
    timestamp("lastTimestamp"),
];

impl Fields for Event {
    const FIELDS: &'static [FieldSpec] = ResourceKind::Event.fields();

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        let involved = &self.involved_object;
        let source = self.source.as_ref();
        match path {
            "involvedObject.kind" => text(involved.kind.as_deref()),
            "involvedObject.name" => text(involved.name.as_deref()),
            "involvedObject.namespace" => text(involved.namespace.as_deref()),
            "involvedObject.uid" => text(involved.uid.as_deref()),
            "involvedObject.apiVersion" => text(involved.api_version.as_deref()),
            "reason" => text(self.reason.as_deref()),
            "type" => text(self.type_.as_deref()),
            "source.component" => text(source.and_then(|s| s.component.as_deref())),
            "source.host" => text(source.and_then(|s| s.host.as_deref())),
            "count" => integer(self.count),
            "firstTimestamp" => instant(self.first_timestamp.as_ref()),
            "lastTimestamp" => instant(self.last_timestamp.as_ref()),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

const CONFIG_MAP_FIELDS: &[FieldSpec] = with_metadata![];

impl Fields for ConfigMap {
    const FIELDS: &'static [FieldSpec] = ResourceKind::ConfigMap.fields();

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        metadata_field_value(&self.metadata, path)
    }
}

/// The Ansible kinds select on their metadata only.
const ANSIBLE_FIELDS: &[FieldSpec] = with_metadata![];

/// The GitOps kinds select on their metadata only.
const GITOPS_FIELDS: &[FieldSpec] = with_metadata![];

/// The RBAC kinds select on their metadata only, as Kubernetes does.
const RBAC_FIELDS: &[FieldSpec] = with_metadata![];

macro_rules! metadata_only_fields {
    ($($ty:ident),*) => {$(
        impl Fields for $ty {
            const FIELDS: &'static [FieldSpec] = ResourceKind::$ty.fields();

            fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
                metadata_field_value(&self.metadata, path)
            }
        }
    )*};
}
metadata_only_fields!(
    EdgeConfig,
    PlaybookExecution,
    Role,
    RoleBinding,
    ClusterRole,
    ClusterRoleBinding,
    Repository,
    ResourceSync
);

#[cfg(test)]
mod tests {
    use super::super::METADATA_FIELDS;
    use super::*;

    fn starts_with_metadata(fields: &[FieldSpec]) -> bool {
        fields.get(..METADATA_FIELDS.len()) == Some(METADATA_FIELDS)
    }

    #[test]
    fn every_whitelist_offers_the_metadata_fields_once() {
        for fields in ResourceKind::ALL.map(ResourceKind::fields) {
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
        let event: Event = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "d1.0123456789abcdef", "namespace": "ns", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "involvedObject": {"kind": "EdgeDevice", "name": "d1", "namespace": "ns",
                               "uid": "u1", "apiVersion": "management.project-flotta.io/v1alpha1"},
            "reason": "ApplyFailed", "message": "m", "type": "Warning", "count": 2,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
            "source": {"component": "flotta-agent", "host": "d1"}
        }))
        .expect("event fixture");
        for spec in Event::FIELDS {
            assert!(event.field_value(spec.path).is_some(), "{}", spec.path);
        }
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s", "namespace": "ns", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"}
        }))
        .expect("secret fixture");
        for spec in Secret::FIELDS {
            assert!(secret.field_value(spec.path).is_some(), "{}", spec.path);
        }
    }
}
