//! Label and field selectors: thin wrappers over `flotta_core::selector`.

use std::collections::HashMap;
use std::sync::Arc;

use flotta_core::manifest::AnyResource;
use flotta_core::model::{
    ConfigMap, EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeWorkload, Secret,
};
use flotta_core::selector;

use crate::error::FlottaError;
use crate::manifest::{Resource, ResourceKind};

/// A Kubernetes label selector (`app=web,tier in (a,b),!legacy`). Its `toString` is
/// the canonical form: requirements sorted by key, values sorted.
#[derive(Debug, uniffi::Object)]
#[uniffi::export(Display, Eq)]
pub struct Selector {
    inner: selector::Selector,
}

#[uniffi::export]
impl Selector {
    /// Parses selector text; the empty string selects everything.
    #[uniffi::constructor]
    pub fn parse(text: String) -> Result<Arc<Self>, FlottaError> {
        Ok(Arc::new(Self {
            inner: text.parse()?,
        }))
    }

    /// The selector that matches every object.
    #[uniffi::constructor]
    pub fn everything() -> Arc<Self> {
        Arc::new(Self {
            inner: selector::Selector::everything(),
        })
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: HashMap<String, String>) -> bool {
        self.inner.matches(&labels)
    }

    /// Whether a resource's labels are selected.
    pub fn matches_resource(&self, resource: &Resource) -> bool {
        self.inner.matches(resource.inner().metadata())
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        self.inner.is_everything()
    }

    /// The label keys the selector constrains, in canonical order.
    pub fn keys(&self) -> Vec<String> {
        self.inner
            .requirements()
            .iter()
            .map(|r| r.key().to_owned())
            .collect()
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for Selector {}

/// A field selector over one kind's whitelisted fields
/// (`metadata.name=cam-1,status.lastSeen>2026-01-01T00:00:00Z`).
#[derive(Debug, uniffi::Object)]
#[uniffi::export(Display)]
pub struct FieldSelector {
    kind: ResourceKind,
    inner: selector::FieldSelector,
}

#[uniffi::export]
impl FieldSelector {
    /// Parses a field selector for resources of `kind`; an unknown field is an error
    /// listing the valid ones.
    #[uniffi::constructor]
    pub fn parse(kind: ResourceKind, text: String) -> Result<Arc<Self>, FlottaError> {
        let inner = match kind {
            ResourceKind::EdgeDevice => selector::FieldSelector::parse_for::<EdgeDevice>(&text),
            ResourceKind::EdgeDeviceSet => {
                selector::FieldSelector::parse_for::<EdgeDeviceSet>(&text)
            }
            ResourceKind::EdgeWorkload => selector::FieldSelector::parse_for::<EdgeWorkload>(&text),
            ResourceKind::EdgeDeviceSignedRequest => {
                selector::FieldSelector::parse_for::<EdgeDeviceSignedRequest>(&text)
            }
            ResourceKind::EdgeConfig => {
                selector::FieldSelector::parse_for::<flotta_core::model::EdgeConfig>(&text)
            }
            ResourceKind::PlaybookExecution => {
                selector::FieldSelector::parse_for::<flotta_core::model::PlaybookExecution>(&text)
            }
            ResourceKind::Repository => {
                selector::FieldSelector::parse_for::<flotta_core::model::Repository>(&text)
            }
            ResourceKind::ResourceSync => {
                selector::FieldSelector::parse_for::<flotta_core::model::ResourceSync>(&text)
            }
            ResourceKind::Secret => selector::FieldSelector::parse_for::<Secret>(&text),
            ResourceKind::ConfigMap => selector::FieldSelector::parse_for::<ConfigMap>(&text),
            ResourceKind::Event => {
                selector::FieldSelector::parse_for::<flotta_core::model::Event>(&text)
            }
            ResourceKind::Role => {
                selector::FieldSelector::parse_for::<flotta_core::model::Role>(&text)
            }
            ResourceKind::RoleBinding => {
                selector::FieldSelector::parse_for::<flotta_core::model::RoleBinding>(&text)
            }
            ResourceKind::ClusterRole => {
                selector::FieldSelector::parse_for::<flotta_core::model::ClusterRole>(&text)
            }
            ResourceKind::ClusterRoleBinding => {
                selector::FieldSelector::parse_for::<flotta_core::model::ClusterRoleBinding>(&text)
            }
        }?;
        Ok(Arc::new(Self { kind, inner }))
    }

    /// The kind the selector was parsed for.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// Whether `resource` is selected; a resource of another kind never is.
    pub fn matches(&self, resource: &Resource) -> bool {
        match resource.inner() {
            AnyResource::EdgeDevice(r) if self.kind == ResourceKind::EdgeDevice => {
                self.inner.matches(r.as_ref())
            }
            AnyResource::EdgeDeviceSet(r) if self.kind == ResourceKind::EdgeDeviceSet => {
                self.inner.matches(r.as_ref())
            }
            AnyResource::EdgeWorkload(r) if self.kind == ResourceKind::EdgeWorkload => {
                self.inner.matches(r.as_ref())
            }
            AnyResource::EdgeDeviceSignedRequest(r)
                if self.kind == ResourceKind::EdgeDeviceSignedRequest =>
            {
                self.inner.matches(r.as_ref())
            }
            AnyResource::Secret(r) if self.kind == ResourceKind::Secret => {
                self.inner.matches(r.as_ref())
            }
            AnyResource::ConfigMap(r) if self.kind == ResourceKind::ConfigMap => {
                self.inner.matches(r.as_ref())
            }
            AnyResource::Role(r) if self.kind == ResourceKind::Role => {
                self.inner.matches(r.as_ref())
            }
            AnyResource::RoleBinding(r) if self.kind == ResourceKind::RoleBinding => {
                self.inner.matches(r.as_ref())
            }
            AnyResource::ClusterRole(r) if self.kind == ResourceKind::ClusterRole => {
                self.inner.matches(r.as_ref())
            }
            AnyResource::ClusterRoleBinding(r) if self.kind == ResourceKind::ClusterRoleBinding => {
                self.inner.matches(r.as_ref())
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}
