//! Resources and manifests: parse, validate with field paths, write YAML.

use std::collections::HashMap;
use std::sync::Arc;

use flotta_core::manifest::{self, AnyResource};
use flotta_core::model::{
    EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeWorkload, Resource as _,
};
use flotta_core::validation::{FieldError, Validate};

use crate::error::FlottaError;

/// The four flotta resource kinds.
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
}

impl ResourceKind {
    /// The kind as written in manifests, e.g. `EdgeDevice`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::EdgeDevice => EdgeDevice::KIND,
            Self::EdgeDeviceSet => EdgeDeviceSet::KIND,
            Self::EdgeWorkload => EdgeWorkload::KIND,
            Self::EdgeDeviceSignedRequest => EdgeDeviceSignedRequest::KIND,
        }
    }
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
        match &self.inner {
            AnyResource::EdgeDeviceSet(_) => ResourceKind::EdgeDeviceSet,
            AnyResource::EdgeWorkload(_) => ResourceKind::EdgeWorkload,
            AnyResource::EdgeDeviceSignedRequest(_) => ResourceKind::EdgeDeviceSignedRequest,
            _ => ResourceKind::EdgeDevice,
        }
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
