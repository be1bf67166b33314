//! `apply`: create, update, unchanged, and per-document failures.

use flotta_client::{ApplyAction, ClientError};
use flotta_core::model::{EdgeDeviceSet, EdgeWorkload};

use flotta_testing::TestServer;

const MANIFEST: &str = "\
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSet
metadata:
  name: lab
spec:
  heartbeat:
    periodSeconds: 30
---
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: web
  namespace: apps
spec:
  type: pod
  deviceSelector:
    matchLabels:
      site: lab
  pod:
    spec:
      containers:
      - name: web
        image: quay.io/org/web:1
";

fn actions(outcomes: &[flotta_client::ApplyOutcome]) -> Vec<Option<ApplyAction>> {
    outcomes
        .iter()
        .map(|o| o.result.as_ref().ok().copied())
        .collect()
}

#[tokio::test]
async fn apply_creates_then_leaves_alone_then_updates() {
    let server = TestServer::start().await;
    let client = server.management_client();
    let first = client.apply("fleet", MANIFEST).await;
    assert_eq!(
        actions(&first),
        vec![Some(ApplyAction::Created), Some(ApplyAction::Created)]
    );
    assert_eq!(first[1].namespace.as_deref(), Some("apps"));
    let set: EdgeDeviceSet = client.get("fleet", "lab").await.expect("set");
    assert_eq!(set.spec.heartbeat.and_then(|h| h.period_seconds), Some(30));

    let again = client.apply("fleet", MANIFEST).await;
    assert_eq!(
        actions(&again),
        vec![Some(ApplyAction::Unchanged), Some(ApplyAction::Unchanged)]
    );

    let changed = MANIFEST.replace("quay.io/org/web:1", "quay.io/org/web:2");
    let third = client.apply("fleet", &changed).await;
    assert_eq!(
        actions(&third),
        vec![Some(ApplyAction::Unchanged), Some(ApplyAction::Configured)]
    );
    let workload: EdgeWorkload = client.get("apps", "web").await.expect("workload");
    assert_eq!(
        workload.spec.pod.spec.containers[0].image.as_deref(),
        Some("quay.io/org/web:2")
    );
}

#[tokio::test]
async fn every_document_gets_an_outcome_naming_its_index() {
    let server = TestServer::start().await;
    let client = server.management_client();
    let manifest = format!(
        "{MANIFEST}---\nkind: Pod\nmetadata: {{name: p}}\n---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata: {{}}\n---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata: {{name: Not_Valid}}\nspec: {{}}\n---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata: {{name: typo}}\nspec:\n  heartbeat:\n    periodSeconds: often\n"
    );
    let outcomes = client.apply("fleet", &manifest).await;
    assert_eq!(outcomes.len(), 6);
    assert!(outcomes[0].result.is_ok() && outcomes[1].result.is_ok());
    match &outcomes[2].result {
        Err(ClientError::Manifest { index: 2, message }) => {
            assert!(message.contains("Pod"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    match &outcomes[3].result {
        Err(ClientError::Manifest { index: 3, message }) => {
            assert!(message.contains("metadata.name"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    // The server refuses the invalid name: the error carries its status.
    let refused = outcomes[4].result.as_ref().expect_err("invalid name");
    assert_eq!(outcomes[4].index, 4);
    assert_eq!(refused.status(), Some(422), "{refused}");
    // A field of the wrong type is caught before sending, with its path.
    match &outcomes[5].result {
        Err(ClientError::Manifest { index: 5, message }) => assert!(
            message.starts_with("spec.heartbeat.periodSeconds: invalid type"),
            "{message}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    let missing = client.get::<EdgeDeviceSet>("fleet", "typo").await;
    assert!(missing.is_err_and(|e| e.is_not_found()));
}

#[tokio::test]
async fn server_side_apply_records_the_manager_and_names_conflicts() {
    use flotta_client::ServerSideApply;

    let server = TestServer::start().await;
    let client = server.management_client();
    let ci = ServerSideApply::new("ci");
    let first = client.server_side_apply("fleet", MANIFEST, &ci).await;
    assert_eq!(
        actions(&first),
        vec![
            Some(ApplyAction::ServerSideApplied),
            Some(ApplyAction::ServerSideApplied)
        ]
    );
    let stored = client
        .get_raw(flotta_client::ResourceType::EdgeWorkload, "apps", "web")
        .await
        .expect("workload");
    assert_eq!(
        stored["metadata"]["managedFields"][0]["manager"], "ci",
        "{stored}"
    );
    assert_eq!(stored["metadata"]["managedFields"][0]["operation"], "Apply");

    // Another manager changing ci's image: a conflict naming the field and owner,
    // and the stored image unchanged; with force, taken over.
    let changed = MANIFEST.replace("quay.io/org/web:1", "quay.io/org/web:2");
    let ops = ServerSideApply::new("ops");
    let refused = client.server_side_apply("fleet", &changed, &ops).await;
    assert_eq!(actions(&refused)[0], Some(ApplyAction::ServerSideApplied));
    let error = refused[1].result.as_ref().expect_err("conflict");
    assert!(error.is_conflict(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("conflict with \"ci\"") && text.contains(".spec.pod.spec.containers"),
        "{text}"
    );
    let workload: EdgeWorkload = client.get("apps", "web").await.expect("workload");
    assert_eq!(
        workload.spec.pod.spec.containers[0].image.as_deref(),
        Some("quay.io/org/web:1")
    );
    let forced = client
        .server_side_apply("fleet", &changed, &ops.clone().force())
        .await;
    assert!(forced.iter().all(|o| o.result.is_ok()), "{forced:?}");
    let workload: EdgeWorkload = client.get("apps", "web").await.expect("workload");
    assert_eq!(
        workload.spec.pod.spec.containers[0].image.as_deref(),
        Some("quay.io/org/web:2")
    );
}
