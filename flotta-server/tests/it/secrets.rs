//! Secrets and config maps: served at `/api/v1`, sealed at rest (a database dump
//! holds no value), refused to viewers, and rendered to the devices whose workloads
//! reference them; a missing reference keeps devices on their last configuration.
//! Written once and run on SQLite and PostgreSQL (`secret_tests!`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flotta_server::config::DatabaseUrl;
use flotta_server::store::TokenRole;
use flotta_testing::{NAMESPACE, TestServer, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_harness::{expect_json, expect_status};

/// A value no other fixture contains, searched for in dumps and answers.
const PLAINTEXT: &str = "s3cr3t-plaintext-5a1f9d";

macro_rules! secret_tests {
    (@case [$($attr:tt)*] $database:expr; $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $case() {
            let server = flotta_testing::TestServer::start_on($database).await;
            crate::secrets::$case(server).await;
        }
    };
    (@cases $attrs:tt $database:expr) => {
        $crate::secrets::secret_tests!(@case $attrs $database; secrets_are_sealed_at_rest_and_hidden_from_viewers);
        $crate::secrets::secret_tests!(@case $attrs $database; a_missing_secret_keeps_devices_on_their_last_configuration);
    };
    (sqlite) => {
        $crate::secrets::secret_tests!(@cases [] flotta_testing::Database::Sqlite);
    };
    (postgres) => {
        $crate::secrets::secret_tests!(
            @cases [#[ignore = "needs PostgreSQL: FLOTTA_TEST_POSTGRES_URL (scripts/test.sh runs it)"]]
            flotta_testing::Database::fresh_postgres().await
        );
    };
}
pub(crate) use secret_tests;

mod sqlite {
    crate::secrets::secret_tests!(sqlite);
}

#[cfg(feature = "postgres")]
mod postgres {
    crate::secrets::secret_tests!(postgres);
}

fn core_collection(namespace: &str, plural: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/{plural}")
}

fn core_object(namespace: &str, plural: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/{plural}/{name}")
}

/// Every byte the database holds: the SQLite files, or `pg_dump` of the database.
fn database_dump(server: &TestServer) -> Vec<u8> {
    match &server.config().database {
        DatabaseUrl::Sqlite(path) => {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                let file = format!("{}{suffix}", path.display());
                if let Ok(content) = std::fs::read(&file) {
                    bytes.extend(content);
                }
            }
            assert!(!bytes.is_empty(), "no SQLite file at {}", path.display());
            bytes
        }
        DatabaseUrl::Postgres(url) => {
            let output = std::process::Command::new("pg_dump")
                .arg(url)
                .output()
                .expect("pg_dump runs (Debian's postgresql-client)");
            assert!(
                output.status.success(),
                "pg_dump failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            output.stdout
        }
        other => panic!("no dump for {other}"),
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

pub async fn secrets_are_sealed_at_rest_and_hidden_from_viewers(server: TestServer) {
    let encoded = STANDARD.encode(PLAINTEXT);
    let created = expect_json(
        server
            .admin(Method::POST, &core_collection("fleet", "secrets"))
            .json(&json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db", "labels": {"app": "db"}},
                "type": "Opaque",
                "stringData": {"password": PLAINTEXT},
            }))
            .send()
            .await
            .expect("create secret"),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        created["data"]["password"], encoded,
        "stringData folds into data"
    );
    assert!(created.get("stringData").is_none());
    let path = core_object("fleet", "secrets", "db");
    let read = expect_json(
        server.admin(Method::GET, &path).send().await.expect("get"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["data"]["password"], encoded);
    let selected = expect_json(
        server
            .admin(Method::GET, &core_collection("fleet", "secrets"))
            .query(&[
                ("labelSelector", "app=db"),
                ("fieldSelector", "type=Opaque"),
            ])
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(selected["items"].as_array().map(Vec::len), Some(1));

    // The config map kind sits beside it.
    let config_map = expect_json(
        server
            .admin(Method::POST, &core_collection("fleet", "configmaps"))
            .json(&json!({"metadata": {"name": "app"}, "data": {"mode": "fast"}}))
            .send()
            .await
            .expect("create config map"),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(config_map["apiVersion"], "v1");

    // Each kind lives under its own group only.
    let misplaced = server
        .admin(
            Method::GET,
            "/apis/management.project-flotta.io/v1alpha1/namespaces/fleet/secrets/db",
        )
        .send()
        .await
        .expect("misplaced");
    expect_status(misplaced, StatusCode::NOT_FOUND, "NotFound").await;

    // Viewers may list config maps but not read secrets.
    let viewer = server.token(TokenRole::Viewer).await;
    for secret_path in [path.clone(), core_collection("fleet", "secrets")] {
        let refused = server
            .with_token(Method::GET, &secret_path, &viewer)
            .send()
            .await
            .expect("viewer read");
        let status = expect_status(refused, StatusCode::FORBIDDEN, "Forbidden").await;
        assert!(!status.to_string().contains(&encoded));
    }
    let maps = server
        .with_token(
            Method::GET,
            &core_collection("fleet", "configmaps"),
            &viewer,
        )
        .send()
        .await
        .expect("viewer lists config maps");
    assert_eq!(maps.status(), StatusCode::OK);
    let operator = server.token(TokenRole::Operator).await;
    let by_operator = server
        .with_token(Method::GET, &path, &operator)
        .send()
        .await
        .expect("operator read");
    assert_eq!(by_operator.status(), StatusCode::OK);

    // A bad value is refused naming the field, never echoing the value.
    let bad = server
        .admin(Method::POST, &core_collection("fleet", "secrets"))
        .json(&json!({"metadata": {"name": "bad"}, "data": {"key": format!("{PLAINTEXT}!!")}}))
        .send()
        .await
        .expect("bad secret");
    let status = expect_status(bad, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    assert!(!status.to_string().contains(PLAINTEXT), "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "data.key");

    // An update is sealed too, and the dump holds no value in any form.
    let mut changed = read.clone();
    changed["data"]["password"] = json!(STANDARD.encode(format!("{PLAINTEXT}-2")));
    let replaced = server
        .admin(Method::PUT, &path)
        .json(&changed)
        .send()
        .await
        .expect("replace");
    assert_eq!(replaced.status(), StatusCode::OK);
    let dump = database_dump(&server);
    for needle in [
        PLAINTEXT.to_owned(),
        encoded.clone(),
        STANDARD.encode(format!("{PLAINTEXT}-2")),
    ] {
        assert!(!contains(&dump, &needle), "the database holds {needle:?}");
    }
    assert!(
        contains(&dump, flotta_server::store::SEALED_FIELD),
        "the secret is in the dump, sealed"
    );
    server.stop().await;
}

/// Polls the device's configuration until `done` holds, long-polling with its ETag
/// as a device does; returns the configuration message.
async fn config_until(
    server: &TestServer,
    device: &reqwest::Client,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let url = server.edge_url(&format!("/data/{id}/in"));
    let mut tag: Option<String> = None;
    for _ in 0..100 {
        let mut request = device.get(format!("{url}?wait=10"));
        if let Some(tag) = &tag {
            request = request.header("if-none-match", tag);
        }
        let response = request.send().await.expect("config poll");
        if response.status() == StatusCode::NOT_MODIFIED {
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK);
        tag = Some(flotta_testing::messages::etag(&response));
        let body: Value = response.json().await.expect("config json");
        if done(&body["content"]) {
            return body["content"].clone();
        }
    }
    panic!("the device's configuration never showed {what}");
}

fn images(config: &Value) -> Vec<String> {
    config["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            format!(
                "{}={}",
                w["name"].as_str().unwrap_or_default(),
                w["specification"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("app:2")
            )
        })
        .collect()
}

fn secret_names(config: &Value) -> Vec<&str> {
    config["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect()
}

fn workload(name: &str, device: &str, image: &str, secret: &str) -> Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name},
        "spec": {"type": "pod", "device": device, "pod": {"spec": {"containers": [{
            "name": "app", "image": image,
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}],
        }]}}},
    })
}

fn workloads_path() -> String {
    format!("/apis/management.project-flotta.io/v1alpha1/namespaces/{NAMESPACE}/edgeworkloads")
}

/// The workload's `ReferencesResolved` condition once it has `status`.
async fn references_condition(server: &TestServer, name: &str, status: &str) -> Value {
    let path = format!("{}/{name}", workloads_path());
    eventually(&format!("{name}'s ReferencesResolved={status}"), || {
        let request = server.admin(Method::GET, &path).send();
        async move {
            let body: Value = request.await.ok()?.json().await.ok()?;
            body["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "ReferencesResolved" && c["status"] == status)
                .cloned()
        }
    })
    .await
}

pub async fn a_missing_secret_keeps_devices_on_their_last_configuration(mut server: TestServer) {
    const ID: &str = "ref-device";
    let identity = server.enrol_and_register(ID).await;
    let device = server.edge_client(Some(&identity));
    let create = |plural: &'static str, body: Value| {
        let path = if plural == "secrets" {
            core_collection(NAMESPACE, plural)
        } else {
            workloads_path()
        };
        server.admin(Method::POST, &path).json(&body).send()
    };
    let secret = |name: &str, token: &str| json!({"metadata": {"name": name}, "stringData": {"token": token}});
    let response = create("secrets", secret("api", "t1"))
        .await
        .expect("secret");
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = create("edgeworkloads", workload("app", ID, "app:1", "api"))
        .await
        .expect("workload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let first = config_until(&server, &device, ID, "app with secret api", |c| {
        images(c) == ["app=false"] && secret_names(c) == ["api"]
    })
    .await;
    // Recorded as resolved (with its spec) before it changes.
    references_condition(&server, "app", "True").await;

    // The new revision needs a secret that does not exist yet: accepted (201/200).
    let app_path = format!("{}/app", workloads_path());
    let mut current = expect_json(
        server
            .admin(Method::GET, &app_path)
            .send()
            .await
            .expect("get"),
        StatusCode::OK,
    )
    .await;
    current["spec"] = workload("app", ID, "app:2", "api2")["spec"].clone();
    let updated = server
        .admin(Method::PUT, &app_path)
        .json(&current)
        .send()
        .await
        .expect("update");
    assert_eq!(updated.status(), StatusCode::OK);
    let fresh = create("edgeworkloads", workload("fresh", ID, "app:2", "missing"))
        .await
        .expect("fresh workload");
    assert_eq!(fresh.status(), StatusCode::CREATED);
    // A marker workload after both, in the same change stream: once the device has
    // it, the view has seen the two changes before it.
    let marker = json!({
        "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeWorkload",
        "metadata": {"name": "marker"},
        "spec": {"type": "pod", "device": ID,
            "pod": {"spec": {"containers": [{"name": "m", "image": "marker:1"}]}}},
    });
    assert_eq!(
        create("edgeworkloads", marker)
            .await
            .expect("marker")
            .status(),
        StatusCode::CREATED
    );
    let held = config_until(&server, &device, ID, "the marker workload", |c| {
        images(c).iter().any(|w| w.starts_with("marker="))
    })
    .await;
    assert_eq!(
        images(&held),
        ["app=false", "marker=false"],
        "app keeps its running revision, fresh is not sent"
    );
    assert_eq!(secret_names(&held), ["api"]);
    assert_ne!(held["version"], first["version"]);

    // The workloads say what is missing.
    for (name, missing) in [("app", "api2"), ("fresh", "missing")] {
        let condition = references_condition(&server, name, "False").await;
        assert_eq!(condition["reason"], "DanglingReference");
        assert!(
            condition["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("secret '{missing}' does not exist"))),
            "{condition}"
        );
    }

    // Each is a MissingReference Warning event on the workload, naming the object.
    for (name, missing) in [("app", "api2"), ("fresh", "missing")] {
        let selector = format!(
            "involvedObject.kind=EdgeWorkload,involvedObject.name={name},reason=MissingReference"
        );
        let events = eventually(&format!("a MissingReference event about {name}"), || {
            let request = server
                .admin(Method::GET, &core_collection(NAMESPACE, "events"))
                .query(&[("fieldSelector", selector.as_str())])
                .send();
            async move {
                let list: Value = request.await.ok()?.json().await.ok()?;
                let items = list["items"].as_array()?.clone();
                (!items.is_empty()).then_some(items)
            }
        })
        .await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["type"], "Warning");
        let message = events[0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("secret '{missing}' does not exist")),
            "{message}"
        );
        assert!(
            !message.contains("t1"),
            "no secret value in events: {message}"
        );
    }

    // A restarted server (or another replica) has no rendering in memory: it sends
    // the last resolved revision the status records.
    server.restart().await;
    let device = server.edge_client(Some(&identity));
    let after_restart = config_until(&server, &device, ID, "a configuration", |_| true).await;
    assert_eq!(images(&after_restart), ["app=false", "marker=false"]);
    assert_eq!(secret_names(&after_restart), ["api"]);
    assert_eq!(after_restart["version"], held["version"]);

    // Creating the secret makes the device converge on the new revision.
    let response = server
        .admin(Method::POST, &core_collection(NAMESPACE, "secrets"))
        .json(&secret("api2", "t2"))
        .send()
        .await
        .expect("secret");
    assert_eq!(response.status(), StatusCode::CREATED);
    let converged = config_until(&server, &device, ID, "app:2 with secret api2", |c| {
        images(c).contains(&"app=true".to_owned())
    })
    .await;
    assert_eq!(secret_names(&converged), ["api2"]);
    let token = converged["secrets"][0]["data"]
        .as_str()
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .expect("secret data as JSON");
    assert_eq!(token["token"], STANDARD.encode("t2"));
    server.stop().await;
}
