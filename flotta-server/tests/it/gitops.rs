//! GitOps against real git repositories: `file://` bare repositories, `git daemon`
//! and `git http-backend` behind HTTPS with a bearer token. What a sync did is read
//! back where a user would see it: the objects through the management API, and
//! the sync's status.

use std::time::Duration;

use flotta_core::gitops::OWNER_LABEL;
use flotta_testing::git::{GitDaemon, GitHttps, GitRepo};
use flotta_testing::{Database, TestServer, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NS: &str = "default";
const GROUP: &str = "/apis/management.project-flotta.io/v1alpha1";

fn path(plural: &str, name: Option<&str>) -> String {
    let base = if matches!(plural, "configmaps" | "secrets") {
        format!("/api/v1/namespaces/{NS}/{plural}")
    } else {
        format!("{GROUP}/namespaces/{NS}/{plural}")
    };
    match name {
        Some(name) => format!("{base}/{name}"),
        None => base,
    }
}

async fn create(server: &TestServer, plural: &str, body: Value) {
    let response = server
        .admin(Method::POST, &path(plural, None))
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, StatusCode::CREATED, "{plural}: {text}");
}

async fn get(server: &TestServer, plural: &str, name: &str) -> Option<Value> {
    let response = server
        .admin(Method::GET, &path(plural, Some(name)))
        .send()
        .await
        .expect("get");
    match response.status() {
        StatusCode::NOT_FOUND => None,
        StatusCode::OK => Some(response.json().await.expect("json")),
        other => panic!("GET {plural}/{name}: {other}"),
    }
}

fn workload(name: &str, image: &str) -> String {
    format!(
        "apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: {name}
  labels: {{app: fleet}}
spec:
  type: pod
  deviceSelector:
    matchLabels: {{site: north}}
  pod:
    spec:
      containers:
      - name: {name}
        image: {image}
"
    )
}

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  labels: {{app: fleet}}
data:
  greeting: {value}
"
    )
}

fn repository(name: &str, url: &str, secret: Option<&str>) -> Value {
    let mut body = json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name},
        "spec": {"url": url, "type": "git"},
    });
    if let Some(secret) = secret {
        body["spec"]["secretRef"] = json!({"name": secret});
    }
    body
}

fn resource_sync(name: &str, repository: &str, poll: &str) -> Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "ResourceSync",
        "metadata": {"name": name},
        "spec": {
            "repository": repository,
            "targetRevision": "main",
            "path": "/fleet",
            "pollInterval": poll,
            "webhookSecretRef": {"name": "hook"},
        },
    })
}

/// The sync's status once it observed `commit`.
async fn synced_to(server: &TestServer, sync: &str, commit: &str) -> Value {
    eventually(&format!("{sync} to apply {commit}"), || async {
        let status = get(server, "resourcesyncs", sync).await?["status"].clone();
        (status["observedCommit"] == commit).then_some(status)
    })
    .await
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    condition_if_any(status, type_).unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// The condition, when the status has one yet.
fn condition_if_any<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
}

