//! Every role and binding, indexed for [`super::authorize`].

use std::collections::HashMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};

use super::builtin;

/// One rule, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

impl From<&PolicyRule> for Rule {
    fn from(rule: &PolicyRule) -> Self {
        Self {
            verbs: rule.verbs.clone(),
            api_groups: rule.api_groups.clone().unwrap_or_default(),
            resources: rule.resources.clone().unwrap_or_default(),
            resource_names: rule.resource_names.clone().unwrap_or_default(),
            non_resource_urls: rule.non_resource_urls.clone().unwrap_or_default(),
        }
    }
}

fn rules_of(rules: Option<&Vec<PolicyRule>>) -> Vec<Rule> {
    rules.into_iter().flatten().map(Rule::from).collect()
}

/// Whom a binding names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SubjectRef {
    User(String),
    Group(String),
}

impl SubjectRef {
    /// The subject as a user or group; a service account is the user
    /// `system:serviceaccount:NS:NAME`, as in Kubernetes.
    fn of(subject: &Subject, binding_namespace: &str) -> Option<Self> {
        match subject.kind.as_str() {
            "User" => Some(SubjectRef::User(subject.name.clone())),
            "Group" => Some(SubjectRef::Group(subject.name.clone())),
            "ServiceAccount" => {
                let namespace = subject.namespace.as_deref().unwrap_or(binding_namespace);
                Some(SubjectRef::User(format!(
                    "system:serviceaccount:{namespace}:{}",
                    subject.name
                )))
            }
            _ => None,
        }
    }
}

/// The role a binding grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RoleKind {
    Role,
    ClusterRole,
}

/// A RoleBinding or a ClusterRoleBinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Binding {
    pub name: String,
    /// Empty for a ClusterRoleBinding.
    pub namespace: String,
    pub role_kind: RoleKind,
    pub role_name: String,
    pub subjects: Vec<SubjectRef>,
}

impl Binding {
    fn new(
        name: Option<&String>,
        namespace: &str,
        role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
        subjects: Option<&Vec<Subject>>,
    ) -> Option<Self> {
        let role_kind = match role_ref.kind.as_str() {
            "Role" if !namespace.is_empty() => RoleKind::Role,
            "ClusterRole" => RoleKind::ClusterRole,
            _ => return None,
        };
        Some(Self {
            name: name.cloned().unwrap_or_default(),
            namespace: namespace.to_owned(),
            role_kind,
            role_name: role_ref.name.clone(),
            subjects: subjects
                .into_iter()
                .flatten()
                .filter_map(|s| SubjectRef::of(s, namespace))
                .collect(),
        })
    }
}

/// Every Role, RoleBinding, ClusterRole and ClusterRoleBinding (built-in ones
/// included), indexed by namespace and name. Built from the store, kept in memory
/// and rebuilt when any of them changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RbacSnapshot {
    pub(super) cluster_roles: HashMap<String, Vec<Rule>>,
    /// (namespace, name) → rules.
    pub(super) roles: HashMap<(String, String), Vec<Rule>>,
    pub(super) cluster_bindings: Vec<Binding>,
    /// namespace → its RoleBindings.
    pub(super) bindings: HashMap<String, Vec<Binding>>,
}

impl RbacSnapshot {
    /// A snapshot of the built-in ClusterRoles and bindings alone.
    pub fn builtin_only() -> Self {
        Self::new(&[], &[], &[], &[])
    }

    /// A snapshot of these objects plus the built-in ones. A stored object with a
    /// built-in's name does not replace it.
    pub fn new(
        roles: &[Role],
        role_bindings: &[RoleBinding],
        cluster_roles: &[ClusterRole],
        cluster_role_bindings: &[ClusterRoleBinding],
    ) -> Self {
        let mut snapshot = Self::default();
        let builtin_roles = builtin::cluster_roles();
        let builtin_bindings = builtin::cluster_role_bindings();
        for role in builtin_roles.iter().chain(
            cluster_roles
                .iter()
                .filter(|r| !r.metadata.name.as_deref().is_some_and(builtin::is_reserved)),
        ) {
            let name = role.metadata.name.clone().unwrap_or_default();
            snapshot
                .cluster_roles
                .entry(name)
                .or_insert_with(|| rules_of(role.rules.as_ref()));
        }
        for role in roles {
            let key = (
                role.metadata.namespace.clone().unwrap_or_default(),
                role.metadata.name.clone().unwrap_or_default(),
            );
            snapshot.roles.insert(key, rules_of(role.rules.as_ref()));
        }
        for binding in builtin_bindings.iter().chain(
            cluster_role_bindings
                .iter()
                .filter(|b| !b.metadata.name.as_deref().is_some_and(builtin::is_reserved)),
        ) {
            if let Some(b) = Binding::new(
                binding.metadata.name.as_ref(),
                "",
                &binding.role_ref,
                binding.subjects.as_ref(),
            ) {
                snapshot.cluster_bindings.push(b);
            }
        }
        for binding in role_bindings {
            let namespace = binding.metadata.namespace.clone().unwrap_or_default();
            if namespace.is_empty() {
                continue;
            }
            if let Some(b) = Binding::new(
                binding.metadata.name.as_ref(),
                &namespace,
                &binding.role_ref,
                binding.subjects.as_ref(),
            ) {
                snapshot.bindings.entry(namespace).or_default().push(b);
            }
        }
        snapshot
    }

    /// How many roles and bindings of each kind the snapshot holds, built-in ones
    /// included: (Roles, RoleBindings, ClusterRoles, ClusterRoleBindings).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.roles.len(),
            self.bindings.values().map(Vec::len).sum(),
            self.cluster_roles.len(),
            self.cluster_bindings.len(),
        )
    }
}
