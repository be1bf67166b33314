//! URL path prefixes of the two APIs, shared by the server that routes them and the
//! clients that call them. Depends only on the kind table.

use crate::kind::ResourceKind;

/// Base path of the agent-facing Edge API (Flotta's wire path).
pub const EDGE_BASE_PATH: &str = "/api/flotta-management/v1";

/// Path prefix of the management API's flotta group and version:
/// `/apis/{GROUP}/{VERSION}`.
pub const MANAGEMENT_PREFIX: &str = "/apis/management.project-flotta.io/v1alpha1";

/// Path prefix of the Kubernetes core kinds the management API serves (`secrets`,
/// `configmaps`, `events`), where kubectl expects them.
pub const CORE_PREFIX: &str = "/api/v1";

/// Path prefix of the Kubernetes RBAC kinds (`roles`, `rolebindings`,
/// `clusterroles`, `clusterrolebindings`).
pub const RBAC_PREFIX: &str = "/apis/rbac.authorization.k8s.io/v1";

/// Path of `SelfSubjectAccessReview`s: "may I do this?" (`kubectl auth can-i`).
pub const SELF_SUBJECT_ACCESS_REVIEWS: &str =
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// Every prefix under which the management API serves kinds of the table.
pub const KIND_PREFIXES: [&str; 3] = [MANAGEMENT_PREFIX, CORE_PREFIX, RBAC_PREFIX];

impl ResourceKind {
    /// Path prefix of the kind's API group and version: [`MANAGEMENT_PREFIX`] for
    /// flotta's kinds, [`CORE_PREFIX`] for the Kubernetes core kinds,
    /// [`RBAC_PREFIX`] for the RBAC kinds.
    pub const fn api_prefix(self) -> &'static str {
        if self.is_flotta() {
            MANAGEMENT_PREFIX
        } else if self.is_rbac() {
            RBAC_PREFIX
        } else {
            CORE_PREFIX
        }
    }

    /// The kind a URL path segment names under the API prefix `prefix`: its plural or
    /// its CRD plural, in that group and version only.
    pub fn from_plural_under(prefix: &str, plural: &str) -> Option<Self> {
        Self::from_plural(plural).filter(|k| k.api_prefix() == prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::{GROUP, VERSION};

    #[test]
    fn the_management_prefix_names_the_group_and_version() {
        assert_eq!(MANAGEMENT_PREFIX, format!("/apis/{GROUP}/{VERSION}"));
    }

    #[test]
    fn rbac_kinds_live_under_their_group() {
        assert_eq!(
            RBAC_PREFIX,
            format!(
                "/apis/{}/{}",
                crate::kind::RBAC_GROUP,
                crate::kind::RBAC_VERSION
            )
        );
        for kind in ResourceKind::RBAC {
            assert_eq!(kind.api_prefix(), RBAC_PREFIX);
            assert_eq!(kind.api_version(), "rbac.authorization.k8s.io/v1");
            assert!(!kind.is_flotta() && !kind.is_core());
        }
        assert!(!ResourceKind::ClusterRole.namespaced());
        assert!(ResourceKind::RoleBinding.namespaced());
    }

    #[test]
    fn core_kinds_live_under_api_v1() {
        assert_eq!(ResourceKind::Secret.api_prefix(), "/api/v1");
        assert_eq!(ResourceKind::ConfigMap.info().api_version(), "v1");
        assert!(!ResourceKind::Secret.is_flotta());
        assert_eq!(ResourceKind::Event.api_prefix(), "/api/v1");
        assert_eq!(ResourceKind::Event.api_version(), "v1");
        assert_eq!(
            ResourceKind::from_plural_under(CORE_PREFIX, "events"),
            Some(ResourceKind::Event)
        );
        for kind in ResourceKind::FLOTTA {
            assert!(kind.is_flotta());
            assert_eq!(kind.api_prefix(), MANAGEMENT_PREFIX);
        }
        assert_eq!(
            ResourceKind::from_plural_under(CORE_PREFIX, "secrets"),
            Some(ResourceKind::Secret)
        );
        assert_eq!(
            ResourceKind::from_plural_under(MANAGEMENT_PREFIX, "secrets"),
            None
        );
        assert_eq!(
            ResourceKind::from_plural_under(CORE_PREFIX, "edgedevices"),
            None
        );
    }
}
