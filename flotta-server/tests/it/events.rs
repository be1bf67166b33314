//! Events as resources: device events from heartbeats and the server's own, stored
//! as Kubernetes `v1` Events, deduplicated, listed and watched under `/api/v1`
//! with field selectors, refused for writes, and pruned by count and age. Each case
//! runs on SQLite and (ignored unless asked for) PostgreSQL.

use std::time::Duration;

use flotta_testing::{ClientIdentity, TestServer, eventually, messages};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_harness::{expect_json, expect_status};
use crate::api_suite::{next_events, watch_events};

/// Expands to one test per case for a backend, as `api_tests!` does.
macro_rules! event_tests {
    (@case [$($attr:tt)*] $database:expr; $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $case() {
            crate::events::$case($database).await;
        }
    };
    (@cases $attrs:tt $database:expr) => {
        $crate::events::event_tests!(@case $attrs $database; device_events_are_recorded_deduplicated_and_selected);
        $crate::events::event_tests!(@case $attrs $database; a_heartbeat_without_events_writes_nothing_more);
        $crate::events::event_tests!(@case $attrs $database; watch_yields_an_event_when_one_is_stored);
        $crate::events::event_tests!(@case $attrs $database; server_side_events_are_recorded);
        $crate::events::event_tests!(@case $attrs $database; refused_registrations_are_warning_events);
        $crate::events::event_tests!(@case $attrs $database; excess_events_are_pruned);
        $crate::events::event_tests!(@case $attrs $database; old_events_are_pruned);
    };
    (sqlite) => {
        $crate::events::event_tests!(@cases [] flotta_testing::Database::Sqlite);
    };
    (postgres) => {
        $crate::events::event_tests!(
            @cases [#[ignore = "needs PostgreSQL: FLOTTA_TEST_POSTGRES_URL (scripts/test.sh runs it)"]]
            flotta_testing::Database::fresh_postgres().await
        );
    };
}
pub(crate) use event_tests;

mod sqlite {
    crate::events::event_tests!(sqlite);
}

#[cfg(feature = "postgres")]
mod postgres {
    crate::events::event_tests!(postgres);
}

const NAMESPACE: &str = flotta_testing::NAMESPACE;

fn events_path(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/api/v1/namespaces/{ns}/events"),
        None => "/api/v1/events".to_owned(),
    }
}

/// A wire event (`event-info`).
fn reported(reason: &str, message: &str, type_: &str) -> Value {
    json!({"reason": reason, "message": message, "type": type_})
}

/// A heartbeat carrying `events`.
fn heartbeat_with(events: Vec<Value>) -> Value {
    let mut message = messages::heartbeat_message("up");
    message["content"]["events"] = Value::Array(events);
    message
}

async fn post_heartbeat(
    server: &TestServer,
    device: &str,
    identity: &ClientIdentity,
    message: &Value,
) {
    let response = server
        .edge_client(Some(identity))
        .post(server.edge_url(&format!("/data/{device}/out")))
        .json(message)
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
}

/// The events listed at `path` with `fieldSelector` `selector` (none: all).
async fn list(server: &TestServer, path: &str, selector: Option<&str>) -> Vec<Value> {
    let mut request = server.admin(Method::GET, path);
    if let Some(selector) = selector {
        request = request.query(&[("fieldSelector", selector)]);
    }
    let list = expect_json(request.send().await.expect("list"), StatusCode::OK).await;
    assert_eq!(list["kind"], "EventList", "{list}");
    assert_eq!(list["apiVersion"], "v1", "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn reasons(events: &[Value]) -> Vec<String> {
    let mut reasons: Vec<String> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    reasons.sort();
    reasons
}

fn with_reason<'a>(events: &'a [Value], reason: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["reason"] == reason)
        .unwrap_or_else(|| panic!("no {reason} event in {events:?}"))
}

