//! Resources and manifests: parse, validate with field paths, write YAML.

use std::collections::HashMap;
use std::sync::Arc;

use flotta_core::kind::{KINDS, KindInfo, ResourceKind as CoreKind};
use flotta_core::manifest::{self, AnyResource};
use flotta_core::validation::{FieldError, Validate};

use crate::error::FlottaError;

/// The resource kinds (a mirror of core's kind table key; see
/// [`resource_kinds`] for their names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ResourceKind {
    /// `EdgeDevice`.
    EdgeDevice,
    /// `EdgeDeviceSet`.
    EdgeDeviceSet,
    /// `EdgeWorkload`.
    EdgeWorkload,
    /// `EdgeDeviceSignedRequest`.
    EdgeDeviceSignedRequest,
    /// `EdgeConfig`: Ansible playbooks for the devices labelled with its name.
    EdgeConfig,
    /// `PlaybookExecution`: one run of an `EdgeConfig`'s playbook on one device.
    PlaybookExecution,
    /// `Repository`: a git repository that `ResourceSync`s read.
    Repository,
    /// `ResourceSync`: objects applied from a path of a repository.
    ResourceSync,
    /// Kubernetes `v1` `Secret`.
    Secret,
    /// Kubernetes `v1` `ConfigMap`.
    ConfigMap,
    /// `Event` (read-only, recorded by the server): listed with
    /// `ManagementClient.listEvents`, watched with `watch`.
    Event,
    /// RBAC `Role` (`rbac.authorization.k8s.io/v1`).
    Role,
    /// RBAC `RoleBinding`.
    RoleBinding,
    /// RBAC `ClusterRole` (cluster-scoped).
    ClusterRole,
    /// RBAC `ClusterRoleBinding` (cluster-scoped).
    ClusterRoleBinding,
}

impl From<ResourceKind> for CoreKind {
    fn from(kind: ResourceKind) -> Self {
        match kind {
            ResourceKind::EdgeDevice => CoreKind::EdgeDevice,
            ResourceKind::EdgeDeviceSet => CoreKind::EdgeDeviceSet,
            ResourceKind::EdgeWorkload => CoreKind::EdgeWorkload,
            ResourceKind::EdgeDeviceSignedRequest => CoreKind::EdgeDeviceSignedRequest,
            ResourceKind::EdgeConfig => CoreKind::EdgeConfig,
            ResourceKind::PlaybookExecution => CoreKind::PlaybookExecution,
            ResourceKind::Repository => CoreKind::Repository,
            ResourceKind::ResourceSync => CoreKind::ResourceSync,
            ResourceKind::Secret => CoreKind::Secret,
            ResourceKind::ConfigMap => CoreKind::ConfigMap,
            ResourceKind::Event => CoreKind::Event,
            ResourceKind::Role => CoreKind::Role,
            ResourceKind::RoleBinding => CoreKind::RoleBinding,
            ResourceKind::ClusterRole => CoreKind::ClusterRole,
            ResourceKind::ClusterRoleBinding => CoreKind::ClusterRoleBinding,
        }
    }
}

impl From<CoreKind> for ResourceKind {
    fn from(kind: CoreKind) -> Self {
        match kind {
            CoreKind::EdgeDevice => ResourceKind::EdgeDevice,
            CoreKind::EdgeDeviceSet => ResourceKind::EdgeDeviceSet,
            CoreKind::EdgeWorkload => ResourceKind::EdgeWorkload,
            CoreKind::EdgeDeviceSignedRequest => ResourceKind::EdgeDeviceSignedRequest,
            CoreKind::EdgeConfig => ResourceKind::EdgeConfig,
            CoreKind::PlaybookExecution => ResourceKind::PlaybookExecution,
            CoreKind::Repository => ResourceKind::Repository,
            CoreKind::ResourceSync => ResourceKind::ResourceSync,
            CoreKind::Secret => ResourceKind::Secret,
            CoreKind::ConfigMap => ResourceKind::ConfigMap,
            CoreKind::Event => ResourceKind::Event,
            CoreKind::Role => ResourceKind::Role,
            CoreKind::RoleBinding => ResourceKind::RoleBinding,
            CoreKind::ClusterRole => ResourceKind::ClusterRole,
            CoreKind::ClusterRoleBinding => ResourceKind::ClusterRoleBinding,
        }
    }
}

/// What the API and the command line call one kind: its row of core's kind table.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ResourceKindInfo {
    /// The kind.
    pub kind: ResourceKind,
    /// The `kind` field, e.g. `EdgeDevice`.
    pub name: String,
    /// The plural of URL paths, e.g. `edgedevices`.
    pub plural: String,
    /// The plural of Flotta's CRD (differs only for signed requests).
    pub crd_plural: String,
    /// The singular, e.g. `edgedevice`.
    pub singular: String,
    /// Short names, e.g. `edsr`.
    pub short_names: Vec<String>,
    /// Further names the command line accepts, e.g. `devices`.
    pub aliases: Vec<String>,
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
    /// `apiVersion`, e.g. `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
}

impl From<&KindInfo> for ResourceKindInfo {
    fn from(info: &KindInfo) -> Self {
        let strings = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        Self {
            kind: info.kind.into(),
            name: info.name.to_owned(),
            plural: info.plural.to_owned(),
            crd_plural: info.crd_plural.to_owned(),
            singular: info.singular.to_owned(),
            short_names: strings(info.short_names),
            aliases: strings(info.aliases),
            namespaced: info.namespaced,
            api_version: info.api_version().to_owned(),
        }
    }
}

/// Every kind with its names, in a fixed order.
#[uniffi::export]
pub fn resource_kinds() -> Vec<ResourceKindInfo> {
    KINDS.iter().map(ResourceKindInfo::from).collect()
}