fn outcome(status: &Value, kind: &str, name: &str) -> String {
    status["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["kind"] == kind && r["name"] == name))
        .and_then(|r| r["outcome"].as_str())
        .unwrap_or_else(|| panic!("no outcome for {kind} {name} in {status}"))
        .to_owned()
}

fn image(workload: &Value) -> &str {
    workload["spec"]["pod"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("image")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_creates_configures_and_prunes_and_leaves_other_objects_alone() {
    let server = TestServer::builder()
        .gitops_file_repositories(true)
        .start()
        .await;
    let repo = GitRepo::new("fleet");
    repo.write("fleet/web.yaml", &workload("web", "quay.io/example/web:1"));
    repo.write("fleet/config/site.yaml", &config_map("site", "hello"));
    repo.write("fleet/config/taken.yaml", &config_map("taken", "from-git"));
    repo.write("README.md", "not a manifest\n");
    repo.write(
        "elsewhere/other.yaml",
        &config_map("elsewhere", "outside the path"),
    );
    let first = repo.commit("first");
    // Made by hand: one with the labels git's objects carry, one with a name git
    // also defines.
    create(
        &server,
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "by-hand", "labels": {"app": "fleet"}},
               "data": {"greeting": "mine"}}),
    )
    .await;
    create(
        &server,
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "taken"}, "data": {"greeting": "by hand"}}),
    )
    .await;
    create(
        &server,
        "repositories",
        repository("fleet", &repo.file_url(), None),
    )
    .await;
    create(
        &server,
        "resourcesyncs",
        resource_sync("fleet", "fleet", "1s"),
    )
    .await;

    let status = synced_to(&server, "fleet", &first).await;
    assert_eq!(outcome(&status, "EdgeWorkload", "web"), "created");
    assert_eq!(outcome(&status, "ConfigMap", "site"), "created");
    assert_eq!(outcome(&status, "ConfigMap", "taken"), "failed", "{status}");
    assert_eq!(condition(&status, "Synced")["status"], "False", "{status}");
    assert!(
        condition(&status, "Synced")["message"]
            .as_str()
            .is_some_and(|m| m.contains("not managed by this ResourceSync")),
        "{status}"
    );
    let web = get(&server, "edgeworkloads", "web")
        .await
        .expect("web created");
    assert_eq!(web["metadata"]["labels"][OWNER_LABEL], "fleet");
    assert_eq!(image(&web), "quay.io/example/web:1");
    let taken = get(&server, "configmaps", "taken").await.expect("taken");
    assert_eq!(taken["data"]["greeting"], "by hand", "not overwritten");
    assert!(
        get(&server, "configmaps", "elsewhere").await.is_none(),
        "outside spec.path"
    );
    let repository = get(&server, "repositories", "fleet")
        .await
        .expect("repository");
    assert_eq!(
        condition(&repository["status"], "Accessible")["status"],
        "True",
        "{repository}"
    );

    // A change is configured; the object not ours is dropped from git.
    repo.write("fleet/web.yaml", &workload("web", "quay.io/example/web:2"));
    repo.remove("fleet/config/taken.yaml");
    let second = repo.commit("web 2");
    let status = synced_to(&server, "fleet", &second).await;
    assert_eq!(outcome(&status, "EdgeWorkload", "web"), "configured");
    assert_eq!(outcome(&status, "ConfigMap", "site"), "unchanged");
    assert_eq!(condition(&status, "Synced")["status"], "True", "{status}");
    let web = get(&server, "edgeworkloads", "web").await.expect("web");
    assert_eq!(image(&web), "quay.io/example/web:2");
    assert!(
        get(&server, "configmaps", "taken").await.is_some(),
        "never pruned: not owned"
    );

    // A file deleted from git is pruned; the objects made by hand stay.
    repo.remove("fleet/config/site.yaml");
    let third = repo.commit("no site");
    let status = synced_to(&server, "fleet", &third).await;
    assert_eq!(outcome(&status, "ConfigMap", "site"), "pruned");
    assert!(get(&server, "configmaps", "site").await.is_none(), "pruned");
    assert!(
        get(&server, "configmaps", "by-hand").await.is_some(),
        "left alone"
    );
    assert!(
        get(&server, "configmaps", "taken").await.is_some(),
        "left alone"
    );

    // A broken manifest: nothing of the commit is applied, the status names the
    // file and the document.
    repo.write("fleet/web.yaml", &workload("web", "quay.io/example/web:3"));
    repo.write(
        "fleet/broken.yaml",
        &format!(
            "{}---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata: {{name: bad}}\nspec: {{type: vm, pod: {{spec: {{containers: [{{name: c, image: x}}]}}}}}}\n",
            config_map("fine", "ok")
        ),
    );
    let fourth = repo.commit("broken");
    let status = eventually("the broken commit to be reported", || async {
        let status = get(&server, "resourcesyncs", "fleet").await?["status"].clone();
        let parsed = condition_if_any(&status, "ResourceParsed")?;
        (parsed["status"] == "False").then_some(status)
    })
    .await;
    assert_eq!(status["observedCommit"], third, "the applied commit stays");
    let message = condition(&status, "ResourceParsed")["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(
        message.contains("fleet/broken.yaml (document 1)"),
        "{message}"
    );
    assert!(message.contains("spec.type"), "{message}");
    assert!(
        condition(&status, "Synced")["message"]
            .as_str()
            .is_some_and(|m| m.contains(&fourth)),
        "{status}"
    );
    let web = get(&server, "edgeworkloads", "web").await.expect("web");
    assert_eq!(
        image(&web),
        "quay.io/example/web:2",
        "nothing of the broken commit"
    );
    assert!(
        get(&server, "configmaps", "fine").await.is_none(),
        "nothing of the broken commit"
    );

    // Fixed: applied again.
    repo.remove("fleet/broken.yaml");
    let fifth = repo.commit("fixed");
    let status = synced_to(&server, "fleet", &fifth).await;
    assert_eq!(condition(&status, "ResourceParsed")["status"], "True");
    let web = get(&server, "edgeworkloads", "web").await.expect("web");
    assert_eq!(image(&web), "quay.io/example/web:3");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_the_shared_secret_syncs_at_once() {
    let server = TestServer::builder()
        .gitops_file_repositories(true)
        .start()
        .await;
    let repo = GitRepo::new("fleet");
    repo.write("fleet/web.yaml", &workload("web", "quay.io/example/web:1"));
    let first = repo.commit("first");
    create(
        &server,
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook"},
               "stringData": {"token": "s3cret-hook"}}),
    )
    .await;
    create(
        &server,
        "repositories",
        repository("fleet", &repo.file_url(), None),
    )
    .await;
    // Polls once an hour: only the first sync and the webhook make it sync.
    create(
        &server,
        "resourcesyncs",
        resource_sync("fleet", "fleet", "1h"),
    )
    .await;
    synced_to(&server, "fleet", &first).await;

    repo.write("fleet/web.yaml", &workload("web", "quay.io/example/web:2"));
    let second = repo.commit("second");
    let hook = format!("{}/webhooks/resourcesyncs/{NS}/fleet", server.base);
    // No bearer token: git hosts cannot send one.
    let client = server.client.clone();
    let refused = client
        .post(&hook)
        .header("x-flotta-webhook-token", "wrong")
        .send()
        .await
        .expect("webhook");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let without = client.post(&hook).send().await.expect("webhook");
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let unknown = client
        .post(format!("{}/webhooks/resourcesyncs/{NS}/nope", server.base))
        .header("x-flotta-webhook-token", "s3cret-hook")
        .send()
        .await
        .expect("webhook");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let web = get(&server, "edgeworkloads", "web").await.expect("web");
    assert_eq!(
        image(&web),
        "quay.io/example/web:1",
        "no sync without the secret"
    );

    let accepted = client
        .post(&hook)
        .header("x-flotta-webhook-token", "s3cret-hook")
        .send()
        .await
        .expect("webhook");
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    flotta_testing::eventually_within("the webhook's sync", Duration::from_secs(10), || async {
        let status = get(&server, "resourcesyncs", "fleet").await?["status"].clone();
        (status["observedCommit"] == second).then_some(())
    })
    .await;

    // GitHub's signature of the body.
    repo.write("fleet/web.yaml", &workload("web", "quay.io/example/web:3"));
    let third = repo.commit("third");
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = hmac_hex(b"s3cret-hook", body);
    let bad = client
        .post(&hook)
        .header(
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(b"other", body)),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("webhook");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let signed = client
        .post(&hook)
        .header("x-hub-signature-256", format!("sha256={signature}"))
        .body(body.to_vec())
        .send()
        .await
        .expect("webhook");
    assert_eq!(signed.status(), StatusCode::ACCEPTED);
    synced_to(&server, "fleet", &third).await;
    server.stop().await;
}

