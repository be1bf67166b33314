//! A device set's `template.metadata` reaches its members: the labels and
//! annotations it names are set on each member device (rendered with the device's
//! own metadata), a workload can select by them, and a key the template drops is
//! removed again while other labels stay.

use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::{ProcessOptions, ProcessRuntime};
use flotta_client::ResourceType;
use flotta_core::backoff::Backoff;
use flotta_core::model::{API_VERSION, EdgeDevice, EdgeDeviceSet, EdgeWorkload};
use flotta_testing::agent::RunningAgent;
use flotta_testing::{Database, NAMESPACE, TestServer, eventually, test_config};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sets_template_metadata_labels_its_members_and_workloads_select_by_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        TestServer::start_with(test_config(&dir.path().join("server"), &Database::Sqlite)).await;
    let client = server.management_client();
    let set = json!({"apiVersion": API_VERSION, "kind": "EdgeDeviceSet",
        "metadata": {"name": "cameras", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"site": "lab"}},
            "template": {"metadata": {
                "labels": {"role": "camera", "unit": "{{ .metadata.name }}"},
                "annotations": {"owner": "vision-team"}}}}});
    client
        .create_raw(ResourceType::of::<EdgeDeviceSet>(), NAMESPACE, &set)
        .await
        .expect("create set");
    // The workload selects by a label only the template gives.
    let marker = dir.path().join("marker");
    let script = format!("echo ran > {}; exec sleep 600", marker.display());
    let workload = json!({"apiVersion": API_VERSION, "kind": "EdgeWorkload",
        "metadata": {"name": "by-role", "namespace": NAMESPACE},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"role": "camera"}},
            "pod": {"spec": {"containers": [{"name": "main", "image": "none",
                "command": ["sh", "-c", script]}]}}}});
    client
        .create_raw(ResourceType::of::<EdgeWorkload>(), NAMESPACE, &workload)
        .await
        .expect("create workload");

    let mut options = ProcessOptions::new(dir.path().join("logs"));
    options.restart = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
    options.stop_grace = Duration::from_secs(2);
    let runtime = Arc::new(ProcessRuntime::open(options).await.expect("runtime"));
    let agent = server
        .agent_builder("cam-7", runtime)
        .state_dir(dir.path().join("agent"))
        .build()
        .expect("agent builds");
    let agent = RunningAgent::spawn(agent);

    eventually(
        "the workload selected by the template's label to run",
        || async { marker.exists().then_some(()) },
    )
    .await;
    let device: EdgeDevice = client.get(NAMESPACE, "cam-7").await.expect("device");
    let labels = device.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("role").map(String::as_str), Some("camera"));
    assert_eq!(labels.get("unit").map(String::as_str), Some("cam-7"));
    assert_eq!(labels.get("site").map(String::as_str), Some("lab"));
    let annotations = device.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("owner").map(String::as_str),
        Some("vision-team")
    );

    // The template drops `unit` and the annotation: they go, the rest stays.
    client
        .patch_raw(
            ResourceType::of::<EdgeDeviceSet>(),
            NAMESPACE,
            "cameras",
            &json!({"spec": {"template": {"metadata": {
                "labels": {"unit": null}, "annotations": null}}}}),
        )
        .await
        .expect("patch set");
    let device = eventually("the dropped template label removed", || async {
        let device: EdgeDevice = client.get(NAMESPACE, "cam-7").await.ok()?;
        let labels = device.metadata.labels.clone().unwrap_or_default();
        (!labels.contains_key("unit")).then_some(device)
    })
    .await;
    let labels = device.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("role").map(String::as_str), Some("camera"));
    assert_eq!(labels.get("site").map(String::as_str), Some("lab"));
    let annotations = device.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("owner"), "{annotations:?}");
    agent.stop().await;
}
