//! Management API behaviour, written once and run against every storage backend
//! (`api_tests!` expands to one `#[tokio::test]` per case).

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::api_harness::{
    TestServer, collection, expect_json, expect_status, object_path, sample_objects,
};
use flotta_server::store::TokenRole;

const MERGE_PATCH: &str = "application/merge-patch+json";

/// Expands to one test per case for a backend: `api_tests!(sqlite)`, or
/// `api_tests!(postgres)` whose tests are ignored unless asked for (they need the
/// PostgreSQL test cluster, see `flotta_testing::postgres`).
macro_rules! api_tests {
    (@case [$($attr:tt)*] $database:expr; $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $case() {
            let server = flotta_testing::TestServer::start_on($database).await;
            crate::api_suite::$case(server).await;
        }
    };
    (@cases $attrs:tt $database:expr) => {
        $crate::api_suite::api_tests!(@case $attrs $database; crud_for_every_kind);
        $crate::api_suite::api_tests!(@case $attrs $database; stale_resource_version_is_refused_with_409);
        $crate::api_suite::api_tests!(@case $attrs $database; merge_patch_changes_only_what_it_names);
        $crate::api_suite::api_tests!(@case $attrs $database; list_filters_by_label_and_field_selectors_and_pages);
        $crate::api_suite::api_tests!(@case $attrs $database; watch_streams_changes_and_resumes_from_a_resource_version);
        $crate::api_suite::api_tests!(@case $attrs $database; role_matrix_is_enforced);
        $crate::api_suite::api_tests!(@case $attrs $database; yaml_bodies_are_accepted);
        $crate::api_suite::api_tests!(@case $attrs $database; invalid_objects_get_422_naming_the_field);
        $crate::api_suite::api_tests!(@case $attrs $database; data_survives_a_restart);
        $crate::api_suite::api_tests!(@case $attrs $database; approval_decides_an_enrolment_in_one_call);
    };
    (sqlite) => {
        $crate::api_suite::api_tests!(@cases [] flotta_testing::Database::Sqlite);
    };
    (postgres) => {
        $crate::api_suite::api_tests!(
            @cases [#[ignore = "needs PostgreSQL: FLOTTA_TEST_POSTGRES_URL (scripts/test.sh runs it)"]]
            flotta_testing::Database::fresh_postgres().await
        );
    };
}
pub(crate) use api_tests;

pub async fn crud_for_every_kind(server: TestServer) {
    for (plural, body) in sample_objects("obj-1") {
        let created = expect_json(
            server
                .admin(Method::POST, &collection("fleet", plural))
                .json(&body)
                .send()
                .await
                .expect("create"),
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(created["metadata"]["name"], "obj-1", "{plural}");
        assert_eq!(created["metadata"]["namespace"], "fleet");
        assert!(created["metadata"]["uid"].as_str().is_some());
        let rv = created["metadata"]["resourceVersion"]
            .as_str()
            .expect("resourceVersion")
            .to_owned();

        let path = object_path("fleet", plural, "obj-1");
        let read = expect_json(
            server.admin(Method::GET, &path).send().await.expect("get"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(read, created, "{plural}: read back what was created");

        let duplicate = server
            .admin(Method::POST, &collection("fleet", plural))
            .json(&body)
            .send()
            .await
            .expect("create again");
        expect_status(duplicate, StatusCode::CONFLICT, "AlreadyExists").await;

        let mut changed = read.clone();
        changed["metadata"]["labels"] = json!({"changed": "yes"});
        let replaced = expect_json(
            server
                .admin(Method::PUT, &path)
                .json(&changed)
                .send()
                .await
                .expect("put"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(replaced["metadata"]["labels"], json!({"changed": "yes"}));
        assert_ne!(replaced["metadata"]["resourceVersion"], json!(rv));

        let mut with_status = replaced.clone();
        with_status["status"] = json!({"conditions": []});
        if plural == "edgedevices" {
            with_status["status"] = json!({"phase": "up"});
        }
        let status_written = expect_json(
            server
                .admin(Method::PUT, &format!("{path}/status"))
                .json(&with_status)
                .send()
                .await
                .expect("put status"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(status_written["status"], with_status["status"], "{plural}");
        assert_eq!(
            status_written["metadata"]["generation"], replaced["metadata"]["generation"],
            "a status write keeps the generation"
        );

        let listed = expect_json(
            server
                .admin(Method::GET, &collection("fleet", plural))
                .send()
                .await
                .expect("list"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
        assert!(listed["kind"].as_str().is_some_and(|k| k.ends_with("List")));
        let everywhere = expect_json(
            server
                .admin(
                    Method::GET,
                    &format!("/apis/management.project-flotta.io/v1alpha1/{plural}"),
                )
                .send()
                .await
                .expect("list all"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(everywhere["items"][0]["metadata"]["name"], "obj-1");

        let deleted = server
            .admin(Method::DELETE, &path)
            .send()
            .await
            .expect("delete");
        assert_eq!(deleted.status(), StatusCode::OK);
        let gone = server.admin(Method::GET, &path).send().await.expect("get");
        let status = expect_status(gone, StatusCode::NOT_FOUND, "NotFound").await;
        assert_eq!(status["details"]["name"], "obj-1");
    }
    let unknown = server
        .admin(Method::GET, &collection("fleet", "pods"))
        .send()
        .await
        .expect("unknown plural");
    expect_status(unknown, StatusCode::NOT_FOUND, "NotFound").await;
    server.stop().await;
}

pub async fn stale_resource_version_is_refused_with_409(server: TestServer) {
    let (plural, body) = sample_objects("w1").swap_remove(2);
    let created = expect_json(
        server
            .admin(Method::POST, &collection("fleet", plural))
            .json(&body)
            .send()
            .await
            .expect("create"),
        StatusCode::CREATED,
    )
    .await;
    let path = object_path("fleet", plural, "w1");
    let mut first = created.clone();
    first["spec"]["device"] = json!("first");
    expect_json(
        server
            .admin(Method::PUT, &path)
            .json(&first)
            .send()
            .await
            .expect("put"),
        StatusCode::OK,
    )
    .await;
    // `created` still carries the old resourceVersion.
    let mut second = created.clone();
    second["spec"]["device"] = json!("second");
    let stale = server
        .admin(Method::PUT, &path)
        .json(&second)
        .send()
        .await
        .expect("stale put");
    expect_status(stale, StatusCode::CONFLICT, "Conflict").await;
    let stale_patch = server
        .admin(Method::PATCH, &path)
        .header(header::CONTENT_TYPE, MERGE_PATCH)
        .body(
            json!({"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"device": "third"}})
                .to_string(),
        )
        .send()
        .await
        .expect("stale patch");
    expect_status(stale_patch, StatusCode::CONFLICT, "Conflict").await;
    let current = expect_json(
        server.admin(Method::GET, &path).send().await.expect("get"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(current["spec"]["device"], "first");
    server.stop().await;
}

pub async fn merge_patch_changes_only_what_it_names(server: TestServer) {
    let (plural, mut body) = sample_objects("d1").swap_remove(0);
    body["metadata"]["labels"] = json!({"site": "lab", "tier": "edge"});
    expect_json(
        server
            .admin(Method::POST, &collection("fleet", plural))
            .json(&body)
            .send()
            .await
            .expect("create"),
        StatusCode::CREATED,
    )
    .await;
    let path = object_path("fleet", plural, "d1");
    let patched = expect_json(
        server
            .admin(Method::PATCH, &path)
            .header(header::CONTENT_TYPE, MERGE_PATCH)
            .body(r#"{"metadata":{"labels":{"tier":null,"zone":"b"}},"spec":{"heartbeat":{"periodSeconds":15}}}"#)
            .send()
            .await
            .expect("patch"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"site": "lab", "zone": "b"})
    );
    assert_eq!(patched["spec"]["heartbeat"]["periodSeconds"], 15);
    assert_eq!(patched["spec"]["requestTime"], "2024-05-01T10:00:00Z");

    let status_patched = expect_json(
        server
            .admin(Method::PATCH, &format!("{path}/status"))
            .header(header::CONTENT_TYPE, MERGE_PATCH)
            .body(r#"{"status":{"phase":"up"}}"#)
            .send()
            .await
            .expect("patch status"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(status_patched["status"]["phase"], "up");
    assert_eq!(
        status_patched["metadata"]["labels"],
        json!({"site": "lab", "zone": "b"})
    );

    let plain_json = server
        .admin(Method::PATCH, &path)
        .json(&json!({"spec": {}}))
        .send()
        .await
        .expect("json patch");
    expect_status(
        plain_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
    )
    .await;
    server.stop().await;
}

pub async fn list_filters_by_label_and_field_selectors_and_pages(server: TestServer) {
    let (plural, template) = sample_objects("x").swap_remove(3);
    for i in 0..7 {
        let mut body = template.clone();
        body["metadata"]["name"] = json!(format!("req-{i}"));
        body["metadata"]["labels"] = json!({"batch": if i % 2 == 0 { "even" } else { "odd" }});
        body["spec"]["approved"] = json!(i < 3);
        expect_json(
            server
                .admin(Method::POST, &collection("fleet", plural))
                .json(&body)
                .send()
                .await
                .expect("create"),
            StatusCode::CREATED,
        )
        .await;
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| o["metadata"]["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let list = |query: &'static str| {
        server
            .admin(Method::GET, &collection("fleet", plural))
            .query(&[("labelSelector", query)])
            .send()
    };
    let even = expect_json(list("batch=even").await.expect("list"), StatusCode::OK).await;
    assert_eq!(names(&even), ["req-0", "req-2", "req-4", "req-6"]);
    let not_odd = expect_json(
        list("batch notin (odd)").await.expect("list"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&not_odd), names(&even));

    let approved_even = expect_json(
        server
            .admin(Method::GET, &collection("fleet", plural))
            .query(&[
                ("labelSelector", "batch=even"),
                ("fieldSelector", "spec.approved=true"),
            ])
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&approved_even), ["req-0", "req-2"]);

    let bad_field = server
        .admin(Method::GET, &collection("fleet", plural))
        .query(&[("fieldSelector", "spec.colour=red")])
        .send()
        .await
        .expect("list");
    let status = expect_status(bad_field, StatusCode::BAD_REQUEST, "BadRequest").await;
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.approved")),
        "the message lists the valid fields: {status}"
    );

    // Pages of 3 over everything, then pages of 2 over a filtered list.
    for (selector, page_size, expected) in [
        (
            "",
            "3",
            vec![
                "req-0", "req-1", "req-2", "req-3", "req-4", "req-5", "req-6",
            ],
        ),
        ("batch=odd", "2", vec!["req-1", "req-3", "req-5"]),
    ] {
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = expect_json(
                server
                    .admin(Method::GET, &collection("fleet", plural))
                    .query(&[
                        ("labelSelector", selector),
                        ("limit", page_size),
                        ("continue", token.as_str()),
                    ])
                    .send()
                    .await
                    .expect("page"),
                StatusCode::OK,
            )
            .await;
            pages += 1;
            assert!(page["metadata"]["resourceVersion"].as_str().is_some());
            let items = names(&page);
            assert!(items.len() <= page_size.parse().expect("size"));
            seen.extend(items);
            match page["metadata"]["continue"].as_str() {
                Some(next) => token = next.to_owned(),
                None => break,
            }
            assert!(pages < 10, "paging does not end");
        }
        assert_eq!(seen, expected, "selector {selector:?}");
    }
    let bad_token = server
        .admin(Method::GET, &collection("fleet", plural))
        .query(&[("limit", "2"), ("continue", "not-a-token")])
        .send()
        .await
        .expect("list");
    expect_status(bad_token, StatusCode::BAD_REQUEST, "BadRequest").await;
    server.stop().await;
}

/// Reads watch lines until `count` events arrived (or 10 s passed).
async fn read_events(response: reqwest::Response, count: usize) -> Vec<Value> {
    next_events(&mut watch_events(response), count).await
}

/// The events of a watch response, read line by line in a task as they arrive.
pub(crate) fn watch_events(
    response: reqwest::Response,
) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        let mut buffer = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let event = serde_json::from_slice(&line).expect("event line is JSON");
                if sender.send(event).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// The next `count` events, within 10 s.
pub(crate) async fn next_events(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    count: usize,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut received = Vec::new();
    while received.len() < count {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("events arrive in time")
            .expect("stream open");
        received.push(event);
    }
    received
}

pub async fn watch_streams_changes_and_resumes_from_a_resource_version(server: TestServer) {
    let (plural, body) = sample_objects("w-a").swap_remove(2);
    let create = |name: &str| {
        let mut body = body.clone();
        body["metadata"]["name"] = json!(name);
        server
            .admin(Method::POST, &collection("fleet", plural))
            .json(&body)
            .send()
    };
    expect_json(create("w-a").await.expect("create"), StatusCode::CREATED).await;

    let watch = server
        .admin(Method::GET, &collection("fleet", plural))
        .query(&[("watch", "true")])
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), StatusCode::OK);
    // The stream starts with the existing object; once that has arrived, the
    // stream is live and sees each change.
    let mut watching = watch_events(watch);
    let mut events = next_events(&mut watching, 1).await;
    let second = expect_json(create("w-b").await.expect("create"), StatusCode::CREATED).await;
    expect_json(
        server
            .admin(Method::PATCH, &object_path("fleet", plural, "w-b"))
            .header(header::CONTENT_TYPE, MERGE_PATCH)
            .body(r#"{"metadata":{"labels":{"v":"2"}}}"#)
            .send()
            .await
            .expect("patch"),
        StatusCode::OK,
    )
    .await;
    expect_json(
        server
            .admin(Method::DELETE, &object_path("fleet", plural, "w-a"))
            .send()
            .await
            .expect("delete"),
        StatusCode::OK,
    )
    .await;
    events.extend(next_events(&mut watching, 3).await);
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type").to_owned(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .expect("name")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ADDED".to_owned(), "w-a".to_owned()),
            ("ADDED".to_owned(), "w-b".to_owned()),
            ("MODIFIED".to_owned(), "w-b".to_owned()),
            ("DELETED".to_owned(), "w-a".to_owned()),
        ]
    );

    // Resuming after the creation of w-b replays only the later changes.
    let resumed = server
        .admin(Method::GET, &collection("fleet", plural))
        .query(&[
            ("watch", "true"),
            (
                "resourceVersion",
                second["metadata"]["resourceVersion"].as_str().expect("rv"),
            ),
        ])
        .send()
        .await
        .expect("resume");
    let replayed = read_events(resumed, 2).await;
    assert_eq!(replayed[0]["type"], "MODIFIED");
    assert_eq!(replayed[1]["type"], "DELETED");

    // A resource version older than the change log gives 410 Gone.
    let store = server.running().store();
    let now = store.current_resource_version().await.expect("rv");
    store.compact(now).await.expect("compact");
    let too_old = server
        .admin(Method::GET, &collection("fleet", plural))
        .query(&[("watch", "true"), ("resourceVersion", "1")])
        .send()
        .await
        .expect("old watch");
    expect_status(too_old, StatusCode::GONE, "Expired").await;
    server.stop().await;
}

pub async fn role_matrix_is_enforced(server: TestServer) {
    let (plural, body) = sample_objects("r1").swap_remove(1);
    let path = collection("fleet", plural);
    let anonymous = server
        .client
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .expect("anonymous");
    expect_status(anonymous, StatusCode::UNAUTHORIZED, "Unauthorized").await;
    let wrong = server
        .with_token(Method::GET, &path, "flt_not-a-token")
        .send()
        .await
        .expect("bad token");
    expect_status(wrong, StatusCode::UNAUTHORIZED, "Unauthorized").await;

    let viewer = server.token(TokenRole::Viewer).await;
    let operator = server.token(TokenRole::Operator).await;
    let read = server
        .with_token(Method::GET, &path, &viewer)
        .send()
        .await
        .expect("viewer read");
    assert_eq!(read.status(), StatusCode::OK);
    let write = server
        .with_token(Method::POST, &path, &viewer)
        .json(&body)
        .send()
        .await
        .expect("viewer write");
    expect_status(write, StatusCode::FORBIDDEN, "Forbidden").await;
    let operator_write = server
        .with_token(Method::POST, &path, &operator)
        .json(&body)
        .send()
        .await
        .expect("operator write");
    assert_eq!(operator_write.status(), StatusCode::CREATED);

    let tokens = "/apis/management.project-flotta.io/v1alpha1/tokens";
    let operator_tokens = server
        .with_token(Method::GET, tokens, &operator)
        .send()
        .await
        .expect("operator tokens");
    expect_status(operator_tokens, StatusCode::FORBIDDEN, "Forbidden").await;
    let minted = expect_json(
        server
            .admin(Method::POST, tokens)
            .json(&json!({"role": "viewer", "description": "ci"}))
            .send()
            .await
            .expect("admin creates a token"),
        StatusCode::CREATED,
    )
    .await;
    let secret = minted["secret"].as_str().expect("secret");
    let with_minted = server
        .with_token(Method::GET, &path, secret)
        .send()
        .await
        .expect("minted token read");
    assert_eq!(with_minted.status(), StatusCode::OK);
    let id = minted["id"].as_str().expect("id");
    let revoked = server
        .admin(Method::DELETE, &format!("{tokens}/{id}"))
        .send()
        .await
        .expect("delete token");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let after = server
        .with_token(Method::GET, &path, secret)
        .send()
        .await
        .expect("revoked token");
    expect_status(after, StatusCode::UNAUTHORIZED, "Unauthorized").await;

    // Health, readiness and the OpenAPI document need no token.
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        let response = server
            .client
            .get(format!("{}{open}", server.base))
            .send()
            .await
            .expect("open endpoint");
        assert_eq!(response.status(), StatusCode::OK, "{open}");
    }
    // Metrics need a token: any role, or the `metrics` role, which reads nothing else.
    let anonymous = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics without a token");
    expect_status(anonymous, StatusCode::UNAUTHORIZED, "Unauthorized").await;
    let scraper = server.token(TokenRole::Metrics).await;
    let scraped = server
        .with_token(Method::GET, "/metrics", &scraper)
        .send()
        .await
        .expect("metrics");
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(
        scraped
            .text()
            .await
            .expect("text")
            .contains("# TYPE flotta_devices gauge")
    );
    let elsewhere = server
        .with_token(Method::GET, &collection("fleet", "edgedevices"), &scraper)
        .send()
        .await
        .expect("list with the metrics token");
    expect_status(elsewhere, StatusCode::FORBIDDEN, "Forbidden").await;
    server.stop().await;
}

pub async fn yaml_bodies_are_accepted(server: TestServer) {
    let yaml = "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSignedRequest\nmetadata:\n  name: from-yaml\n  labels:\n    source: yaml\nspec:\n  targetNamespace: fleet\n  approved: true\n";
    let created = expect_json(
        server
            .admin(
                Method::POST,
                &collection("fleet", "edgedevicesignedrequests"),
            )
            .header(header::CONTENT_TYPE, "application/yaml")
            .body(yaml)
            .send()
            .await
            .expect("create"),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["spec"]["approved"], true);
    assert_eq!(created["metadata"]["labels"]["source"], "yaml");
    let broken = server
        .admin(
            Method::POST,
            &collection("fleet", "edgedevicesignedrequests"),
        )
        .header(header::CONTENT_TYPE, "application/yaml")
        .body("metadata: [unclosed")
        .send()
        .await
        .expect("broken yaml");
    expect_status(broken, StatusCode::BAD_REQUEST, "BadRequest").await;
    server.stop().await;
}

pub async fn invalid_objects_get_422_naming_the_field(server: TestServer) {
    let (plural, mut body) = sample_objects("bad").swap_remove(3);
    body["spec"]["approved"] = json!("definitely");
    let response = server
        .admin(Method::POST, &collection("fleet", plural))
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = expect_status(response, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    assert_eq!(status["details"]["causes"][0]["field"], "spec.approved");
    assert_eq!(status["details"]["name"], "bad");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.approved"))
    );

    // The model's own validation rules apply too.
    let (plural, mut body) = sample_objects("wl").swap_remove(2);
    body["spec"]["type"] = json!("vm");
    let response = server
        .admin(Method::POST, &collection("fleet", plural))
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = expect_status(response, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    assert_eq!(status["details"]["causes"][0]["field"], "spec.type");

    let (plural, mut body) = sample_objects("Not_A_Name").swap_remove(1);
    body["metadata"]["namespace"] = json!("elsewhere");
    let response = server
        .admin(Method::POST, &collection("fleet", plural))
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = expect_status(response, StatusCode::UNPROCESSABLE_ENTITY, "Invalid").await;
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| c["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["metadata.name", "metadata.namespace"]);

    // More than 8 MiB is refused before it is parsed.
    let huge = vec![b' '; 8 * 1024 * 1024 + 1];
    let response = server
        .admin(Method::POST, &collection("fleet", plural))
        .header(header::CONTENT_TYPE, "application/json")
        .body(huge)
        .send()
        .await
        .expect("huge body");
    expect_status(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
    )
    .await;
    server.stop().await;
}

pub async fn data_survives_a_restart(mut server: TestServer) {
    let (plural, body) = sample_objects("keep").swap_remove(0);
    let created = expect_json(
        server
            .admin(Method::POST, &collection("fleet", plural))
            .json(&body)
            .send()
            .await
            .expect("create"),
        StatusCode::CREATED,
    )
    .await;
    let token_before = server.admin_token.clone();
    server.restart().await;
    assert_eq!(server.admin_token, token_before, "admin.yaml token reused");
    let read = expect_json(
        server
            .admin(Method::GET, &object_path("fleet", plural, "keep"))
            .send()
            .await
            .expect("get"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(read, created);
    server.stop().await;
}

pub async fn approval_decides_an_enrolment_in_one_call(server: TestServer) {
    let request = sample_objects("edge-a")
        .into_iter()
        .find(|(plural, _)| *plural == "edgedevicesignedrequests")
        .expect("a sample request")
        .1;
    expect_json(
        server
            .admin(
                Method::POST,
                &collection("fleet", "edgedevicesignedrequests"),
            )
            .json(&request)
            .send()
            .await
            .expect("create"),
        StatusCode::CREATED,
    )
    .await;
    let approval = format!(
        "{}/approval",
        object_path("fleet", "edgedevicesignedrequests", "edge-a")
    );
    let operator = server.token(TokenRole::Operator).await;
    let decided = |body: &Value| {
        let conditions = body["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions
            .into_iter()
            .filter(|c| {
                ["approved", "declined", "pending"].contains(&c["type"].as_str().unwrap_or(""))
            })
            .collect::<Vec<_>>()
    };

    // Deny, with the operator's words, signed by the token.
    let denied = expect_json(
        server
            .with_token(Method::POST, &approval, &operator)
            .json(&json!({"approved": false, "message": "unknown hardware"}))
            .send()
            .await
            .expect("deny"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(denied["spec"]["approved"], false);
    let conditions = decided(&denied);
    assert_eq!(conditions.len(), 1, "{denied}");
    assert_eq!(conditions[0]["type"], "declined");
    assert_eq!(conditions[0]["status"], "True");
    let message = conditions[0]["message"].as_str().expect("message");
    assert!(
        message.starts_with("unknown hardware (by token "),
        "{message}"
    );
    assert!(conditions[0]["lastTransitionTime"].is_string());

    // Approve: the declined condition is replaced, the default words used.
    let approved = expect_json(
        server
            .with_token(Method::POST, &approval, &operator)
            .json(&json!({"approved": true}))
            .send()
            .await
            .expect("approve"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(approved["spec"]["approved"], true);
    let conditions = decided(&approved);
    assert_eq!(conditions.len(), 1, "{approved}");
    assert_eq!(conditions[0]["type"], "approved");
    assert!(
        conditions[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("approved through the management API (by token ")),
        "{approved}"
    );

    // Refusals: a viewer, a body that is not a decision, another kind, no object.
    let viewer = server.token(TokenRole::Viewer).await;
    expect_status(
        server
            .with_token(Method::POST, &approval, &viewer)
            .json(&json!({"approved": true}))
            .send()
            .await
            .expect("viewer"),
        StatusCode::FORBIDDEN,
        "Forbidden",
    )
    .await;
    let invalid = expect_status(
        server
            .admin(Method::POST, &approval)
            .json(&json!({"approved": "yes"}))
            .send()
            .await
            .expect("bad body"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
    )
    .await;
    assert!(
        invalid["message"]
            .as_str()
            .is_some_and(|m| m.contains("approved")),
        "{invalid}"
    );
    expect_status(
        server
            .admin(
                Method::POST,
                &format!("{}/approval", object_path("fleet", "edgedevices", "edge-a")),
            )
            .json(&json!({"approved": true}))
            .send()
            .await
            .expect("other kind"),
        StatusCode::NOT_FOUND,
        "NotFound",
    )
    .await;
    expect_status(
        server
            .admin(
                Method::POST,
                &format!(
                    "{}/approval",
                    object_path("fleet", "edgedevicesignedrequests", "nobody")
                ),
            )
            .json(&json!({"approved": true}))
            .send()
            .await
            .expect("missing"),
        StatusCode::NOT_FOUND,
        "NotFound",
    )
    .await;
}
