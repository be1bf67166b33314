//! Hardware-derived labels: the server labels each device from the hardware its
//! agent reports (`device.cpu-architecture`, `device.hostname`, ...), keeps them in
//! step when the hardware changes, leaves other labels alone, and a workload can
//! select devices by them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotta_agent_lib::{HardwareProbe, ProcHardwareProbe, ProcessOptions, ProcessRuntime};
use flotta_core::backoff::Backoff;
use flotta_core::model::{API_VERSION, EdgeDevice};
use flotta_core::wire::HardwareInfo;
use flotta_testing::agent::RunningAgent;
use flotta_testing::{Database, NAMESPACE, TestServer, eventually, test_config};
use serde_json::json;

/// The machine's own probe, with a host name the test can change.
struct RenamableProbe {
    inner: ProcHardwareProbe,
    hostname: Mutex<String>,
}

#[async_trait]
impl HardwareProbe for RenamableProbe {
    async fn probe(&self) -> HardwareInfo {
        let mut info = self.inner.probe().await;
        info.hostname = Some(self.hostname.lock().expect("lock").clone());
        info
    }
}

fn labels_of(device: &EdgeDevice) -> std::collections::BTreeMap<String, String> {
    device.metadata.labels.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_labelled_from_their_hardware_and_selected_by_architecture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        TestServer::start_with(test_config(&dir.path().join("server"), &Database::Sqlite)).await;
    let client = server.management_client();
    let architecture = std::env::consts::ARCH;
    // Heartbeats carry the hardware, so a change reaches the server.
    let set = json!({"apiVersion": API_VERSION, "kind": "EdgeDeviceSet",
        "metadata": {"name": "lab", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"site": "lab"}},
            "heartbeat": {"periodSeconds": 1, "hardwareProfile": {"include": true, "scope": "full"}}}});
    client
        .create_raw(
            flotta_client::ResourceType::of::<flotta_core::model::EdgeDeviceSet>(),
            NAMESPACE,
            &set,
        )
        .await
        .expect("create set");
    // The workload is for devices of this machine's architecture only.
    let marker = dir.path().join("marker");
    let script = format!("echo {architecture} > {}; exec sleep 600", marker.display());
    let workload = json!({"apiVersion": API_VERSION, "kind": "EdgeWorkload",
        "metadata": {"name": "by-arch", "namespace": NAMESPACE},
        "spec": {"type": "pod",
            "deviceSelector": {"matchLabels": {"device.cpu-architecture": architecture}},
            "pod": {"spec": {"containers": [{"name": "main", "image": "none",
                "command": ["sh", "-c", script]}]}}}});
    client
        .create_raw(
            flotta_client::ResourceType::of::<flotta_core::model::EdgeWorkload>(),
            NAMESPACE,
            &workload,
        )
        .await
        .expect("create workload");

    let probe = Arc::new(RenamableProbe {
        inner: ProcHardwareProbe::default(),
        hostname: Mutex::new("Edge-Box.Lab".to_owned()),
    });
    let mut options = ProcessOptions::new(dir.path().join("logs"));
    options.restart = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
    options.stop_grace = Duration::from_secs(2);
    let runtime = Arc::new(ProcessRuntime::open(options).await.expect("runtime"));
    let agent = server
        .agent_builder("hw-device", runtime)
        .state_dir(dir.path().join("agent"))
        .hardware_probe(probe.clone())
        .build()
        .expect("agent builds");
    let agent = RunningAgent::spawn(agent);

    // The workload reached the device through the architecture label: its process
    // wrote the marker.
    let written = eventually("the workload selected by architecture to run", || async {
        // The shell creates the file before it writes the line.
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|text| text.ends_with('\n'))
    })
    .await;
    assert_eq!(written.trim(), architecture);
    let device: EdgeDevice = client.get(NAMESPACE, "hw-device").await.expect("device");
    let labels = labels_of(&device);
    assert_eq!(
        labels.get("device.cpu-architecture").map(String::as_str),
        Some(architecture)
    );
    assert_eq!(
        labels.get("device.hostname").map(String::as_str),
        Some("edge-box.lab")
    );
    assert_eq!(labels.get("site").map(String::as_str), Some("lab"));

    // An operator's label under another key stays when the hardware changes.
    client
        .patch_raw(
            flotta_client::ResourceType::of::<EdgeDevice>(),
            NAMESPACE,
            "hw-device",
            &json!({"metadata": {"labels": {"rack": "r7"}}}),
        )
        .await
        .expect("label");
    *probe.hostname.lock().expect("lock") = "Renamed_Box".to_owned();
    let labels = eventually("the new host name as a label", || async {
        let device: EdgeDevice = client.get(NAMESPACE, "hw-device").await.ok()?;
        let labels = labels_of(&device);
        (labels.get("device.hostname").map(String::as_str) == Some("renamed_box")).then_some(labels)
    })
    .await;
    assert_eq!(labels.get("rack").map(String::as_str), Some("r7"));
    assert_eq!(
        labels.get("device.cpu-architecture").map(String::as_str),
        Some(architecture)
    );
    agent.stop().await;
}
