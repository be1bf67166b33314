//! Kubernetes-shaped role-based access control, decided in one place.
//!
//! - [`request`]: the attributes of a management API request (user, groups, verb,
//!   API group, resource, subresource, namespace, name), read from its method, path
//!   and query exactly as Kubernetes reads them (`GET` on a collection is `list`,
//!   `?watch=true` is `watch`, `DELETE` on a collection is `deletecollection`).
//! - [`RbacSnapshot`]: every `Role`, `RoleBinding`, `ClusterRole` and
//!   `ClusterRoleBinding`, plus the built-in ClusterRoles ([`builtin`]), indexed for
//!   the check.
//! - [`authorize`]: the pure decision, allowed or denied with a reason, following
//!   Kubernetes' RBAC semantics (a Role grants in its own namespace only; a request
//!   across all namespaces or on a cluster-scoped resource needs a ClusterRole bound
//!   by a ClusterRoleBinding).
//! - [`validate`]: what a Role, binding or their ClusterRole counterparts must look
//!   like to be stored (unknown verbs, missing `roleRef`...), each problem naming its
//!   field.
//!
//! Authentication is not here: whatever proves who the caller is (a bearer token
//! today, an OIDC identity later) yields a [`UserInfo`], and this module decides.
//!
//! ```
//! use flotta_core::rbac::{Attributes, RbacSnapshot, UserInfo, authorize, request};
//!
//! let snapshot = RbacSnapshot::builtin_only();
//! let viewer = UserInfo::new("dashboard", ["flotta:viewers"]);
//! let list = request::attributes("GET", "/apis/management.project-flotta.io/v1alpha1/namespaces/a/edgedevices", None);
//! assert!(authorize(&Attributes { user: &viewer, request: &list }, &snapshot).allowed);
//! let delete = request::attributes("DELETE", "/api/v1/namespaces/a/secrets/db", None);
//! assert!(!authorize(&Attributes { user: &viewer, request: &delete }, &snapshot).allowed);
//! ```

pub mod builtin;
mod engine;
pub mod request;
mod snapshot;
mod validate;

pub use engine::{Attributes, Decision, authorize};
pub use request::{RequestAttributes, ResourceAttributes};
pub use snapshot::RbacSnapshot;
pub use validate::{check_token_subject, parse_lifetime, validate};

/// The verbs a rule may name (besides `*`), as Kubernetes' API server uses them.
pub const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Group every authenticated caller belongs to.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Who is asking: what an authenticator (bearer token, OIDC) established.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// The user name (a token's name).
    pub name: String,
    /// The groups, including [`AUTHENTICATED_GROUP`].
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user in `groups` and in [`AUTHENTICATED_GROUP`].
    pub fn new<G: Into<String>>(
        name: impl Into<String>,
        groups: impl IntoIterator<Item = G>,
    ) -> Self {
        let mut groups: Vec<String> = groups.into_iter().map(Into::into).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_owned());
        }
        Self {
            name: name.into(),
            groups,
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}