/// HMAC-SHA256, written out for the test from SHA-256 (RFC 2104).
fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_served_by_git_daemon_is_synced() {
    let server = TestServer::start().await;
    let repo = GitRepo::new("fleet");
    repo.write("fleet/site.yaml", &config_map("site", "over-git-protocol"));
    let commit = repo.commit("first");
    let daemon = GitDaemon::start(repo.root()).await;
    create(
        &server,
        "repositories",
        repository("fleet", &daemon.url(&repo.bare_name()), None),
    )
    .await;
    create(
        &server,
        "resourcesyncs",
        resource_sync("fleet", "fleet", "1s"),
    )
    .await;
    synced_to(&server, "fleet", &commit).await;
    let site = get(&server, "configmaps", "site").await.expect("site");
    assert_eq!(site["data"]["greeting"], "over-git-protocol");
    daemon.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_repository_is_read_with_the_token_and_ca_of_its_secret() {
    let server = TestServer::start().await;
    let repo = GitRepo::new("fleet");
    repo.write("fleet/site.yaml", &config_map("site", "over-https"));
    let commit = repo.commit("first");
    let https = GitHttps::start(repo.root(), "git-token-1").await;
    create(
        &server,
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-creds"},
               "stringData": {"token": "wrong-token", "ca.crt": https.ca_pem()}}),
    )
    .await;
    create(
        &server,
        "repositories",
        repository("fleet", &https.url(&repo.bare_name()), Some("git-creds")),
    )
    .await;
    create(
        &server,
        "resourcesyncs",
        resource_sync("fleet", "fleet", "1s"),
    )
    .await;

    // A wrong token: the repository is not accessible, nothing is applied.
    let status = eventually("the refused fetch to be reported", || async {
        let status = get(&server, "resourcesyncs", "fleet").await?["status"].clone();
        (condition_if_any(&status, "Accessible")?["status"] == "False").then_some(status)
    })
    .await;
    let message = condition(&status, "Accessible")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("git fetch"), "{message}");
    assert!(
        message.contains("Authentication failed"),
        "refused for the token: {message}"
    );
    assert!(
        !message.contains("wrong-token"),
        "no credential in the status: {message}"
    );
    assert!(get(&server, "configmaps", "site").await.is_none());
    let repository = eventually("the repository's condition", || async {
        let repository = get(&server, "repositories", "fleet").await?;
        (repository["status"]["conditions"][0]["status"] == "False").then_some(repository)
    })
    .await;
    assert_eq!(repository["status"]["conditions"][0]["type"], "Accessible");

    // The right token: synced.
    let mut secret = get(&server, "secrets", "git-creds").await.expect("secret");
    secret["stringData"] = json!({"token": "git-token-1"});
    let response = server
        .admin(Method::PUT, &path("secrets", Some("git-creds")))
        .json(&secret)
        .send()
        .await
        .expect("update secret");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap_or_default()
    );
    synced_to(&server, "fleet", &commit).await;
    let site = get(&server, "configmaps", "site").await.expect("site");
    assert_eq!(site["data"]["greeting"], "over-https");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_repositories_are_refused_unless_the_server_allows_them() {
    let server = TestServer::start().await;
    let repo = GitRepo::new("fleet");
    repo.write("fleet/site.yaml", &config_map("site", "local"));
    repo.commit("first");
    create(
        &server,
        "repositories",
        repository("fleet", &repo.file_url(), None),
    )
    .await;
    create(
        &server,
        "resourcesyncs",
        resource_sync("fleet", "fleet", "1s"),
    )
    .await;
    let status = eventually("the refusal to be reported", || async {
        let status = get(&server, "resourcesyncs", "fleet").await?["status"].clone();
        (condition_if_any(&status, "Accessible")?["status"] == "False").then_some(status)
    })
    .await;
    assert!(
        condition(&status, "Accessible")["message"]
            .as_str()
            .is_some_and(|m| m.contains("--gitops-file-repositories")),
        "{status}"
    );
    assert!(get(&server, "configmaps", "site").await.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_repositories_and_syncs_are_refused_with_the_field() {
    let server = TestServer::start().await;
    let response = server
        .admin(Method::POST, &path("repositories", None))
        .json(&repository(
            "bad",
            "https://me:pw@example.com/fleet.git",
            None,
        ))
        .send()
        .await
        .expect("create");
    let status: Value = response.json().await.expect("json");
    assert_eq!(status["code"], 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["field"], "spec.url",
        "{status}"
    );
    let mut sync = resource_sync("bad", "fleet", "soon");
    sync["spec"]["path"] = json!("fleet/../../etc");
    let response = server
        .admin(Method::POST, &path("resourcesyncs", None))
        .json(&sync)
        .send()
        .await
        .expect("create");
    let status: Value = response.json().await.expect("json");
    assert_eq!(status["code"], 422, "{status}");
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(fields.contains(&"spec.path"), "{status}");
    assert!(fields.contains(&"spec.pollInterval"), "{status}");
    server.stop().await;
}

/// Two replicas on one PostgreSQL database: only the leader syncs; once it is
/// killed, the other takes over and applies the next commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FLOTTA_TEST_POSTGRES_URL (scripts/postgres.sh)"]
async fn one_replica_syncs_and_another_takes_over_when_it_is_killed() {
    let first = TestServer::builder()
        .database(Database::fresh_postgres().await)
        .leader_lease(Duration::from_secs(2))
        .gitops_file_repositories(true)
        .start()
        .await;
    eventually("the first replica leads", || async {
        first.running().leadership().is_leader().then_some(())
    })
    .await;
    let second = first.replica().await;
    assert!(
        !second.running().leadership().is_leader(),
        "one leader at a time"
    );
    let repo = GitRepo::new("fleet");
    repo.write("fleet/site.yaml", &config_map("site", "one"));
    let commit = repo.commit("first");
    create(
        &second,
        "repositories",
        repository("fleet", &repo.file_url(), None),
    )
    .await;
    create(
        &second,
        "resourcesyncs",
        resource_sync("fleet", "fleet", "1s"),
    )
    .await;
    synced_to(&second, "fleet", &commit).await;
    let mirrors = |server: &TestServer| {
        server
            .data_dir()
            .join(flotta_server::gitops::MIRRORS_DIR)
            .exists()
    };
    assert!(mirrors(&first), "the leader fetched");
    assert!(!mirrors(&second), "the other replica did not");

    first.kill();
    repo.write("fleet/site.yaml", &config_map("site", "two"));
    let next = repo.commit("second");
    synced_to(&second, "fleet", &next).await;
    assert!(second.running().leadership().is_leader(), "took over");
    assert!(mirrors(&second), "the new leader fetched");
    let site = get(&second, "configmaps", "site").await.expect("site");
    assert_eq!(site["data"]["greeting"], "two");
    second.stop().await;
}

/// Writing a sync lets the server write workloads, sets, config maps and secrets
/// for the writer, and a repository lets it read a secret: RBAC must allow the
/// writer those too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_or_repository_cannot_do_more_than_its_writer_may() {
    let server = TestServer::start().await;
    let gitops_only = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "gitops"},
        "rules": [
            {"apiGroups": ["management.project-flotta.io"],
             "resources": ["repositories", "resourcesyncs", "edgeworkloads", "edgedevicesets"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["configmaps"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        ],
    });
    let binding = |role: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "deployers"}],
        })
    };
    let rbac = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}");
    for (plural, body) in [("roles", gitops_only), ("rolebindings", binding("gitops"))] {
        let response = server
            .admin(Method::POST, &format!("{rbac}/{plural}"))
            .json(&body)
            .send()
            .await
            .expect("rbac");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let token = crate::rbac::team_token(&server, "dana", &["deployers"]).await;
    let as_dana = |plural: &str, body: &Value| {
        server
            .with_token(Method::POST, &path(plural, None), &token)
            .json(body)
            .send()
    };
    let refused = as_dana("resourcesyncs", &resource_sync("fleet", "fleet", "1m"))
        .await
        .expect("create");
    let status: Value = refused.json().await.expect("json");
    assert_eq!(status["code"], 403, "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"secrets\""), "{message}");
    assert!(message.contains("on your behalf"), "{message}");
    let refused = as_dana(
        "repositories",
        &repository("fleet", "https://127.0.0.1:9/x.git", None),
    )
    .await
    .expect("create");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(get(&server, "resourcesyncs", "fleet").await.is_none());

    // With secrets too, both are accepted.
    let secrets = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "secrets"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
    });
    for (plural, body) in [("roles", secrets), ("rolebindings", binding("secrets"))] {
        let response = server
            .admin(Method::POST, &format!("{rbac}/{plural}"))
            .json(&body)
            .send()
            .await
            .expect("rbac");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    flotta_testing::eventually("the new role to apply", || async {
        let response = as_dana("resourcesyncs", &resource_sync("fleet", "fleet", "1h"))
            .await
            .expect("create");
        (response.status() == StatusCode::CREATED).then_some(())
    })
    .await;
    let response = as_dana(
        "repositories",
        &repository("fleet", "https://127.0.0.1:9/x.git", None),
    )
    .await
    .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    server.stop().await;
}