/// The kind any of its names designates (case-insensitive: `EdgeDevice`,
/// `edgedevices`, `ed`, `devices`, ...), or `null`.
#[uniffi::export]
pub fn resource_kind_named(name: String) -> Option<ResourceKind> {
    CoreKind::lookup(&name).map(ResourceKind::from)
}

/// One problem found by validation: the field path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldProblem {
    /// Path of the field, e.g. `spec.pod.spec.containers[0].livenessProbe`.
    pub path: String,
    /// What is wrong, in plain words.
    pub message: String,
}

impl From<FieldError> for FieldProblem {
    fn from(error: FieldError) -> Self {
        Self {
            path: error.path,
            message: error.message,
        }
    }
}

/// One workload on a device, as the device reported it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceWorkload {
    /// Workload name.
    pub name: String,
    /// Reported phase, e.g. `Running`.
    pub phase: Option<String>,
    /// Revision of the workload definition the device runs (the content hash the
    /// server's rollout compares with `currentRevision`), when it reported one.
    pub revision: Option<String>,
}

/// The status an `EdgeDevice` carries: what the device last reported.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceStatus {
    /// Device phase, e.g. `up` or `degraded`.
    pub phase: Option<String>,
    /// When the server last heard from the device (RFC 3339).
    pub last_seen: Option<String>,
    /// Workloads on the device.
    pub workloads: Vec<DeviceWorkload>,
}

impl From<&flotta_core::model::EdgeDeviceStatus> for DeviceStatus {
    fn from(status: &flotta_core::model::EdgeDeviceStatus) -> Self {
        Self {
            phase: status.phase.clone(),
            last_seen: status
                .last_seen
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
            workloads: status
                .workloads
                .iter()
                .flatten()
                .map(|w| DeviceWorkload {
                    name: w.name.clone(),
                    phase: w.phase.clone(),
                    revision: w.revision.clone(),
                })
                .collect(),
        }
    }
}

/// One flotta resource (`EdgeDevice`, `EdgeDeviceSet`, `EdgeWorkload` or
/// `EdgeDeviceSignedRequest`), immutable.
#[derive(Debug, uniffi::Object)]
pub struct Resource {
    inner: AnyResource,
}

impl Resource {
    pub(crate) fn new(inner: AnyResource) -> Arc<Self> {
        Arc::new(Self { inner })
    }

    pub(crate) fn inner(&self) -> &AnyResource {
        &self.inner
    }
}

#[uniffi::export]
impl Resource {
    /// Reads exactly one resource from a YAML or JSON document.
    #[uniffi::constructor]
    pub fn parse(text: String) -> Result<Arc<Self>, FlottaError> {
        let mut resources = manifest::parse_manifests(&text)?;
        match (resources.pop(), resources.is_empty()) {
            (Some(resource), true) => Ok(Self::new(resource)),
            (None, _) => Err(FlottaError::InvalidManifest(
                "no resource in the text".into(),
            )),
            (Some(_), false) => Err(FlottaError::InvalidManifest(format!(
                "{} resources in the text, expected one",
                resources.len() + 1
            ))),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ResourceKind {
        // `AnyResource` only holds the four kinds, so the table always knows its kind.
        CoreKind::from_kind(self.inner.kind()).map_or(ResourceKind::EdgeDevice, Into::into)
    }

    /// `metadata.name`.
    pub fn name(&self) -> Option<String> {
        self.inner.metadata().name.clone()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> Option<String> {
        self.inner.metadata().namespace.clone()
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> HashMap<String, String> {
        self.inner
            .metadata()
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    /// `metadata.resourceVersion`, set by the server.
    pub fn resource_version(&self) -> Option<String> {
        self.inner.metadata().resource_version.clone()
    }

    /// Every problem validation finds, each with its field path; empty when valid.
    pub fn validate(&self) -> Vec<FieldProblem> {
        self.inner
            .validate()
            .into_iter()
            .map(FieldProblem::from)
            .collect()
    }

    /// The device status, for an `EdgeDevice` that has one.
    pub fn device_status(&self) -> Option<DeviceStatus> {
        match &self.inner {
            AnyResource::EdgeDevice(device) => device.status.as_ref().map(DeviceStatus::from),
            _ => None,
        }
    }

    /// The resource as JSON (camelCase, as the API serves it).
    pub fn to_json(&self) -> Result<String, FlottaError> {
        serde_json::to_string(&self.inner)
            .map_err(|e| FlottaError::InvalidManifest(format!("cannot write JSON: {e}")))
    }

    /// The resource as a one-document YAML manifest.
    pub fn to_yaml(&self) -> Result<String, FlottaError> {
        write_yaml(std::slice::from_ref(&self.inner))
    }
}

fn write_yaml(resources: &[AnyResource]) -> Result<String, FlottaError> {
    manifest::to_yaml(resources)
        .map_err(|e| FlottaError::InvalidManifest(format!("cannot write YAML: {e}")))
}

/// Reads every resource of a manifest (YAML documents or JSON). Errors name the
/// document index and the field path.
#[uniffi::export]
pub fn parse_manifests(text: String) -> Result<Vec<Arc<Resource>>, FlottaError> {
    Ok(manifest::parse_manifests(&text)?
        .into_iter()
        .map(Resource::new)
        .collect())
}

/// Writes resources as a multi-document YAML manifest.
#[uniffi::export]
pub fn manifests_to_yaml(resources: Vec<Arc<Resource>>) -> Result<String, FlottaError> {
    let resources: Vec<AnyResource> = resources.iter().map(|r| r.inner.clone()).collect();
    write_yaml(&resources)
}
