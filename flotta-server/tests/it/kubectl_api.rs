//! What stock kubectl needs of the management API: version and discovery, the
//! OpenAPI v2 (protobuf) and v3 documents, Tables, JSON and strategic merge
//! patches, dry runs and namespaces. `scripts/test-kubectl.sh` drives a real
//! kubectl against a real server; these tests pin each piece, bad input included.

use flotta_core::kind::ResourceKind;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::api_harness::{
    TestServer, collection, expect_json, expect_status, object_path, sample_objects,
};
use crate::api_suite::{next_events, watch_events};

const GROUP_VERSION: &str = "/apis/management.project-flotta.io/v1alpha1";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
/// What kubectl asks for, and what the server answers (a media type Go's
/// `mime.ParseMediaType` accepts: no `@`).
const PROTOBUF_V2: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const PROTOBUF_V2_ANSWER: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

/// The workload of the shared samples, created as `name` in `fleet`.
async fn create_workload(server: &TestServer, name: &str) -> Value {
    let (plural, body) = sample_objects(name).swap_remove(2);
    expect_json(
        server
            .admin(Method::POST, &collection("fleet", plural))
            .json(&body)
            .send()
            .await
            .expect("create"),
        StatusCode::CREATED,
    )
    .await
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovery_serves_version_groups_and_the_kind_table() {
    let server = TestServer::start().await;
    let version = flotta_testing::client_trusting(&server.ca_pem())
        .get(format!("{}/version", server.admin_config().server))
        .send()
        .await
        .expect("version without a token");
    let version = expect_json(version, StatusCode::OK).await;
    assert_eq!(version["major"], "1");
    assert!(
        version["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.") && v.contains("+flotta-")),
        "{version}"
    );

    // kubectl asks for aggregated discovery first; a plain application/json answer
    // tells it to read the plain documents.
    let groups = server
        .admin(Method::GET, "/apis")
        .header(header::ACCEPT, AGGREGATED)
        .send()
        .await
        .expect("groups");
    assert_eq!(content_type(&groups), "application/json");
    let groups = expect_json(groups, StatusCode::OK).await;
    assert_eq!(groups["kind"], "APIGroupList");
    assert_eq!(groups["groups"][0]["name"], "management.project-flotta.io");
    assert_eq!(
        groups["groups"][0]["preferredVersion"]["groupVersion"],
        "management.project-flotta.io/v1alpha1"
    );
    let api = expect_json(
        server.admin(Method::GET, "/api").send().await.expect("api"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(api["versions"], json!(["v1"]));

    let flotta = expect_json(
        server
            .admin(Method::GET, GROUP_VERSION)
            .send()
            .await
            .expect("resources"),
        StatusCode::OK,
    )
    .await;
    let core = expect_json(
        server
            .admin(Method::GET, "/api/v1")
            .send()
            .await
            .expect("core"),
        StatusCode::OK,
    )
    .await;
    let rbac = expect_json(
        server
            .admin(Method::GET, "/apis/rbac.authorization.k8s.io/v1")
            .send()
            .await
            .expect("rbac"),
        StatusCode::OK,
    )
    .await;
    let group_names: Vec<&Value> = groups["groups"]
        .as_array()
        .map(|g| g.iter().map(|g| &g["name"]).collect())
        .unwrap_or_default();
    assert_eq!(
        group_names,
        [
            "management.project-flotta.io",
            "rbac.authorization.k8s.io",
            "authorization.k8s.io"
        ]
    );
    for kind in ResourceKind::ALL {
        let list = if kind.is_flotta() {
            &flotta
        } else if kind.is_core() {
            &core
        } else {
            &rbac
        };
        let entry = list["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["name"] == kind.plural()))
            .unwrap_or_else(|| panic!("{kind} discovered"));
        assert_eq!(entry["shortNames"], json!(kind.short_names()), "{kind}");
        assert_eq!(entry["categories"], json!(kind.categories()), "{kind}");
        assert_eq!(entry["singularName"], kind.singular(), "{kind}");
        assert_eq!(entry["namespaced"], kind.namespaced(), "{kind}");
    }
    let namespaces = core["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|e| e["name"] == "namespaces"))
        .expect("namespaces discovered");
    assert_eq!(namespaces["namespaced"], false);
    assert_eq!(namespaces["shortNames"], json!(["ns"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_openapi_v2_is_protobuf_on_request_and_v3_carries_group_version_kinds() {
    let server = TestServer::start().await;
    let protobuf = server
        .admin(Method::GET, "/openapi/v2")
        .header(header::ACCEPT, PROTOBUF_V2)
        .send()
        .await
        .expect("v2 protobuf");
    assert_eq!(protobuf.status(), StatusCode::OK);
    assert_eq!(content_type(&protobuf), PROTOBUF_V2_ANSWER);
    let bytes = protobuf.bytes().await.expect("body");
    // Document.swagger (field 1) = "2.0".
    assert_eq!(&bytes[..5], &[0x0a, 3, b'2', b'.', b'0']);

    let v2 = server
        .admin(Method::GET, "/openapi/v2")
        .send()
        .await
        .expect("v2 JSON");
    assert_eq!(content_type(&v2), "application/json");
    let v2 = expect_json(v2, StatusCode::OK).await;
    assert_eq!(v2["swagger"], "2.0");
    assert_eq!(
        v2["definitions"]["EdgeDevice"]["x-kubernetes-group-version-kind"][0]["kind"],
        "EdgeDevice"
    );

    let index = expect_json(
        server
            .admin(Method::GET, "/openapi/v3")
            .send()
            .await
            .expect("index"),
        StatusCode::OK,
    )
    .await;
    let url = index["paths"]["apis/management.project-flotta.io/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .expect("the group's document");
    assert!(url.contains("?hash="), "{url}");
    assert!(index["paths"]["api/v1"].is_object(), "{index}");
    let document = expect_json(
        server.admin(Method::GET, url).send().await.expect("v3"),
        StatusCode::OK,
    )
    .await;
    let workload = &document["components"]["schemas"]["EdgeWorkload"];
    assert_eq!(
        workload["x-kubernetes-group-version-kind"],
        json!([{"group": "management.project-flotta.io", "version": "v1alpha1", "kind": "EdgeWorkload"}])
    );
    assert!(workload["properties"]["spec"].is_object(), "{workload}");
    let patch = &document["paths"]["/apis/management.project-flotta.io/v1alpha1/namespaces/{namespace}/edgeworkloads/{name}"]
        ["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "EdgeWorkload"
    );
    expect_status(
        server
            .admin(Method::GET, "/openapi/v3/apis/example.com/v1")
            .send()
            .await
            .expect("unknown"),
        StatusCode::NOT_FOUND,
        "NotFound",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_tables_carry_the_cli_columns_on_list_get_and_watch() {
    let server = TestServer::start().await;
    create_workload(&server, "web").await;
    let table = expect_json(
        server
            .admin(Method::GET, &collection("fleet", "edgeworkloads"))
            .header(header::ACCEPT, TABLE)
            .send()
            .await
            .expect("table"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    let headers: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    let expected: Vec<&str> = ResourceKind::EdgeWorkload
        .columns()
        .iter()
        .map(|c| c.header)
        .collect();
    assert_eq!(headers, expected);
    assert_eq!(table["columnDefinitions"][0]["format"], "name");
    let wide = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["name"] == "FAILED")
        .expect("a wide column");
    assert_eq!(wide["priority"], 1);
    let row = &table["rows"][0];
    assert_eq!(row["cells"][0], "web");
    assert_eq!(row["cells"][1], "pod");
    assert_eq!(row["cells"][2], "site=lab");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["name"], "web");
    assert!(row["object"].get("spec").is_none());

    let full = expect_json(
        server
            .admin(
                Method::GET,
                &format!(
                    "{}?includeObject=Object",
                    collection("fleet", "edgeworkloads")
                ),
            )
            .header(header::ACCEPT, TABLE)
            .send()
            .await
            .expect("table"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(full["rows"][0]["object"]["spec"]["type"], "pod");
    expect_status(
        server
            .admin(
                Method::GET,
                &format!("{}?includeObject=All", collection("fleet", "edgeworkloads")),
            )
            .header(header::ACCEPT, TABLE)
            .send()
            .await
            .expect("bad includeObject"),
        StatusCode::BAD_REQUEST,
        "BadRequest",
    )
    .await;

    let one = expect_json(
        server
            .admin(Method::GET, &object_path("fleet", "edgeworkloads", "web"))
            .header(header::ACCEPT, TABLE)
            .send()
            .await
            .expect("one"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(one["kind"], "Table");
    assert_eq!(one["rows"].as_array().map(Vec::len), Some(1));
    // Without the Table media type, the object itself.
    let plain = expect_json(
        server
            .admin(Method::GET, &object_path("fleet", "edgeworkloads", "web"))
            .send()
            .await
            .expect("plain"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(plain["kind"], "EdgeWorkload");

    let watch = server
        .admin(
            Method::GET,
            &format!("{}?watch=true", collection("fleet", "edgeworkloads")),
        )
        .header(header::ACCEPT, TABLE)
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), StatusCode::OK);
    let mut events = watch_events(watch);
    let added = next_events(&mut events, 1).await;
    assert_eq!(added[0]["type"], "ADDED");
    assert_eq!(added[0]["object"]["kind"], "Table");
    assert_eq!(added[0]["object"]["rows"][0]["cells"][0], "web");
    create_workload(&server, "api").await;
    let next = next_events(&mut events, 1).await;
    assert_eq!(next[0]["object"]["rows"][0]["cells"][0], "api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_json_patches_and_strategic_merge_patches_apply_and_bad_ones_are_named() {
    let server = TestServer::start().await;
    create_workload(&server, "web").await;
    let path = object_path("fleet", "edgeworkloads", "web");
    let patch = |content_type: &'static str, body: Value| {
        server
            .admin(Method::PATCH, &path)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.to_string())
            .send()
    };

    let patched = expect_json(
        patch(
            JSON_PATCH,
            json!([
                {"op": "add", "path": "/metadata/labels", "value": {"tier": "front"}},
                {"op": "test", "path": "/spec/type", "value": "pod"},
                {"op": "replace", "path": "/spec/deviceSelector/matchLabels/site", "value": "lab-2"},
            ]),
        )
        .await
        .expect("json patch"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["metadata"]["labels"]["tier"], "front");
    assert_eq!(
        patched["spec"]["deviceSelector"]["matchLabels"]["site"],
        "lab-2"
    );

    let failed_test = expect_status(
        patch(
            JSON_PATCH,
            json!([
                {"op": "add", "path": "/metadata/labels/x", "value": "y"},
                {"op": "test", "path": "/spec/type", "value": "ansible"},
            ]),
        )
        .await
        .expect("failing test"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
    )
    .await;
    let message = failed_test["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("operation 1 (test /spec/type)"),
        "{message}"
    );

    let unknown_op = expect_status(
        patch(JSON_PATCH, json!([{"op": "frobnicate", "path": "/spec"}]))
            .await
            .expect("unknown op"),
        StatusCode::BAD_REQUEST,
        "BadRequest",
    )
    .await;
    let message = unknown_op["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("operation 0") && message.contains("frobnicate"),
        "{message}"
    );
    expect_status(
        patch(JSON_PATCH, json!({"op": "add"}))
            .await
            .expect("not a list"),
        StatusCode::BAD_REQUEST,
        "BadRequest",
    )
    .await;
    // A patch that leaves an invalid object is refused like any other write.
    expect_status(
        patch(
            JSON_PATCH,
            json!([{"op": "replace", "path": "/spec/type", "value": 7}]),
        )
        .await
        .expect("invalid result"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
    )
    .await;

    let strategic = expect_json(
        patch(
            STRATEGIC,
            json!({"metadata": {"labels": {"tier": null, "app": "web"}},
                   "spec": {"deviceSelector": {"$patch": "replace", "matchLabels": {"zone": "a"}}}}),
        )
        .await
        .expect("strategic"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(strategic["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        strategic["spec"]["deviceSelector"],
        json!({"matchLabels": {"zone": "a"}})
    );
    expect_status(
        patch(
            STRATEGIC,
            json!({"spec": {"$setElementOrder/containers": []}}),
        )
        .await
        .expect("list directive"),
        StatusCode::BAD_REQUEST,
        "BadRequest",
    )
    .await;

    for refused in ["text/plain", "application/json"] {
        let status = expect_status(
            patch(refused, json!({})).await.expect("refused type"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
        )
        .await;
        assert!(status["message"].is_string(), "{refused}");
    }
    // Patch types are refused outside PATCH.
    expect_status(
        server
            .admin(Method::POST, &collection("fleet", "edgeworkloads"))
            .header(header::CONTENT_TYPE, JSON_PATCH)
            .body("[]")
            .send()
            .await
            .expect("post"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_dry_runs_validate_and_answer_without_storing() {
    let server = TestServer::start().await;
    let (plural, body) = sample_objects("dry").swap_remove(2);
    let created = expect_json(
        server
            .admin(
                Method::POST,
                &format!("{}?dryRun=All", collection("fleet", plural)),
            )
            .json(&body)
            .send()
            .await
            .expect("dry create"),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["metadata"]["name"], "dry");
    assert_eq!(created["metadata"]["generation"], 1);
    let path = object_path("fleet", plural, "dry");
    expect_status(
        server.admin(Method::GET, &path).send().await.expect("get"),
        StatusCode::NOT_FOUND,
        "NotFound",
    )
    .await;
    let mut invalid = body.clone();
    invalid["spec"]["type"] = json!(7);
    expect_status(
        server
            .admin(
                Method::POST,
                &format!("{}?dryRun=All", collection("fleet", plural)),
            )
            .json(&invalid)
            .send()
            .await
            .expect("dry invalid"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
    )
    .await;

    let stored = create_workload(&server, "dry").await;
    let version = stored["metadata"]["resourceVersion"].clone();
    let patched = expect_json(
        server
            .admin(Method::PATCH, &format!("{path}?dryRun=All"))
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .body(json!({"metadata": {"labels": {"dry": "run"}}}).to_string())
            .send()
            .await
            .expect("dry patch"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["metadata"]["labels"]["dry"], "run");
    assert_eq!(patched["metadata"]["resourceVersion"], version);

    let mut replacement = stored.clone();
    replacement["spec"]["type"] = json!("pod");
    replacement["metadata"]["labels"] = json!({"replaced": "yes"});
    let replaced = expect_json(
        server
            .admin(Method::PUT, &format!("{path}?dryRun=All"))
            .json(&replacement)
            .send()
            .await
            .expect("dry replace"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["metadata"]["labels"]["replaced"], "yes");
    expect_json(
        server
            .admin(Method::DELETE, &format!("{path}?dryRun=All"))
            .send()
            .await
            .expect("dry delete"),
        StatusCode::OK,
    )
    .await;
    let after = expect_json(
        server.admin(Method::GET, &path).send().await.expect("get"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        after["metadata"]["resourceVersion"], version,
        "nothing written"
    );
    assert!(after["metadata"].get("labels").is_none_or(Value::is_null));

    // A dry run still gives the errors the write would.
    let mut stale = replacement.clone();
    // Any version but the stored one is stale.
    stale["metadata"]["resourceVersion"] = json!("987654321");
    expect_status(
        server
            .admin(Method::PUT, &format!("{path}?dryRun=All"))
            .json(&stale)
            .send()
            .await
            .expect("stale"),
        StatusCode::CONFLICT,
        "Conflict",
    )
    .await;
    expect_status(
        server
            .admin(Method::DELETE, &format!("{path}?dryRun=Some"))
            .send()
            .await
            .expect("bad dry run"),
        StatusCode::BAD_REQUEST,
        "BadRequest",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_namespaces_are_derived_from_the_objects_stored() {
    let server = TestServer::start().await;
    create_workload(&server, "web").await;
    let list = expect_json(
        server
            .admin(Method::GET, "/api/v1/namespaces")
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["kind"], "NamespaceList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["default", "fleet"]);
    assert_eq!(list["items"][1]["status"]["phase"], "Active");
    assert!(list["items"][1]["metadata"]["creationTimestamp"].is_string());

    let table = expect_json(
        server
            .admin(Method::GET, "/api/v1/namespaces/fleet")
            .header(header::ACCEPT, TABLE)
            .send()
            .await
            .expect("table"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(table["rows"][0]["cells"][0], "fleet");
    assert_eq!(table["rows"][0]["cells"][1], "Active");

    expect_status(
        server
            .admin(Method::GET, "/api/v1/namespaces/empty")
            .send()
            .await
            .expect("empty"),
        StatusCode::NOT_FOUND,
        "NotFound",
    )
    .await;
    let refused = expect_status(
        server
            .admin(Method::DELETE, "/api/v1/namespaces/fleet")
            .send()
            .await
            .expect("delete"),
        StatusCode::CONFLICT,
        "Conflict",
    )
    .await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("1 edgeworkloads"), "{message}");
    expect_status(
        server
            .admin(Method::DELETE, "/api/v1/namespaces/default")
            .send()
            .await
            .expect("delete default"),
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
    )
    .await;
    expect_status(
        server
            .admin(Method::POST, "/api/v1/namespaces")
            .json(&json!({"metadata": {"name": "new"}}))
            .send()
            .await
            .expect("create"),
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
    )
    .await;
    expect_json(
        server
            .admin(
                Method::DELETE,
                &object_path("fleet", "edgeworkloads", "web"),
            )
            .send()
            .await
            .expect("delete the workload"),
        StatusCode::OK,
    )
    .await;
    // Emptied, the namespace no longer exists.
    for method in [Method::GET, Method::DELETE] {
        expect_status(
            server
                .admin(method, "/api/v1/namespaces/fleet")
                .send()
                .await
                .expect("emptied"),
            StatusCode::NOT_FOUND,
            "NotFound",
        )
        .await;
    }
}

/// An apply configuration of the workload `telemetry` with `image`.
fn telemetry(image: &str, labels: &str) -> String {
    format!(
        "apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: telemetry
  labels: {labels}
spec:
  type: pod
  pod:
    spec:
      containers:
        - name: main
          image: {image}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_tracks_field_managers_and_names_conflicts() {
    let server = TestServer::start().await;
    let path = object_path("fleet", "edgeworkloads", "telemetry");
    let apply = |query: &str, body: String| {
        server
            .admin(Method::PATCH, &format!("{path}?{query}"))
            .header(header::CONTENT_TYPE, APPLY)
            .body(body)
            .send()
    };
    let managers = |object: &Value| -> Vec<(String, String)> {
        object["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .map(|e| {
                let text = |k: &str| e[k].as_str().expect(k).to_owned();
                (text("manager"), text("operation"))
            })
            .collect()
    };

    let status = expect_status(
        apply("", telemetry("r/t:1", "{app: t}"))
            .await
            .expect("no manager"),
        StatusCode::BAD_REQUEST,
        "BadRequest",
    )
    .await;
    assert!(
        status["message"]
            .as_str()
            .expect("message")
            .contains("fieldManager is required")
    );

    // The first apply creates; the same configuration again writes nothing.
    let created = expect_json(
        apply(
            "fieldManager=ci",
            telemetry("r/t:1", "{app: t, stage: beta}"),
        )
        .await
        .expect("create"),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(managers(&created), [("ci".to_owned(), "Apply".to_owned())]);
    let fields = &created["metadata"]["managedFields"][0];
    assert_eq!(fields["fieldsType"], "FieldsV1");
    assert_eq!(
        fields["fieldsV1"]["f:metadata"]["f:labels"]["f:stage"],
        json!({})
    );
    let again = expect_json(
        apply(
            "fieldManager=ci",
            telemetry("r/t:1", "{app: t, stage: beta}"),
        )
        .await
        .expect("again"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        again["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    // Another manager changing ci's image conflicts, naming the field and owner.
    let conflict = expect_status(
        apply("fieldManager=ops", telemetry("r/t:2", "{app: t}"))
            .await
            .expect("conflict"),
        StatusCode::CONFLICT,
        "Conflict",
    )
    .await;
    assert_eq!(
        conflict["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    assert_eq!(
        conflict["details"]["causes"][0]["field"],
        ".spec.pod.spec.containers"
    );
    assert!(
        conflict["message"]
            .as_str()
            .expect("message")
            .starts_with("Apply failed with 1 conflict: conflict with \"ci\""),
        "{conflict}"
    );
    // force=true takes it over; ci keeps what it shares.
    let forced = expect_json(
        apply(
            "fieldManager=ops&force=true",
            telemetry("r/t:2", "{app: t}"),
        )
        .await
        .expect("forced"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        forced["spec"]["pod"]["spec"]["containers"][0]["image"],
        "r/t:2"
    );
    assert_eq!(
        forced["metadata"]["labels"],
        json!({"app": "t", "stage": "beta"})
    );

    // A merge patch is an update by its manager: it takes the field from ops.
    expect_json(
        server
            .admin(Method::PATCH, &format!("{path}?fieldManager=hand"))
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .body(r#"{"spec":{"pod":{"spec":{"containers":[{"name":"main","image":"r/t:3"}]}}}}"#)
            .send()
            .await
            .expect("merge patch"),
        StatusCode::OK,
    )
    .await;
    let conflict = expect_status(
        apply("fieldManager=ops", telemetry("r/t:2", "{app: t}"))
            .await
            .expect("conflict"),
        StatusCode::CONFLICT,
        "Conflict",
    )
    .await;
    assert!(
        conflict["message"]
            .as_str()
            .expect("message")
            .contains("conflict with \"hand\""),
        "{conflict}"
    );

    // Dry run: answered, not stored.
    let dry = expect_json(
        apply(
            "fieldManager=ops&force=true&dryRun=All",
            telemetry("r/t:4", "{app: t}"),
        )
        .await
        .expect("dry run"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        dry["spec"]["pod"]["spec"]["containers"][0]["image"],
        "r/t:4"
    );
    let stored = expect_json(
        server.admin(Method::GET, &path).send().await.expect("get"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        stored["spec"]["pod"]["spec"]["containers"][0]["image"],
        "r/t:3"
    );

    // Bad applies are named.
    expect_status(
        apply(
            "fieldManager=ops",
            telemetry("r/t:2", "{app: t}").replace("name: telemetry", "name: other"),
        )
        .await
        .expect("other name"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
    )
    .await;
    expect_status(
        apply("fieldManager=ops", "spec: [".to_owned())
            .await
            .expect("bad YAML"),
        StatusCode::BAD_REQUEST,
        "BadRequest",
    )
    .await;
    expect_status(
        server
            .admin(Method::PATCH, &format!("{path}/status?fieldManager=ops"))
            .header(header::CONTENT_TYPE, APPLY)
            .body(telemetry("r/t:2", "{}"))
            .send()
            .await
            .expect("status apply"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_bookmarks_pass_filtered_changes_and_lists_honour_resource_version_match() {
    let server = TestServer::start().await;
    let first = create_workload(&server, "shown").await;
    let list = expect_json(
        server
            .admin(Method::GET, &collection("fleet", "edgeworkloads"))
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    let listed = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    assert!(first["metadata"]["resourceVersion"].is_string());

    // A watch for a label nobody has: the change it filters out still moves the
    // bookmark it sends as its timeout ends.
    let watch = server
        .admin(
            Method::GET,
            &format!(
                "{}?watch=true&resourceVersion={listed}&labelSelector=app%3Dnone&allowWatchBookmarks=true&timeoutSeconds=2",
                collection("fleet", "edgeworkloads")
            ),
        )
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), StatusCode::OK);
    let mut events = watch_events(watch);
    let hidden = create_workload(&server, "hidden").await;
    let hidden_rv: u64 = hidden["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("rv");
    let received = next_events(&mut events, 1).await;
    assert_eq!(received[0]["type"], "BOOKMARK", "{received:?}");
    assert_eq!(received[0]["object"]["kind"], "EdgeWorkload");
    let bookmarked: u64 = received[0]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("bookmark rv");
    assert!(
        bookmarked >= hidden_rv,
        "bookmark {bookmarked} before the change {hidden_rv}"
    );
    assert!(
        events.recv().await.is_none(),
        "the watch ends after its bookmark"
    );

    // resourceVersionMatch: the latest version lists exactly; an older one is gone;
    // a future one is too large; bad combinations are named.
    let list_with = |query: String| {
        server
            .admin(
                Method::GET,
                &format!("{}?{query}", collection("fleet", "edgeworkloads")),
            )
            .send()
    };
    let now = expect_json(
        list_with(String::new()).await.expect("list"),
        StatusCode::OK,
    )
    .await;
    let latest = now["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    expect_json(
        list_with(format!(
            "resourceVersion={latest}&resourceVersionMatch=Exact"
        ))
        .await
        .expect("exact"),
        StatusCode::OK,
    )
    .await;
    expect_json(
        list_with(format!(
            "resourceVersion={listed}&resourceVersionMatch=NotOlderThan"
        ))
        .await
        .expect("not older"),
        StatusCode::OK,
    )
    .await;
    expect_status(
        list_with(format!(
            "resourceVersion={listed}&resourceVersionMatch=Exact"
        ))
        .await
        .expect("exact old"),
        StatusCode::GONE,
        "Expired",
    )
    .await;
    expect_status(
        list_with("resourceVersion=999999999&resourceVersionMatch=NotOlderThan".into())
            .await
            .expect("future"),
        StatusCode::GATEWAY_TIMEOUT,
        "Timeout",
    )
    .await;
    for bad in [
        "resourceVersionMatch=Exact",
        "resourceVersion=1&resourceVersionMatch=Newest",
        "watch=true&resourceVersion=1&resourceVersionMatch=NotOlderThan",
        "allowWatchBookmarks=maybe&watch=true",
    ] {
        expect_status(
            list_with(bad.to_owned()).await.expect("bad"),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        )
        .await;
    }
}
