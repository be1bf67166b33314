//! The typed API model: Kubernetes-shaped resources of the
//! `management.project-flotta.io/v1alpha1` group.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

/// API group of every flotta resource.
pub const GROUP: &str = "management.project-flotta.io";
/// API version of every flotta resource.
pub const VERSION: &str = "v1alpha1";

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
    /// Short names accepted by the command line, e.g. `edsr`.
    const SHORT_NAMES: &'static [&'static str];

    /// The object's metadata.
    fn metadata(&self) -> &ObjectMeta;
    /// The object's metadata, mutable.
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
}
