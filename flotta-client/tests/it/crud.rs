//! Create, read, update, delete; selectors; pages; approval; configuration.

use flotta_client::{ClientError, ListParams, ManagementClient};
use flotta_core::model::{
    EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeDeviceSignedRequestSpec, EdgeWorkload,
};

use crate::harness::device;
use flotta_testing::TestServer;

fn names<T: flotta_core::model::Resource>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.metadata().name.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn objects_are_created_read_replaced_patched_and_deleted() {
    let server = TestServer::start().await;
    let client = server.management_client();

    let created = client
        .create("fleet", &device("edge-01", &[("site", "lab")]))
        .await
        .expect("created");
    assert_eq!(created.metadata.namespace.as_deref(), Some("fleet"));
    let first_version = created.metadata.resource_version.clone().expect("rv");

    let read: EdgeDevice = client.get("fleet", "edge-01").await.expect("read");
    assert_eq!(read.metadata.labels, created.metadata.labels);

    let mut changed = read.clone();
    changed
        .metadata
        .labels
        .get_or_insert_default()
        .insert("tier".into(), "edge".into());
    let replaced = client.replace("fleet", &changed).await.expect("replaced");
    assert_ne!(
        replaced.metadata.resource_version.as_deref(),
        Some(first_version.as_str())
    );

    // The stale version loses: optimistic concurrency.
    let stale = client.replace("fleet", &changed).await.expect_err("stale");
    assert!(stale.is_conflict(), "{stale}");
    assert_eq!(stale.reason(), Some("Conflict"));
    assert!(!stale.is_retryable());

    let patched: EdgeDevice = client
        .patch(
            "fleet",
            "edge-01",
            &serde_json::json!({"metadata": {"labels": {"site": null}}}),
        )
        .await
        .expect("patched");
    let labels = patched.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("tier").map(String::as_str), Some("edge"));
    assert!(!labels.contains_key("site"));

    let _: EdgeDevice = client.delete("fleet", "edge-01").await.expect("deleted");
    let gone = client
        .get::<EdgeDevice>("fleet", "edge-01")
        .await
        .expect_err("gone");
    assert!(gone.is_not_found(), "{gone}");
    match gone {
        ClientError::Api {
            status: 404,
            reason,
            ..
        } => assert_eq!(reason, "NotFound"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists_in_every_namespace() {
    let server = TestServer::start().await;
    let client = server.management_client();
    for (ns, name, site) in [
        ("a", "d1", "lab"),
        ("a", "d2", "plant"),
        ("b", "d3", "lab"),
        ("b", "d4", ""),
    ] {
        let labels: Vec<(&str, &str)> = if site.is_empty() {
            vec![]
        } else {
            vec![("site", site)]
        };
        client
            .create(ns, &device(name, &labels))
            .await
            .expect("created");
    }
    let lab: Vec<EdgeDevice> = client
        .list_all(None, &ListParams::default().labels("site=lab"))
        .await
        .expect("list");
    assert_eq!(names(&lab), vec!["d1", "d3"]);
    // `!=` also selects objects without the key.
    let not_lab: Vec<EdgeDevice> = client
        .list_all(None, &ListParams::default().labels("site!=lab"))
        .await
        .expect("list");
    assert_eq!(names(&not_lab), vec!["d2", "d4"]);
    let in_a: Vec<EdgeDevice> = client
        .list_all(Some("a"), &ListParams::default())
        .await
        .expect("list");
    assert_eq!(names(&in_a), vec!["d1", "d2"]);
    let by_name: Vec<EdgeDevice> = client
        .list_all(None, &ListParams::default().fields("metadata.name=d4"))
        .await
        .expect("list");
    assert_eq!(names(&by_name), vec!["d4"]);

    let bad = client
        .list::<EdgeDevice>(None, &ListParams::default().labels("site in (lab"))
        .await
        .expect_err("bad selector");
    assert_eq!(bad.status(), Some(400), "{bad}");
    assert!(!bad.is_retryable());
}

#[tokio::test]
async fn pages_follow_continue_tokens_to_the_end() {
    let server = TestServer::start().await;
    let client = server.management_client();
    for i in 0..7 {
        client
            .create(
                "fleet",
                &EdgeDeviceSet::new(format!("set-{i}"), Default::default()),
            )
            .await
            .expect("created");
    }
    let params = ListParams::default().limit(3);
    let first = client
        .list::<EdgeDeviceSet>(Some("fleet"), &params)
        .await
        .expect("page 1");
    assert_eq!(names(&first.items), vec!["set-0", "set-1", "set-2"]);
    let token = first.continue_token.expect("more pages");
    let second = client
        .list::<EdgeDeviceSet>(Some("fleet"), &params.clone().continue_from(token))
        .await
        .expect("page 2");
    assert_eq!(names(&second.items), vec!["set-3", "set-4", "set-5"]);

    let all: Vec<EdgeDeviceSet> = client
        .list_all(Some("fleet"), &params)
        .await
        .expect("all pages");
    assert_eq!(all.len(), 7);
    assert_eq!(names(&all).last().map(String::as_str), Some("set-6"));
}

#[tokio::test]
async fn approve_sets_the_signed_request_approved() {
    let server = TestServer::start().await;
    let client = server.management_client();
    let request = EdgeDeviceSignedRequest::new(
        "edge-07",
        EdgeDeviceSignedRequestSpec {
            approved: Some(false),
            target_namespace: "fleet".into(),
            ..Default::default()
        },
    );
    client.create("default", &request).await.expect("created");
    let approved = client
        .approve("default", "edge-07")
        .await
        .expect("approved");
    assert_eq!(approved.spec.approved, Some(true));
    let read: EdgeDeviceSignedRequest = client.get("default", "edge-07").await.expect("read");
    assert_eq!(read.spec.approved, Some(true));
    let missing = client
        .approve("default", "nobody")
        .await
        .expect_err("missing");
    assert!(missing.is_not_found());
}

#[tokio::test]
async fn the_admin_yaml_configures_a_client_and_a_bad_token_is_refused() {
    let server = TestServer::start().await;
    let client = ManagementClient::from_config_file(server.admin_yaml()).expect("client");
    let workloads: Vec<EdgeWorkload> = client
        .list_all(None, &ListParams::default())
        .await
        .expect("authorised");
    assert!(workloads.is_empty());

    let text = std::fs::read_to_string(server.admin_yaml()).expect("admin.yaml");
    let mut config =
        flotta_client::ClientConfig::from_yaml(&text, &server.admin_yaml()).expect("parses");
    config.token = "flt_not-a-real-token".into();
    let intruder = ManagementClient::from_config(&config).expect("client");
    let refused = intruder
        .list::<EdgeWorkload>(None, &ListParams::default())
        .await
        .expect_err("refused");
    assert_eq!(refused.status(), Some(401), "{refused}");
    assert!(!refused.is_retryable());

    // A CA that did not sign the server's certificate: the TLS handshake fails.
    let other_ca = flotta_core::pki::BuiltinCa::generate("other", time::OffsetDateTime::now_utc())
        .expect("CA");
    let untrusting = ManagementClient::builder(config.server.clone())
        .token("t")
        .ca_pem(flotta_core::pki::CertificateAuthority::chain_pem(&other_ca))
        .retry_policy(flotta_client::RetryPolicy::never())
        .build()
        .expect("client");
    let error = untrusting
        .list::<EdgeWorkload>(None, &ListParams::default())
        .await
        .expect_err("untrusted server");
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
}

#[tokio::test]
async fn secrets_and_config_maps_are_typed_objects_under_api_v1() {
    use flotta_core::model::{ConfigMap, ObjectMeta, Secret};
    let server = TestServer::start().await;
    let client = server.management_client();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            labels: Some([("app".to_owned(), "db".to_owned())].into()),
            ..Default::default()
        },
        string_data: Some([("password".to_owned(), "pw".to_owned())].into()),
        ..Default::default()
    };
    let created = client.create("fleet", &secret).await.expect("created");
    assert_eq!(
        created
            .data
            .as_ref()
            .and_then(|d| d.get("password"))
            .map(|v| v.0.clone()),
        Some(b"pw".to_vec()),
        "stringData is folded into data"
    );
    let listed: Vec<Secret> = client
        .list_all(Some("fleet"), &ListParams::default().labels("app=db"))
        .await
        .expect("listed");
    assert_eq!(names(&listed), ["db"]);
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("app".into()),
            ..Default::default()
        },
        data: Some([("MODE".to_owned(), "fast".to_owned())].into()),
        ..Default::default()
    };
    client.create("fleet", &map).await.expect("config map");
    let read: ConfigMap = client.get("fleet", "app").await.expect("read");
    assert_eq!(read.data, map.data);
    let deleted: Secret = client.delete("fleet", "db").await.expect("deleted");
    assert_eq!(deleted.metadata.name.as_deref(), Some("db"));
}
