//! Role-based access control over the real management API: two teams isolated by
//! namespaced Roles and RoleBindings (lists, watches, gets, field selectors,
//! secrets), expiring tokens, SelfSubjectAccessReviews, the built-in ClusterRoles,
//! and RBAC objects refused with the field at fault.

use flotta_server::store::{TokenRole, TokenSpec};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api_harness::{TestServer, collection, expect_json, expect_status, object_path};
use crate::api_suite::{next_events, watch_events};

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";
const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const FLOTTA: &str = "/apis/management.project-flotta.io/v1alpha1";

/// A token for user `name` in `groups`, without a built-in role.
pub(crate) async fn team_token(server: &TestServer, name: &str, groups: &[&str]) -> String {
    server
        .store()
        .issue_token(&TokenSpec {
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            description: format!("{name} of {groups:?}"),
            ..TokenSpec::default()
        })
        .await
        .expect("token")
        .secret
}

/// The team Role of docs/access-control.md: devices, sets and config maps read,
/// workloads (and their status) read and written; in `namespace` only.
pub(crate) fn team_role(namespace: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "fleet-team", "namespace": namespace},
        "rules": [
            {"apiGroups": ["management.project-flotta.io"],
             "resources": ["edgeworkloads", "edgeworkloads/status"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["management.project-flotta.io"],
             "resources": ["edgedevices", "edgedevicesets"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        ],
    })
}

/// Binds [`team_role`] in `namespace` to the group `group`.
pub(crate) fn team_binding(namespace: &str, group: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": format!("{group}-fleet-team"), "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fleet-team"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    })
}

/// Creates the team Role and its binding to `group` in `namespace`, as the admin.
pub(crate) async fn grant_team(server: &TestServer, namespace: &str, group: &str) {
    for (plural, body) in [
        ("roles", team_role(namespace)),
        ("rolebindings", team_binding(namespace, group)),
    ] {
        expect_json(
            server
                .admin(
                    Method::POST,
                    &format!("{RBAC}/namespaces/{namespace}/{plural}"),
                )
                .json(&body)
                .send()
                .await
                .expect("create RBAC object"),
            StatusCode::CREATED,
        )
        .await;
    }
}

fn device(name: &str) -> Value {
    json!({"apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDevice",
        "metadata": {"name": name, "labels": {"site": "lab"}},
        "spec": {"requestTime": "2024-05-01T10:00:00Z"}})
}

fn workload(name: &str) -> Value {
    json!({"apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeWorkload",
        "metadata": {"name": name},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"site": "lab"}},
                 "pod": {"spec": {"containers": [{"name": "app", "image": "quay.io/app:1"}]}}}})
}

/// Creates a device, a workload and a secret named after `namespace` in it.
async fn team_objects(server: &TestServer, namespace: &str) {
    for (path, body) in [
        (
            collection(namespace, "edgedevices"),
            device(&format!("{namespace}-dev")),
        ),
        (
            collection(namespace, "edgeworkloads"),
            workload(&format!("{namespace}-app")),
        ),
        (
            format!("/api/v1/namespaces/{namespace}/secrets"),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": format!("{namespace}-db")},
                   "stringData": {"password": "s3cret"}}),
        ),
    ] {
        expect_json(
            server
                .admin(Method::POST, &path)
                .json(&body)
                .send()
                .await
                .expect("create"),
            StatusCode::CREATED,
        )
        .await;
    }
}

