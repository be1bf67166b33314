//! One RBAC authorization check (request attributes from method and path, then the
//! decision) against a snapshot of 200 namespaces, each with a Role and a
//! RoleBinding of its own team group, plus 50 ClusterRoles and ClusterRoleBindings:
//! a team member allowed in their namespace, the same member refused a list across
//! all namespaces (every binding is looked at), and a built-in viewer token. The
//! same-run baseline is the request's attributes alone (method and path parsed),
//! which every request pays before any decision.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use flotta_core::model::{
    ClusterRole, ClusterRoleBinding, ObjectMeta, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use flotta_core::rbac::{Attributes, RbacSnapshot, UserInfo, authorize, builtin, request};

const NAMESPACES: usize = 200;
const CLUSTER_ROLES: usize = 50;

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn rule(resources: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec!["management.project-flotta.io".into()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ]
        .map(String::from)
        .to_vec(),
        ..PolicyRule::default()
    }
}

fn binding_subjects(group: &str) -> Option<Vec<Subject>> {
    Some(vec![Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "Group".into(),
        name: group.to_owned(),
        namespace: None,
    }])
}

fn snapshot() -> RbacSnapshot {
    let mut roles = Vec::new();
    let mut bindings = Vec::new();
    for n in 0..NAMESPACES {
        let ns = format!("team-{n}");
        roles.push(Role {
            metadata: meta("workload-editor", Some(&ns)),
            rules: Some(vec![rule(&["edgeworkloads", "edgeworkloads/status"])]),
        });
        bindings.push(RoleBinding {
            metadata: meta("editors", Some(&ns)),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: "workload-editor".into(),
            },
            subjects: binding_subjects(&ns),
        });
    }
    let mut cluster_roles = Vec::new();
    let mut cluster_bindings = Vec::new();
    for n in 0..CLUSTER_ROLES {
        let name = format!("site-reader-{n}");
        cluster_roles.push(ClusterRole {
            metadata: meta(&name, None),
            rules: Some(vec![rule(&["edgedevices"])]),
            aggregation_rule: None,
        });
        cluster_bindings.push(ClusterRoleBinding {
            metadata: meta(&name, None),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name,
            },
            subjects: binding_subjects(&format!("site-{n}")),
        });
    }
    RbacSnapshot::new(&roles, &bindings, &cluster_roles, &cluster_bindings)
}

fn check(c: &mut Criterion) {
    let snapshot = snapshot();
    let member = UserInfo::new("alice", ["team-150"]);
    let viewer = UserInfo::new("dashboard", [builtin::role_group("viewer")]);
    let own = "/apis/management.project-flotta.io/v1alpha1/namespaces/team-150/edgeworkloads/w1";
    let all = "/apis/management.project-flotta.io/v1alpha1/edgeworkloads";
    let mut group = c.benchmark_group("rbac_authorize");
    group.bench_function("baseline_request_attributes", |b| {
        b.iter(|| request::attributes("PATCH", std::hint::black_box(own), None));
    });
    for (name, user, method, path, allowed) in [
        ("team_member_own_namespace", &member, "PATCH", own, true),
        (
            "team_member_all_namespaces_denied",
            &member,
            "GET",
            all,
            false,
        ),
        ("builtin_viewer", &viewer, "GET", all, true),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let request = request::attributes(method, path, None);
                let decision = authorize(
                    &Attributes {
                        user,
                        request: &request,
                    },
                    &snapshot,
                );
                assert_eq!(decision.allowed, allowed);
                decision
            });
        });
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
