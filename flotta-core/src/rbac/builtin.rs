//! The built-in ClusterRoles and ClusterRoleBindings: always present, read-only,
//! listed by the API like stored ones.
//!
//! A token's role is a membership: a token created with role `R` is in the group
//! [`role_group`]`(R)` (`flotta:admins`, `flotta:operators`, `flotta:viewers`,
//! `flotta:metrics-scrapers`), which the built-in ClusterRoleBinding `flotta:R` binds
//! to the ClusterRole `flotta:R`. Every authenticated caller is in
//! `system:authenticated`, bound to `flotta:basic-user` (discovery and
//! `SelfSubjectAccessReview`s).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::AUTHENTICATED_GROUP;
use crate::kind::{CORE_GROUP, GROUP, RBAC_GROUP, ResourceKind};

/// Prefix of every built-in ClusterRole, ClusterRoleBinding and role group; names
/// with it cannot be created through the API, nor given to tokens as groups.
pub const RESERVED_PREFIX: &str = "flotta:";

/// The resource of API tokens (`/apis/management.project-flotta.io/v1alpha1/tokens`).
pub const TOKENS_RESOURCE: &str = "tokens";

/// The built-in ClusterRole every authenticated caller is bound to.
pub const BASIC_USER: &str = "flotta:basic-user";

/// The Prometheus metrics path.
pub const METRICS_PATH: &str = "/metrics";

/// A token role's built-in ClusterRole and ClusterRoleBinding: `flotta:admin`,
/// `flotta:operator`, `flotta:viewer` or `flotta:metrics`.
pub fn role_cluster_role(role: &str) -> String {
    format!("{RESERVED_PREFIX}{role}")
}

/// The group a token with role `role` belongs to, e.g. `flotta:viewers`.
pub fn role_group(role: &str) -> String {
    match role {
        "metrics" => format!("{RESERVED_PREFIX}metrics-scrapers"),
        other => format!("{RESERVED_PREFIX}{other}s"),
    }
}

/// The token roles, in decreasing power.
pub const ROLES: [&str; 4] = ["admin", "operator", "viewer", "metrics"];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn resource_rule(groups: &[&str], resources: &[String], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(resources.to_vec()),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn path_rule(paths: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(strings(paths)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// Flotta's kinds and their subresources, then the core kinds (except secrets
/// unless `with_secrets`).
fn fleet_resources(with_secrets: bool) -> (Vec<String>, Vec<String>) {
    let mut flotta = Vec::new();
    for kind in ResourceKind::FLOTTA {
        flotta.push(kind.plural().to_owned());
        flotta.push(format!("{}/status", kind.plural()));
    }
    flotta.push(format!(
        "{}/approval",
        ResourceKind::EdgeDeviceSignedRequest.plural()
    ));
    let core = ResourceKind::ALL
        .into_iter()
        .filter(|k| k.is_core() && (with_secrets || *k != ResourceKind::Secret))
        .map(|k| k.plural().to_owned())
        .collect();
    (flotta, core)
}

const READ: [&str; 3] = ["get", "list", "watch"];

fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(BTreeMap::from([(
            "kubernetes.io/bootstrapping".to_owned(),
            "rbac-defaults".to_owned(),
        )])),
        annotations: Some(BTreeMap::from([(
            "flotta.io/built-in".to_owned(),
            "true".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: metadata(name),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// The built-in ClusterRoles, by name.
pub fn cluster_roles() -> Vec<ClusterRole> {
    let (flotta_all, core_all) = fleet_resources(true);
    let (flotta_read, core_read) = fleet_resources(false);
    let metrics = path_rule(&[METRICS_PATH], &["get"]);
    vec![
        cluster_role(
            &role_cluster_role("admin"),
            vec![
                resource_rule(&["*"], &strings(&["*"]), &["*"]),
                path_rule(&["*"], &["*"]),
            ],
        ),
        cluster_role(
            &role_cluster_role("operator"),
            vec![
                resource_rule(&[GROUP], &flotta_all, &["*"]),
                resource_rule(&[CORE_GROUP], &core_all, &["*"]),
                metrics.clone(),
            ],
        ),
        cluster_role(
            &role_cluster_role("viewer"),
            vec![
                resource_rule(&[GROUP], &flotta_read, &READ),
                resource_rule(&[CORE_GROUP], &core_read, &READ),
                metrics.clone(),
            ],
        ),
        cluster_role(&role_cluster_role("metrics"), vec![metrics]),
        cluster_role(
            BASIC_USER,
            vec![
                resource_rule(
                    &["authorization.k8s.io"],
                    &strings(&["selfsubjectaccessreviews"]),
                    &["create"],
                ),
                path_rule(&["/api", "/api/*", "/apis", "/apis/*"], &["get"]),
            ],
        ),
    ]
}

/// The built-in ClusterRoleBindings: each token role's group to its ClusterRole,
/// and `system:authenticated` to `flotta:basic-user`.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let binding = |name: &str, group: &str| ClusterRoleBinding {
        metadata: metadata(name),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.to_owned()),
            kind: "ClusterRole".to_owned(),
            name: name.to_owned(),
        },
        subjects: Some(vec![Subject {
            api_group: Some(RBAC_GROUP.to_owned()),
            kind: "Group".to_owned(),
            name: group.to_owned(),
            namespace: None,
        }]),
    };
    ROLES
        .iter()
        .map(|role| binding(&role_cluster_role(role), &role_group(role)))
        .chain([binding(BASIC_USER, AUTHENTICATED_GROUP)])
        .collect()
}

/// Whether `name` is reserved for built-in objects.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}
