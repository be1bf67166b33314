//! The decision: does any binding of the caller grant a rule that covers the
//! request? Kubernetes' RBAC semantics: ClusterRoleBindings grant everywhere;
//! RoleBindings grant within their own namespace only, so a request across all
//! namespaces (empty namespace) or on a cluster-scoped resource is allowed by a
//! ClusterRoleBinding alone. Denial is the default.

use super::UserInfo;
use super::request::{RequestAttributes, ResourceAttributes};
use super::snapshot::{Binding, RbacSnapshot, RoleKind, Rule, SubjectRef};

/// Who asks what.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The caller.
    pub user: &'a UserInfo,
    /// The request.
    pub request: &'a RequestAttributes,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// Which binding allowed it, or why it was denied, in Kubernetes' words.
    pub reason: String,
}

impl Decision {
    /// The message of a 403 for this request, as Kubernetes words it: `User "alice"
    /// cannot list resource "edgedevices" in API group "..." in the namespace "b"`.
    pub fn forbidden_message(attributes: &Attributes<'_>) -> String {
        let what = match attributes.request {
            RequestAttributes::Resource(r) if !r.name.is_empty() => {
                format!("{} {:?} is forbidden", r.resource, r.name)
            }
            RequestAttributes::Resource(r) => format!("{} is forbidden", r.resource),
            RequestAttributes::NonResource { .. } => "forbidden".to_owned(),
        };
        format!(
            "{what}: User {:?} cannot {}",
            attributes.user.name, attributes.request
        )
    }
}

fn subject_matches(subject: &SubjectRef, user: &UserInfo) -> bool {
    match subject {
        SubjectRef::User(name) => *name == user.name,
        SubjectRef::Group(name) => user.in_group(name),
    }
}

fn any_or(items: &[String], wanted: &str) -> bool {
    items.iter().any(|i| i == "*" || i == wanted)
}

fn resource_matches(rule: &Rule, request: &ResourceAttributes) -> bool {
    rule.resources.iter().any(|resource| {
        if resource == "*" {
            return true;
        }
        match resource.split_once('/') {
            None => request.subresource.is_empty() && *resource == request.resource,
            Some((base, sub)) => {
                sub == request.subresource && (base == "*" || base == request.resource)
            }
        }
    })
}

fn rule_allows(rule: &Rule, request: &RequestAttributes) -> bool {
    match request {
        RequestAttributes::Resource(r) => {
            any_or(&rule.verbs, &r.verb)
                && any_or(&rule.api_groups, &r.api_group)
                && resource_matches(rule, r)
                && (rule.resource_names.is_empty()
                    || (!r.name.is_empty() && rule.resource_names.contains(&r.name)))
        }
        RequestAttributes::NonResource { path, verb } => {
            any_or(&rule.verbs, verb)
                && rule
                    .non_resource_urls
                    .iter()
                    .any(|url| match url.strip_suffix('*') {
                        Some(prefix) => path.starts_with(prefix),
                        None => url == path,
                    })
        }
    }
}

fn describe(binding: &Binding, subject: &SubjectRef) -> String {
    let (binding_kind, binding_name) = if binding.namespace.is_empty() {
        ("ClusterRoleBinding", binding.name.clone())
    } else {
        (
            "RoleBinding",
            format!("{}/{}", binding.name, binding.namespace),
        )
    };
    let role_kind = match binding.role_kind {
        RoleKind::Role => "Role",
        RoleKind::ClusterRole => "ClusterRole",
    };
    let (subject_kind, subject_name) = match subject {
        SubjectRef::User(n) => ("User", n),
        SubjectRef::Group(n) => ("Group", n),
    };
    format!(
        "RBAC: allowed by {binding_kind} {binding_name:?} of {role_kind} {:?} to {subject_kind} {subject_name:?}",
        binding.role_name
    )
}

