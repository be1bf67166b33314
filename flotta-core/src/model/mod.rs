//! The typed API model: Kubernetes-shaped resources of the
//! `management.project-flotta.io/v1alpha1` group.
//!
//! Field names follow Flotta's CRDs exactly (camelCase). Every struct keeps the
//! fields it does not know in an `extra` map (see [`UnknownFields`]), so a manifest
//! written by a newer or older Flotta survives a parse/serialize round trip. Absent
//! optional fields stay absent on output.

use std::collections::BTreeMap;

pub use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};
pub use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

mod config;
mod device;
mod device_set;
mod hardware;
mod signed_request;
mod workload;

pub use config::*;
pub use device::*;
pub use device_set::*;
pub use hardware::*;
pub use signed_request::*;
pub use workload::*;

/// API group of every flotta resource.
pub const GROUP: &str = "management.project-flotta.io";
/// API version of every flotta resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` value of every flotta resource: `GROUP/VERSION`.
pub const API_VERSION: &str = "management.project-flotta.io/v1alpha1";

/// Fields of an object that this model does not know, kept verbatim so that a round
/// trip through the model never loses them.
pub type UnknownFields = BTreeMap<String, serde_json::Value>;

/// What every top-level flotta resource tells about itself: where it lives in the
/// API and its object metadata.
pub trait Resource {
    /// API group, e.g. `management.project-flotta.io`.
    const GROUP: &'static str = GROUP;
    /// API version, e.g. `v1alpha1`.
    const VERSION: &'static str = VERSION;
    /// Kind, e.g. `EdgeDevice`.
    const KIND: &'static str;
    /// Plural used in URL paths, e.g. `edgedevices`.
    const PLURAL: &'static str;
    /// Singular name, e.g. `edgedevice`.
    const SINGULAR: &'static str;
    /// Short names accepted by the command line, e.g. `edsr`.
    const SHORT_NAMES: &'static [&'static str];

    /// The object's metadata.
    fn metadata(&self) -> &ObjectMeta;
    /// The object's metadata, mutable.
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
}

/// Implements [`Resource`] and a `new(name, spec)` constructor for a resource type.
macro_rules! impl_resource {
    ($ty:ident, $spec:ty, kind = $kind:literal, plural = $plural:literal, singular = $singular:literal, short = [$($short:literal),*]) => {
        impl $crate::model::Resource for $ty {
            const KIND: &'static str = $kind;
            const PLURAL: &'static str = $plural;
            const SINGULAR: &'static str = $singular;
            const SHORT_NAMES: &'static [&'static str] = &[$($short),*];

            fn metadata(&self) -> &$crate::model::ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut $crate::model::ObjectMeta {
                &mut self.metadata
            }
        }

        impl $ty {
            #[doc = concat!("A new `", $kind, "` named `name` with the given spec, no status.")]
            pub fn new(name: impl Into<String>, spec: $spec) -> Self {
                Self {
                    api_version: $crate::model::API_VERSION.to_owned(),
                    kind: $kind.to_owned(),
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
