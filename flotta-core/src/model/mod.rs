//! The typed API model: Kubernetes-shaped resources of the
//! `management.project-flotta.io/v1alpha1` group.
//!
//! Field names follow Flotta's CRDs exactly (camelCase). Every struct keeps the
//! fields it does not know in an `extra` map (see [`UnknownFields`]), so a manifest
//! written by a newer or older Flotta survives a parse/serialize round trip. Absent
//! optional fields stay absent on output.

use std::collections::BTreeMap;

pub use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
pub use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};
pub use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

mod ansible;
mod config;
mod device;
mod device_set;
mod event;
mod gitops;
mod hardware;
mod signed_request;
mod workload;

pub use ansible::*;
pub use config::*;
pub use device::*;
pub use device_set::*;
pub use event::*;
pub use gitops::*;
pub use hardware::*;
pub use signed_request::*;
pub use workload::*;

use crate::kind::ResourceKind;
pub use crate::kind::{API_VERSION, GROUP, VERSION};

/// Fields of an object that this model does not know, kept verbatim so that a round
/// trip through the model never loses them.
pub type UnknownFields = BTreeMap<String, serde_json::Value>;

/// What every top-level flotta resource tells about itself: its row of the kind
/// table ([`crate::kind`]) and its object metadata.
pub trait Resource {
    /// The resource's kind; the constants below are read from its table row.
    const RESOURCE_KIND: ResourceKind;
    /// API group, e.g. `management.project-flotta.io`.
    const GROUP: &'static str = Self::RESOURCE_KIND.info().group;
    /// API version, e.g. `v1alpha1`.
    const VERSION: &'static str = Self::RESOURCE_KIND.info().version;
    /// Kind, e.g. `EdgeDevice`.
    const KIND: &'static str = Self::RESOURCE_KIND.info().name;
    /// Plural used in URL paths, e.g. `edgedevices`.
    const PLURAL: &'static str = Self::RESOURCE_KIND.info().plural;
    /// Singular name, e.g. `edgedevice`.
    const SINGULAR: &'static str = Self::RESOURCE_KIND.info().singular;
    /// Short names accepted by the command line and listed in the CRD, e.g. `edsr`.
    const SHORT_NAMES: &'static [&'static str] = Self::RESOURCE_KIND.info().short_names;

    /// The object's metadata.
    fn metadata(&self) -> &ObjectMeta;
    /// The object's metadata, mutable.
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
}

impl ResourceKind {
    /// The kind of resource type `R`.
    pub fn of<R: Resource>() -> Self {
        R::RESOURCE_KIND
    }
}

/// The Kubernetes core kinds the API serves are resources of the kind table too, so
/// that typed clients, selectors and manifests handle them like flotta's own.
macro_rules! impl_core_resource {
    ($ty:ident) => {
        impl Resource for $ty {
            const RESOURCE_KIND: ResourceKind = ResourceKind::$ty;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
impl_core_resource!(Secret);
impl_core_resource!(ConfigMap);
impl_core_resource!(Role);
impl_core_resource!(RoleBinding);
impl_core_resource!(ClusterRole);
impl_core_resource!(ClusterRoleBinding);

/// Implements [`Resource`] and a `new(name, spec)` constructor for a resource type
/// whose [`ResourceKind`] variant has the type's name.
macro_rules! impl_resource {
    ($ty:ident, $spec:ty) => {
        impl $crate::model::Resource for $ty {
            const RESOURCE_KIND: $crate::kind::ResourceKind = $crate::kind::ResourceKind::$ty;

            fn metadata(&self) -> &$crate::model::ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut $crate::model::ObjectMeta {
                &mut self.metadata
            }
        }

        impl $ty {
            #[doc = concat!("A new `", stringify!($ty), "` named `name` with the given spec, no status.")]
            pub fn new(name: impl Into<String>, spec: $spec) -> Self {
                Self {
                    api_version: $crate::model::API_VERSION.to_owned(),
                    kind: <Self as $crate::model::Resource>::KIND.to_owned(),
                    metadata: $crate::model::ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                    extra: Default::default(),
                }
            }
        }
    };
}
pub(crate) use impl_resource;