pub async fn device_events_are_recorded_deduplicated_and_selected(
    database: flotta_testing::Database,
) {
    let server = TestServer::start_on(database).await;
    let identity = server.enrol_and_register("ev-dev-1").await;
    let failed = reported(
        "ApplyFailed",
        "version abc: the runtime refused broken",
        "warn",
    );
    let heartbeat = heartbeat_with(vec![
        failed.clone(),
        failed.clone(),
        reported("RolledBack", "back to version 0", "info"),
    ]);
    post_heartbeat(&server, "ev-dev-1", &identity, &heartbeat).await;

    // The device's own events (the server's Registered is about it too).
    let about =
        "involvedObject.kind=EdgeDevice,involvedObject.name=ev-dev-1,source.component=flotta-agent";
    let events = list(&server, &events_path(Some(NAMESPACE)), Some(about)).await;
    assert_eq!(
        reasons(&events),
        ["ApplyFailed", "RolledBack"],
        "{events:?}"
    );
    let apply_failed = with_reason(&events, "ApplyFailed");
    assert_eq!(apply_failed["apiVersion"], "v1");
    assert_eq!(apply_failed["kind"], "Event");
    assert_eq!(apply_failed["type"], "Warning");
    assert_eq!(
        apply_failed["count"], 2,
        "two identical events fold into one"
    );
    assert_eq!(
        apply_failed["message"],
        "version abc: the runtime refused broken"
    );
    assert_eq!(apply_failed["involvedObject"]["kind"], "EdgeDevice");
    assert_eq!(apply_failed["involvedObject"]["name"], "ev-dev-1");
    assert_eq!(apply_failed["involvedObject"]["namespace"], NAMESPACE);
    assert_eq!(
        apply_failed["involvedObject"]["apiVersion"],
        "management.project-flotta.io/v1alpha1"
    );
    assert_eq!(apply_failed["source"]["component"], "flotta-agent");
    assert_eq!(apply_failed["source"]["host"], "ev-dev-1");
    assert!(apply_failed["firstTimestamp"].is_string());
    assert!(apply_failed["lastTimestamp"].is_string());
    assert_eq!(with_reason(&events, "RolledBack")["type"], "Normal");

    // The same events again: counted, not added.
    post_heartbeat(&server, "ev-dev-1", &identity, &heartbeat).await;
    let events = list(&server, &events_path(Some(NAMESPACE)), Some(about)).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(with_reason(&events, "ApplyFailed")["count"], 4);
    assert_eq!(with_reason(&events, "RolledBack")["count"], 2);

    // Field selectors on reason and type, namespaced and cluster-wide.
    let warnings = list(
        &server,
        &events_path(None),
        Some(&format!("{about},type=Warning")),
    )
    .await;
    assert_eq!(reasons(&warnings), ["ApplyFailed"]);
    let rolled_back = list(&server, &events_path(None), Some("reason=RolledBack")).await;
    assert_eq!(reasons(&rolled_back), ["RolledBack"]);
    let elsewhere = list(&server, &events_path(Some("other")), Some(about)).await;
    assert!(elsewhere.is_empty(), "{elsewhere:?}");

    // One event by name.
    let name = apply_failed["metadata"]["name"].as_str().expect("name");
    let one = expect_json(
        server
            .admin(
                Method::GET,
                &format!("{}/{name}", events_path(Some(NAMESPACE))),
            )
            .send()
            .await
            .expect("get"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(one["reason"], "ApplyFailed");

    // An unknown field is refused, naming the valid ones.
    let unknown = server
        .admin(Method::GET, &events_path(None))
        .query(&[("fieldSelector", "involvedObject.colour=red")])
        .send()
        .await
        .expect("list");
    let status = expect_status(unknown, StatusCode::BAD_REQUEST, "BadRequest").await;
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("involvedObject.name"), "{message}");

    // Read-only: writes are refused with a reason, and events are not a flotta kind.
    for (method, path) in [
        (Method::POST, events_path(Some(NAMESPACE))),
        (
            Method::PUT,
            format!("{}/{name}", events_path(Some(NAMESPACE))),
        ),
        (
            Method::PATCH,
            format!("{}/{name}", events_path(Some(NAMESPACE))),
        ),
        (
            Method::DELETE,
            format!("{}/{name}", events_path(Some(NAMESPACE))),
        ),
    ] {
        let refused = server
            .admin(method.clone(), &path)
            .json(&json!({"reason": "Mine"}))
            .send()
            .await
            .expect("write");
        let status =
            expect_status(refused, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed").await;
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains("read-only"), "{method} {path}: {message}");
    }
    let flotta_path = format!(
        "{}/namespaces/{NAMESPACE}/events",
        flotta_core::paths::MANAGEMENT_PREFIX
    );
    let not_ours = server
        .admin(Method::GET, &flotta_path)
        .send()
        .await
        .expect("list");
    expect_status(not_ours, StatusCode::NOT_FOUND, "NotFound").await;
    server.stop().await;
}

pub async fn a_heartbeat_without_events_writes_nothing_more(database: flotta_testing::Database) {
    let server = TestServer::start_on(database).await;
    let identity = server.enrol_and_register("ev-quiet").await;
    let quiet = heartbeat_with(Vec::new());
    // The first heartbeat writes the device's status.
    post_heartbeat(&server, "ev-quiet", &identity, &quiet).await;
    // The `Registered` event is written off the request's path: wait for it, so
    // that it is not counted as the heartbeat's write.
    let client = server.management_client();
    eventually("the Registered event stored", || async {
        let params = flotta_client::ListParams::default()
            .involving(flotta_client::ResourceType::EdgeDevice, "ev-quiet");
        let events: Vec<flotta_core::model::Event> =
            client.list_all(Some("default"), &params).await.ok()?;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Registered"))
            .then_some(())
    })
    .await;
    let store = server.store();
    let before = store.current_resource_version().await.expect("version");
    post_heartbeat(&server, "ev-quiet", &identity, &quiet).await;
    assert_eq!(
        store.current_resource_version().await.expect("version"),
        before,
        "an unchanged heartbeat without events wrote an object"
    );
    post_heartbeat(
        &server,
        "ev-quiet",
        &identity,
        &heartbeat_with(vec![reported("Custom", "something", "info")]),
    )
    .await;
    assert!(store.current_resource_version().await.expect("version") > before);
    server.stop().await;
}

pub async fn watch_yields_an_event_when_one_is_stored(database: flotta_testing::Database) {
    let server = TestServer::start_on(database).await;
    let identity = server.enrol_and_register("ev-watched").await;
    let response = server
        .admin(Method::GET, &events_path(Some(NAMESPACE)))
        .query(&[
            ("watch", "true"),
            (
                "fieldSelector",
                "involvedObject.name=ev-watched,reason=OsUpgradeFailed",
            ),
        ])
        .send()
        .await
        .expect("watch");
    assert_eq!(response.status(), StatusCode::OK);
    let mut watching = watch_events(response);
    post_heartbeat(
        &server,
        "ev-watched",
        &identity,
        &heartbeat_with(vec![reported(
            "OsUpgradeFailed",
            "image os:2 cannot be pulled",
            "warn",
        )]),
    )
    .await;
    let added = next_events(&mut watching, 1).await;
    assert_eq!(added[0]["type"], "ADDED", "{added:?}");
    assert_eq!(added[0]["object"]["reason"], "OsUpgradeFailed");
    assert_eq!(added[0]["object"]["type"], "Warning");
    // A repetition is a modification of the same event.
    post_heartbeat(
        &server,
        "ev-watched",
        &identity,
        &heartbeat_with(vec![reported(
            "OsUpgradeFailed",
            "image os:2 cannot be pulled",
            "warn",
        )]),
    )
    .await;
    let modified = next_events(&mut watching, 1).await;
    assert_eq!(modified[0]["type"], "MODIFIED", "{modified:?}");
    assert_eq!(modified[0]["object"]["count"], 2);
    server.stop().await;
}

pub async fn server_side_events_are_recorded(database: flotta_testing::Database) {
    let server = TestServer::builder()
        .database(database)
        .auto_approve(false)
        .start()
        .await;
    let response = server
        .admin(Method::GET, &events_path(None))
        .query(&[
            ("watch", "true"),
            ("fieldSelector", "source.component=flotta-server"),
        ])
        .send()
        .await
        .expect("watch");
    let mut watching = watch_events(response);
    // Enrol by hand: the request waits for an operator.
    let enrolled = server
        .edge_client(Some(&server.registration_identity()))
        .post(server.edge_url("/data/ev-server/out"))
        .json(&messages::enrolment_message(NAMESPACE))
        .send()
        .await
        .expect("enrol");
    assert_eq!(enrolled.status(), StatusCode::OK);
    let requested = next_events(&mut watching, 1).await;
    assert_eq!(
        requested[0]["object"]["reason"], "EnrolmentRequested",
        "{requested:?}"
    );
    assert_eq!(
        requested[0]["object"]["involvedObject"]["kind"],
        "EdgeDeviceSignedRequest"
    );
    server.approve("ev-server").await;
    let approved = next_events(&mut watching, 1).await;
    assert_eq!(
        approved[0]["object"]["reason"], "EnrolmentApproved",
        "{approved:?}"
    );
    let by = approved[0]["object"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(by.contains("approved by token"), "{by}");
    server.enrol_and_register("ev-server").await;
    let registered = next_events(&mut watching, 1).await;
    assert_eq!(
        registered[0]["object"]["reason"], "Registered",
        "{registered:?}"
    );
    assert_eq!(
        registered[0]["object"]["involvedObject"]["kind"],
        "EdgeDevice"
    );
    let deleted = server
        .admin(
            Method::DELETE,
            &format!(
                "{}/namespaces/{NAMESPACE}/edgedevices/ev-server",
                flotta_core::paths::MANAGEMENT_PREFIX
            ),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = next_events(&mut watching, 1).await;
    assert_eq!(gone[0]["object"]["reason"], "Deleted", "{gone:?}");
    let all = list(
        &server,
        &events_path(Some(NAMESPACE)),
        Some("involvedObject.name=ev-server"),
    )
    .await;
    assert_eq!(
        reasons(&all),
        [
            "Deleted",
            "EnrolmentApproved",
            "EnrolmentRequested",
            "Registered"
        ]
    );
    server.stop().await;
}

pub async fn excess_events_are_pruned(database: flotta_testing::Database) {
    let server = TestServer::builder()
        .database(database)
        .event_retention(4, Duration::from_secs(3600))
        .start()
        .await;
    let identity = server.enrol_and_register("ev-many").await;
    let many: Vec<Value> = (0..10)
        .map(|i| reported(&format!("Step{i}"), "done", "info"))
        .collect();
    post_heartbeat(&server, "ev-many", &identity, &heartbeat_with(many)).await;
    // Pruning runs in the background: the cluster-wide list settles at the limit.
    eventually("events pruned down to the limit", || async {
        (list(&server, &events_path(None), None).await.len() == 4).then_some(())
    })
    .await;
    assert!(server.edge().events().pruned() >= 6);
    server.stop().await;
}

pub async fn old_events_are_pruned(database: flotta_testing::Database) {
    let server = TestServer::builder()
        .database(database)
        .event_retention(1000, Duration::from_secs(1))
        .start()
        .await;
    let identity = server.enrol_and_register("ev-old").await;
    let response = server
        .admin(Method::GET, &events_path(Some(NAMESPACE)))
        .query(&[
            ("watch", "true"),
            (
                "fieldSelector",
                "involvedObject.name=ev-old,reason=Ephemeral",
            ),
        ])
        .send()
        .await
        .expect("watch");
    let mut watching = watch_events(response);
    post_heartbeat(
        &server,
        "ev-old",
        &identity,
        &heartbeat_with(vec![reported("Ephemeral", "gone soon", "info")]),
    )
    .await;
    let added = next_events(&mut watching, 1).await;
    assert_eq!(added[0]["type"], "ADDED", "{added:?}");
    // A second after it last happened, the next pruning pass deletes it.
    let deleted = next_events(&mut watching, 1).await;
    assert_eq!(deleted[0]["type"], "DELETED", "{deleted:?}");
    assert!(
        list(
            &server,
            &events_path(Some(NAMESPACE)),
            Some("reason=Ephemeral")
        )
        .await
        .is_empty()
    );
    server.stop().await;
}

fn reference_payload() -> Option<String> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/flotta/misc/scale-tests-edgedevice-heartbeat-with-events-message.json.in");
    std::fs::read_to_string(path).ok()
}

#[tokio::test]
async fn the_flotta_sample_heartbeat_with_events_is_stored_and_listed() {
    let Some(template) = reference_payload() else {
        println!("skipped: reference folder absent");
        return;
    };
    let message: Value =
        serde_json::from_str(&template.replace("${__UUID()}", &uuid::Uuid::new_v4().to_string()))
            .expect("payload JSON");
    let sent = message["content"]["events"]
        .as_array()
        .expect("the sample carries events")
        .clone();
    assert!(!sent.is_empty());
    let server = TestServer::start().await;
    let identity = server.enrol_and_register("flotta-sample").await;
    post_heartbeat(&server, "flotta-sample", &identity, &message).await;
    let events = list(
        &server,
        &events_path(Some(NAMESPACE)),
        Some("involvedObject.name=flotta-sample,source.component=flotta-agent"),
    )
    .await;
    // The sample repeats one event: one stored event counting them all.
    let mut distinct: Vec<&Value> = Vec::new();
    for event in &sent {
        if !distinct.contains(&event) {
            distinct.push(event);
        }
    }
    assert_eq!(events.len(), distinct.len(), "{events:?}");
    let total: i64 = events
        .iter()
        .map(|e| e["count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total, sent.len() as i64);
    for event in &events {
        let original = distinct
            .iter()
            .find(|d| d["message"] == event["message"])
            .expect("a sent event");
        assert_eq!(event["reason"], original["reason"]);
        let expected_type = if original["type"] == "warn" {
            "Warning"
        } else {
            "Normal"
        };
        assert_eq!(event["type"], expected_type);
    }
    server.stop().await;
}

/// Posts a registration with a fresh CSR for `device` as `identity`; returns the
/// status and the error body.
async fn register_as(
    server: &TestServer,
    device: &str,
    identity: &ClientIdentity,
) -> (StatusCode, Value) {
    let key = flotta_core::pki::DeviceKey::generate().expect("key");
    let csr = key.csr(device).expect("csr").pem();
    let response = server
        .edge_client(Some(identity))
        .post(server.edge_url(&format!("/data/{device}/out")))
        .json(&messages::registration_message(Some(&csr)))
        .send()
        .await
        .expect("registration");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The `RegistrationRefused` events about `device`, once there is one.
async fn refusals_of(server: &TestServer, device: &str) -> Vec<Value> {
    let selector = format!("involvedObject.name={device},reason=RegistrationRefused");
    eventually(
        &format!("a RegistrationRefused event about {device}"),
        || {
            let selector = selector.clone();
            async move {
                let events = list(server, &events_path(None), Some(&selector)).await;
                (!events.is_empty()).then_some(events)
            }
        },
    )
    .await
}

pub async fn refused_registrations_are_warning_events(database: flotta_testing::Database) {
    let server = TestServer::builder()
        .database(database)
        .auto_approve(false)
        .start()
        .await;
    let registration = server.registration_identity();

    // The registration certificate asks for a registered device's identity.
    let enrol = |device: &'static str| {
        server
            .edge_client(Some(&registration))
            .post(server.edge_url(&format!("/data/{device}/out")))
            .json(&messages::enrolment_message(NAMESPACE))
            .send()
    };
    assert_eq!(
        enrol("ev-taken").await.expect("enrol").status(),
        StatusCode::OK
    );
    server.approve("ev-taken").await;
    server.enrol_and_register("ev-taken").await;
    let (status, body) = register_as(&server, "ev-taken", &registration).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "AlreadyRegistered", "{body}");
    let taken = refusals_of(&server, "ev-taken").await;
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0]["type"], "Warning");
    assert_eq!(
        taken[0]["involvedObject"]["kind"],
        "EdgeDeviceSignedRequest"
    );
    assert_eq!(taken[0]["source"]["component"], "flotta-server");
    let message = taken[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("(AlreadyRegistered)") && message.contains("own certificate"),
        "the event says why: {message}"
    );

    // A device waiting for approval is told to ask again (404): no event. Once
    // denied, its registration is refused (403), and that is an event.
    assert_eq!(
        enrol("ev-denied").await.expect("enrol").status(),
        StatusCode::OK
    );
    let (status, body) = register_as(&server, "ev-denied", &registration).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let denied = server
        .admin(
            Method::POST,
            &format!(
                "{}/namespaces/{NAMESPACE}/edgedevicesignedrequests/ev-denied/approval",
                flotta_core::paths::MANAGEMENT_PREFIX
            ),
        )
        .json(&json!({"approved": false}))
        .send()
        .await
        .expect("deny");
    assert_eq!(denied.status(), StatusCode::OK);
    let (status, body) = register_as(&server, "ev-denied", &registration).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let code = body["reason"].as_str().expect("reason").to_owned();
    let refused = refusals_of(&server, "ev-denied").await;
    assert_eq!(
        refused.len(),
        1,
        "one refusal event, for the denial only (not for the 404 while pending): {refused:?}"
    );
    assert_eq!(refused[0]["type"], "Warning");
    assert_eq!(
        refused[0]["involvedObject"]["kind"],
        "EdgeDeviceSignedRequest"
    );
    let message = refused[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("({code})")), "{code}: {message}");

    // Asked again: the same event, counted.
    register_as(&server, "ev-denied", &registration).await;
    eventually("the repeated refusal counted", || async {
        let events = refusals_of(&server, "ev-denied").await;
        (events.len() == 1 && events[0]["count"] == 2).then_some(())
    })
    .await;
    server.stop().await;
}
