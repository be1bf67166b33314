//! The management API's audit log, read back from its file: every mutating request
//! as one JSON line (who, verb, object, outcome, request id), refusals included,
//! reads of secrets when configured, and never a secret's data.

use flotta_server::api::audit::{AuditConfig, AuditSink};
use flotta_server::store::TokenRole;
use flotta_testing::{Database, TestServer, test_config};
use reqwest::Method;
use serde_json::{Value, json};

const WORKLOADS: &str =
    "/apis/management.project-flotta.io/v1alpha1/namespaces/audit/edgeworkloads";
const SECRETS: &str = "/api/v1/namespaces/audit/secrets";

fn records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[tokio::test]
async fn mutations_refusals_and_secret_reads_are_recorded_without_secret_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit").join("api.log");
    let mut config = test_config(&dir.path().join("server"), &Database::Sqlite);
    config.audit = Some(AuditConfig {
        sink: AuditSink::File {
            path: log.clone(),
            max_bytes: 1024 * 1024,
            keep: 2,
        },
        secret_reads: true,
    });
    let server = TestServer::start_with(config).await;
    let viewer = server.token(TokenRole::Viewer).await;

    let workload = json!({"apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload", "metadata": {"name": "web", "namespace": "audit"},
        "spec": {"type": "pod", "pod": {"spec": {"containers": [{"name": "w", "image": "x"}]}}}});
    let created = server
        .admin(Method::POST, WORKLOADS)
        .header("x-request-id", "req-create-web")
        .json(&workload)
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    assert_eq!(
        created
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-create-web")
    );
    let denied = server
        .with_token(Method::DELETE, &format!("{WORKLOADS}/web"), &viewer)
        .send()
        .await
        .expect("delete as viewer");
    assert_eq!(denied.status(), 403);
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "audit"},
        "stringData": {"password": "hunter2-not-in-the-log"}});
    let stored = server
        .admin(Method::POST, SECRETS)
        .json(&secret)
        .send()
        .await
        .expect("create secret");
    assert_eq!(stored.status(), 201);
    let read = server
        .admin(Method::GET, &format!("{SECRETS}/db"))
        .send()
        .await
        .expect("read secret");
    assert_eq!(read.status(), 200);
    // A read of anything else is not audited.
    let listed = server
        .admin(Method::GET, WORKLOADS)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.status(), 200);
    let deleted = server
        .admin(Method::DELETE, &format!("{WORKLOADS}/web"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 200);

    let text = std::fs::read_to_string(&log).expect("audit log");
    assert!(
        !text.contains("hunter2"),
        "secret data in the audit log:\n{text}"
    );
    let seen: Vec<(String, String, String, u64, String)> = records(&log)
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (
                s("verb"),
                s("resource"),
                s("name"),
                r["code"].as_u64().unwrap_or(0),
                s("outcome"),
            )
        })
        .collect();
    let expect = |verb: &str, resource: &str, name: &str, code: u64, outcome: &str| {
        (
            verb.to_owned(),
            resource.to_owned(),
            name.to_owned(),
            code,
            outcome.to_owned(),
        )
    };
    assert_eq!(
        seen,
        vec![
            expect("create", "edgeworkloads", "", 201, "allowed"),
            expect("delete", "edgeworkloads", "web", 403, "denied"),
            expect("create", "secrets", "", 201, "allowed"),
            expect("get", "secrets", "db", 200, "allowed"),
            expect("delete", "edgeworkloads", "web", 200, "allowed"),
        ]
    );
    let all = records(&log);
    assert_eq!(all[0]["requestId"], "req-create-web");
    assert_eq!(all[0]["namespace"], "audit");
    assert_eq!(all[0]["apiGroup"], "management.project-flotta.io");
    assert_eq!(all[0]["role"], "admin");
    assert_eq!(all[1]["role"], "viewer", "the refused caller is named");
    assert!(all[1]["user"].as_str().is_some_and(|u| !u.is_empty()));
    assert_eq!(all[2]["apiGroup"], "");
    server.stop().await;
}