/// Whether `binding` grants `request` to `user`; the reason when it does.
fn binding_allows(
    snapshot: &RbacSnapshot,
    binding: &Binding,
    user: &UserInfo,
    request: &RequestAttributes,
) -> Option<String> {
    let subject = binding.subjects.iter().find(|s| subject_matches(s, user))?;
    let rules = match binding.role_kind {
        RoleKind::ClusterRole => snapshot.cluster_roles.get(&binding.role_name)?,
        RoleKind::Role => snapshot
            .roles
            .get(&(binding.namespace.clone(), binding.role_name.clone()))?,
    };
    rules
        .iter()
        .any(|rule| rule_allows(rule, request))
        .then(|| describe(binding, subject))
}

/// Decides whether `attributes.user` may do `attributes.request`.
pub fn authorize(attributes: &Attributes<'_>, snapshot: &RbacSnapshot) -> Decision {
    let Attributes { user, request } = *attributes;
    for binding in &snapshot.cluster_bindings {
        if let Some(reason) = binding_allows(snapshot, binding, user, request) {
            return Decision {
                allowed: true,
                reason,
            };
        }
    }
    // RoleBindings apply to namespaced requests in their namespace only.
    if let RequestAttributes::Resource(r) = request
        && !r.namespace.is_empty()
        && let Some(bindings) = snapshot.bindings.get(&r.namespace)
    {
        for binding in bindings {
            if let Some(reason) = binding_allows(snapshot, binding, user, request) {
                return Decision {
                    allowed: true,
                    reason,
                };
            }
        }
    }
    Decision {
        allowed: false,
        reason: Decision::forbidden_message(attributes),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::super::request::attributes;
    use super::*;

    const FLOTTA: &str = "/apis/management.project-flotta.io/v1alpha1";

    fn team_snapshot() -> RbacSnapshot {
        let role = Role {
            metadata: ObjectMeta {
                name: Some("workload-editor".into()),
                namespace: Some("team-a".into()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec!["management.project-flotta.io".into()]),
                resources: Some(vec!["edgeworkloads".into(), "edgeworkloads/status".into()]),
                verbs: [
                    "get", "list", "watch", "create", "update", "patch", "delete",
                ]
                .map(String::from)
                .to_vec(),
                ..Default::default()
            }]),
        };
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some("team-a-editors".into()),
                namespace: Some("team-a".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: "workload-editor".into(),
            },
            subjects: Some(vec![Subject {
                kind: "Group".into(),
                name: "team-a".into(),
                ..Default::default()
            }]),
        };
        RbacSnapshot::new(&[role], &[binding], &[], &[])
    }

    fn allowed(
        snapshot: &RbacSnapshot,
        user: &UserInfo,
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> bool {
        let request = attributes(method, path, query);
        authorize(
            &Attributes {
                user,
                request: &request,
            },
            snapshot,
        )
        .allowed
    }

    #[test]
    fn a_role_grants_in_its_namespace_only() {
        let snapshot = team_snapshot();
        let alice = UserInfo::new("alice", ["team-a"]);
        let ns = |ns: &str| format!("{FLOTTA}/namespaces/{ns}/edgeworkloads");
        assert!(allowed(&snapshot, &alice, "GET", &ns("team-a"), None));
        assert!(allowed(
            &snapshot,
            &alice,
            "GET",
            &ns("team-a"),
            Some("watch=true")
        ));
        assert!(allowed(&snapshot, &alice, "POST", &ns("team-a"), None));
        assert!(allowed(
            &snapshot,
            &alice,
            "PATCH",
            &format!("{}/w/status", ns("team-a")),
            None
        ));
        assert!(
            !allowed(&snapshot, &alice, "DELETE", &ns("team-a"), None),
            "deletecollection"
        );
        assert!(!allowed(&snapshot, &alice, "GET", &ns("team-b"), None));
        assert!(
            !allowed(
                &snapshot,
                &alice,
                "GET",
                &format!("{FLOTTA}/edgeworkloads"),
                None
            ),
            "all namespaces"
        );
        assert!(!allowed(
            &snapshot,
            &alice,
            "GET",
            &format!("{FLOTTA}/edgeworkloads"),
            Some("watch=true")
        ));
        assert!(!allowed(
            &snapshot,
            &alice,
            "GET",
            &format!("{FLOTTA}/namespaces/team-a/edgedevices"),
            None
        ));
        assert!(!allowed(
            &snapshot,
            &alice,
            "GET",
            "/api/v1/namespaces/team-a/secrets",
            None
        ));
        assert!(!allowed(&snapshot, &alice, "GET", "/metrics", None));
        // Every authenticated user may discover and ask.
        assert!(allowed(&snapshot, &alice, "GET", FLOTTA, None));
        assert!(allowed(
            &snapshot,
            &alice,
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            None
        ));
        let bob = UserInfo::new("bob", ["team-b"]);
        assert!(!allowed(&snapshot, &bob, "GET", &ns("team-a"), None));
    }

    #[test]
    fn built_in_roles_keep_the_token_roles() {
        let snapshot = RbacSnapshot::builtin_only();
        let role =
            |r: &str| UserInfo::new(format!("{r}-token"), [super::super::builtin::role_group(r)]);
        let (admin, operator, viewer, metrics) = (
            role("admin"),
            role("operator"),
            role("viewer"),
            role("metrics"),
        );
        let devices = format!("{FLOTTA}/namespaces/a/edgedevices");
        let secret = "/api/v1/namespaces/a/secrets/db";
        let tokens = format!("{FLOTTA}/tokens");
        for (user, reads, writes, secrets, manage, scrape) in [
            (&admin, true, true, true, true, true),
            (&operator, true, true, true, false, true),
            (&viewer, true, false, false, false, true),
            (&metrics, false, false, false, false, true),
        ] {
            assert_eq!(
                allowed(&snapshot, user, "GET", &devices, None),
                reads,
                "{}",
                user.name
            );
            assert_eq!(
                allowed(&snapshot, user, "POST", &devices, None),
                writes,
                "{}",
                user.name
            );
            assert_eq!(
                allowed(&snapshot, user, "GET", secret, None),
                secrets,
                "{}",
                user.name
            );
            assert_eq!(
                allowed(&snapshot, user, "POST", &tokens, None),
                manage,
                "{}",
                user.name
            );
            assert_eq!(
                allowed(&snapshot, user, "GET", "/metrics", None),
                scrape,
                "{}",
                user.name
            );
        }
        assert!(!allowed(
            &snapshot,
            &operator,
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            None
        ));
        assert!(allowed(
            &snapshot,
            &admin,
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            None
        ));
    }

    #[test]
    fn decisions_say_why() {
        let snapshot = team_snapshot();
        let alice = UserInfo::new("alice", ["team-a"]);
        let request = attributes(
            "GET",
            &format!("{FLOTTA}/namespaces/team-b/edgeworkloads"),
            None,
        );
        let denied = authorize(
            &Attributes {
                user: &alice,
                request: &request,
            },
            &snapshot,
        );
        assert_eq!(
            denied.reason,
            "edgeworkloads is forbidden: User \"alice\" cannot list resource \"edgeworkloads\" in API group \"management.project-flotta.io\" in the namespace \"team-b\""
        );
        let request = attributes(
            "GET",
            &format!("{FLOTTA}/namespaces/team-a/edgeworkloads"),
            None,
        );
        let granted = authorize(
            &Attributes {
                user: &alice,
                request: &request,
            },
            &snapshot,
        );
        assert_eq!(
            granted.reason,
            "RBAC: allowed by RoleBinding \"team-a-editors/team-a\" of Role \"workload-editor\" to Group \"team-a\""
        );
    }

    #[test]
    fn resource_names_restrict_to_named_objects() {
        let rule = Rule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec![String::new()],
            resources: vec!["configmaps".into()],
            resource_names: vec!["shared".into()],
            non_resource_urls: vec![],
        };
        let get = attributes("GET", "/api/v1/namespaces/a/configmaps/shared", None);
        let other = attributes("GET", "/api/v1/namespaces/a/configmaps/other", None);
        let list = attributes("GET", "/api/v1/namespaces/a/configmaps", None);
        assert!(rule_allows(&rule, &get));
        assert!(!rule_allows(&rule, &other));
        assert!(!rule_allows(&rule, &list));
    }
}