async fn status_of(server: &TestServer, token: &str, method: Method, path: &str) -> StatusCode {
    server
        .with_token(method, path, token)
        .send()
        .await
        .expect("request")
        .status()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn two_teams_see_only_their_namespace() {
    let server = TestServer::start().await;
    grant_team(&server, "team-a", "team-a").await;
    grant_team(&server, "team-b", "team-b").await;
    team_objects(&server, "team-a").await;
    team_objects(&server, "team-b").await;
    let alice = team_token(&server, "alice", &["team-a"]).await;

    // Lists in their own namespace show their objects only.
    for plural in ["edgedevices", "edgeworkloads"] {
        let list = expect_json(
            server
                .with_token(Method::GET, &collection("team-a", plural), &alice)
                .send()
                .await
                .expect("list"),
            StatusCode::OK,
        )
        .await;
        assert!(
            names(&list).iter().all(|n| n.starts_with("team-a-")),
            "{plural}: {list}"
        );
        assert_eq!(names(&list).len(), 1, "{plural}");
    }

    // Team B's namespace: list, get, watch, secrets are all refused.
    for path in [
        collection("team-b", "edgedevices"),
        collection("team-b", "edgeworkloads"),
        object_path("team-b", "edgedevices", "team-b-dev"),
        object_path("team-b", "edgeworkloads", "team-b-app"),
        format!("{}?watch=true", collection("team-b", "edgeworkloads")),
        "/api/v1/namespaces/team-b/secrets".to_owned(),
        "/api/v1/namespaces/team-b/secrets/team-b-db".to_owned(),
        // Their Role does not name secrets, even in their own namespace.
        "/api/v1/namespaces/team-a/secrets/team-a-db".to_owned(),
    ] {
        let refused = server
            .with_token(Method::GET, &path, &alice)
            .send()
            .await
            .expect("request");
        let status = expect_status(refused, StatusCode::FORBIDDEN, "Forbidden").await;
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("User \"alice\" cannot")),
            "{path}: {status}"
        );
    }

    // Across all namespaces needs a cluster-wide grant: plain, field-selected on
    // either namespace, and as a watch.
    for query in [
        "",
        "?fieldSelector=metadata.namespace%3Dteam-a",
        "?fieldSelector=metadata.namespace%3Dteam-b",
        "?watch=true",
        "?watch=true&fieldSelector=metadata.namespace%3Dteam-b",
    ] {
        for plural in ["edgedevices", "edgeworkloads"] {
            let path = format!("{FLOTTA}/{plural}{query}");
            assert_eq!(
                status_of(&server, &alice, Method::GET, &path).await,
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
    }
    assert_eq!(
        status_of(&server, &alice, Method::GET, "/api/v1/secrets").await,
        StatusCode::FORBIDDEN
    );

    // Writes: their own workloads yes, team B's no.
    let created = server
        .with_token(Method::POST, &collection("team-a", "edgeworkloads"), &alice)
        .json(&workload("alice-app"))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let foreign = server
        .with_token(Method::POST, &collection("team-b", "edgeworkloads"), &alice)
        .json(&workload("alice-app"))
        .send()
        .await
        .expect("create");
    expect_status(foreign, StatusCode::FORBIDDEN, "Forbidden").await;
    assert_eq!(
        status_of(
            &server,
            &alice,
            Method::DELETE,
            &object_path("team-b", "edgeworkloads", "team-b-app")
        )
        .await,
        StatusCode::FORBIDDEN
    );

    // A watch in their namespace never carries team B's changes: team B's new
    // workload is created first, team A's second; the stream shows team A's.
    let watch = server
        .with_token(
            Method::GET,
            &format!("{}?watch=true", collection("team-a", "edgeworkloads")),
            &alice,
        )
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), StatusCode::OK);
    let mut events = watch_events(watch);
    let initial = next_events(&mut events, 2).await;
    for (namespace, name) in [("team-b", "b-late"), ("team-a", "a-late")] {
        expect_json(
            server
                .admin(Method::POST, &collection(namespace, "edgeworkloads"))
                .json(&workload(name))
                .send()
                .await
                .expect("create"),
            StatusCode::CREATED,
        )
        .await;
    }
    let mut seen: Vec<Value> = initial;
    loop {
        let event = next_events(&mut events, 1).await.remove(0);
        let done = event["object"]["metadata"]["name"] == "a-late";
        seen.push(event);
        if done {
            break;
        }
    }
    for event in &seen {
        assert_eq!(
            event["object"]["metadata"]["namespace"], "team-a",
            "{event}"
        );
    }

    // Team B's own member reads team B.
    let bob = team_token(&server, "bob", &["team-b"]).await;
    assert_eq!(
        status_of(
            &server,
            &bob,
            Method::GET,
            &collection("team-b", "edgeworkloads")
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(
            &server,
            &bob,
            Method::GET,
            &collection("team-a", "edgeworkloads")
        )
        .await,
        StatusCode::FORBIDDEN
    );

    // Deleting the binding takes the grant away at once.
    expect_json(
        server
            .admin(
                Method::DELETE,
                &format!("{RBAC}/namespaces/team-a/rolebindings/team-a-fleet-team"),
            )
            .send()
            .await
            .expect("delete binding"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        status_of(
            &server,
            &alice,
            Method::GET,
            &collection("team-a", "edgeworkloads")
        )
        .await,
        StatusCode::FORBIDDEN
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cluster_role_binding_grants_every_namespace() {
    let server = TestServer::start().await;
    team_objects(&server, "team-a").await;
    team_objects(&server, "team-b").await;
    let carol = team_token(&server, "carol", &["auditors"]).await;
    assert_eq!(
        status_of(
            &server,
            &carol,
            Method::GET,
            &format!("{FLOTTA}/edgedevices")
        )
        .await,
        StatusCode::FORBIDDEN
    );
    for (plural, body) in [
        (
            "clusterroles",
            json!({"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1",
                   "metadata": {"name": "device-reader"},
                   "rules": [{"apiGroups": ["management.project-flotta.io"],
                              "resources": ["edgedevices"], "verbs": ["get", "list", "watch"]}]}),
        ),
        (
            "clusterrolebindings",
            json!({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
                   "metadata": {"name": "auditors-read-devices"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "device-reader"},
                   "subjects": [{"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"}]}),
        ),
    ] {
        let created = expect_json(
            server
                .admin(Method::POST, &format!("{RBAC}/{plural}"))
                .json(&body)
                .send()
                .await
                .expect("create"),
            StatusCode::CREATED,
        )
        .await;
        assert!(created["metadata"].get("namespace").is_none(), "{created}");
    }
    let list = expect_json(
        server
            .with_token(Method::GET, &format!("{FLOTTA}/edgedevices"), &carol)
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&list), ["team-a-dev", "team-b-dev"]);
    assert_eq!(
        status_of(
            &server,
            &carol,
            Method::GET,
            &format!("{FLOTTA}/edgeworkloads")
        )
        .await,
        StatusCode::FORBIDDEN
    );
    server.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_refused_with_the_time() {
    let server = TestServer::start().await;
    let expired_at = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let issued = server
        .store()
        .issue_token(&TokenSpec {
            name: "temp".into(),
            role: Some(TokenRole::Admin),
            expires_at: Some(expired_at),
            ..TokenSpec::default()
        })
        .await
        .expect("token");
    let refused = server
        .with_token(
            Method::GET,
            &collection("default", "edgedevices"),
            &issued.secret,
        )
        .send()
        .await
        .expect("request");
    let status = expect_status(refused, StatusCode::UNAUTHORIZED, "Unauthorized").await;
    let message = status["message"].as_str().expect("message");
    assert!(
        message.contains("expired at") && message.contains("\"temp\""),
        "{message}"
    );

    // One created through the API with a lifetime works, and is listed with its
    // name, role and expiry.
    let created = expect_json(
        server
            .admin(Method::POST, &format!("{FLOTTA}/tokens"))
            .json(&json!({"name": "ci", "role": "viewer", "groups": ["builders"], "expiresIn": "30d"}))
            .send()
            .await
            .expect("create token"),
        StatusCode::CREATED,
    )
    .await;
    let secret = created["secret"].as_str().expect("secret");
    assert_eq!(
        status_of(
            &server,
            secret,
            Method::GET,
            &collection("default", "edgedevices")
        )
        .await,
        StatusCode::OK
    );
    let list = expect_json(
        server
            .admin(Method::GET, &format!("{FLOTTA}/tokens"))
            .send()
            .await
            .expect("list tokens"),
        StatusCode::OK,
    )
    .await;
    let ci = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|t| t["name"] == "ci")
        .expect("the ci token is listed");
    assert_eq!(ci["role"], "viewer");
    assert_eq!(ci["groups"], json!(["builders"]));
    let expires = OffsetDateTime::parse(
        ci["expiresAt"].as_str().expect("expiresAt"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let lifetime = expires - OffsetDateTime::now_utc();
    assert!(
        lifetime > time::Duration::days(29) && lifetime <= time::Duration::days(30),
        "{lifetime}"
    );
    // Reserved groups cannot be given to tokens.
    let reserved = server
        .admin(Method::POST, &format!("{FLOTTA}/tokens"))
        .json(&json!({"name": "sneaky", "groups": ["flotta:admins"]}))
        .send()
        .await
        .expect("create token");
    let status = expect_status(reserved, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    assert_eq!(
        status["details"]["causes"][0]["field"], "groups[0]",
        "{status}"
    );
    server.stop().await;
}

async fn can_i(server: &TestServer, token: &str, spec: Value) -> Value {
    expect_json(
        server
            .with_token(Method::POST, SSAR, token)
            .json(&json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec}))
            .send()
            .await
            .expect("review"),
        StatusCode::CREATED,
    )
    .await
}

#[tokio::test]
async fn self_subject_access_reviews_answer_for_the_caller() {
    let server = TestServer::start().await;
    grant_team(&server, "team-a", "team-a").await;
    let alice = team_token(&server, "alice", &["team-a"]).await;
    let ask = |namespace: &str, verb: &str, resource: &str| {
        json!({"resourceAttributes": {"namespace": namespace, "verb": verb,
            "group": "management.project-flotta.io", "resource": resource}})
    };
    let yes = can_i(&server, &alice, ask("team-a", "create", "edgeworkloads")).await;
    assert_eq!(yes["kind"], "SelfSubjectAccessReview");
    assert_eq!(yes["status"]["allowed"], true, "{yes}");
    assert!(
        yes["status"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("RoleBinding \"team-a-fleet-team/team-a\"")),
        "{yes}"
    );
    for (namespace, verb, resource) in [
        ("team-b", "list", "edgeworkloads"),
        ("", "list", "edgeworkloads"),
        ("team-a", "delete", "edgedevices"),
    ] {
        let no = can_i(&server, &alice, ask(namespace, verb, resource)).await;
        assert_eq!(
            no["status"]["allowed"], false,
            "{namespace} {verb} {resource}: {no}"
        );
    }
    let metrics = can_i(
        &server,
        &alice,
        json!({"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}),
    )
    .await;
    assert_eq!(metrics["status"]["allowed"], false);
    let viewer = server.token(TokenRole::Viewer).await;
    let scrape = can_i(
        &server,
        &viewer,
        json!({"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}),
    )
    .await;
    assert_eq!(scrape["status"]["allowed"], true);
    // A review without attributes names the field.
    let bad = server
        .with_token(Method::POST, SSAR, &alice)
        .json(&json!({"spec": {}}))
        .send()
        .await
        .expect("review");
    let status = expect_status(bad, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    assert_eq!(
        status["details"]["causes"][0]["field"], "spec.resourceAttributes",
        "{status}"
    );
    server.stop().await;
}

#[tokio::test]
async fn built_in_cluster_roles_are_listed_and_read_only() {
    let server = TestServer::start().await;
    let list = expect_json(
        server
            .admin(Method::GET, &format!("{RBAC}/clusterroles"))
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    let listed = names(&list);
    for role in [
        "flotta:admin",
        "flotta:operator",
        "flotta:viewer",
        "flotta:metrics",
        "flotta:basic-user",
    ] {
        assert!(listed.iter().any(|n| n == role), "{role} in {listed:?}");
    }
    let bindings = expect_json(
        server
            .admin(Method::GET, &format!("{RBAC}/clusterrolebindings"))
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    let viewer_binding = bindings["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|b| b["metadata"]["name"] == "flotta:viewer")
        .expect("flotta:viewer binding");
    assert_eq!(viewer_binding["subjects"][0]["name"], "flotta:viewers");
    let one = expect_json(
        server
            .admin(Method::GET, &format!("{RBAC}/clusterroles/flotta:viewer"))
            .send()
            .await
            .expect("get"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(one["kind"], "ClusterRole");
    for method in [Method::DELETE, Method::PUT] {
        let refused = server
            .admin(
                method.clone(),
                &format!("{RBAC}/clusterroles/flotta:viewer"),
            )
            .json(&one)
            .send()
            .await
            .expect("write");
        expect_status(refused, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed").await;
    }
    // The operator may not grant itself more.
    let operator = server.token(TokenRole::Operator).await;
    let escalation = server
        .with_token(Method::POST, &format!("{RBAC}/clusterrolebindings"), &operator)
        .json(&json!({"metadata": {"name": "me-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flotta:admin"},
            "subjects": [{"kind": "Group", "name": "flotta:operators"}]}))
        .send()
        .await
        .expect("create");
    expect_status(escalation, StatusCode::FORBIDDEN, "Forbidden").await;
    server.stop().await;
}

#[tokio::test]
async fn bad_rbac_objects_name_the_field() {
    let server = TestServer::start().await;
    let cases = [
        (
            format!("{RBAC}/namespaces/team-a/roles"),
            json!({"metadata": {"name": "thief"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "steal"]}]}),
            "rules[0].verbs[1]",
        ),
        (
            format!("{RBAC}/namespaces/team-a/rolebindings"),
            json!({"metadata": {"name": "dangling"},
                   "subjects": [{"kind": "User", "name": "alice"}]}),
            "roleRef",
        ),
        (
            format!("{RBAC}/clusterrolebindings"),
            json!({"metadata": {"name": "wrong-kind"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
                   "subjects": [{"kind": "User", "name": "alice"}]}),
            "roleRef.kind",
        ),
        (
            format!("{RBAC}/clusterroles"),
            json!({"metadata": {"name": "flotta:root"}, "rules": []}),
            "metadata.name",
        ),
        (
            format!("{RBAC}/namespaces/team-a/rolebindings"),
            json!({"metadata": {"name": "robots"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
                   "subjects": [{"kind": "Robot", "name": "r2"}]}),
            "subjects[0].kind",
        ),
    ];
    for (path, body, field) in cases {
        let refused = server
            .admin(Method::POST, &path)
            .json(&body)
            .send()
            .await
            .expect("create");
        let status = expect_status(refused, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
        let fields: Vec<&str> = status["details"]["causes"]
            .as_array()
            .expect("causes")
            .iter()
            .filter_map(|c| c["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{path}: {field} in {status}");
    }
    // Cluster-scoped kinds have no namespaced path, and namespaced ones need one.
    assert_eq!(
        status_of(
            &server,
            &server.admin_token,
            Method::GET,
            &format!("{RBAC}/namespaces/a/clusterroles")
        )
        .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server
            .admin(Method::POST, &format!("{RBAC}/roles"))
            .json(&team_role("a"))
            .send()
            .await
            .expect("create")
            .status(),
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}
