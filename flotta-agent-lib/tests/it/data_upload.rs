//! Files workloads write under their `data.egress` paths reach a real
//! S3-compatible server (moto): small files in one request, a large one in
//! parts; an upload cut off half-way, and the agent stopped meanwhile, resumes
//! with the next part under a new agent; the heartbeat reports
//! `last_data_upload`; a configuration the agent cannot carry out is refused.

use std::path::Path;
use std::time::Duration;

use flotta_agent_lib::data::UploadState;
use flotta_agent_lib::{AgentTiming, MemoryRuntime};
use flotta_core::model::{ConfigMap, EdgeDevice, EdgeWorkload, ObjectMeta, Secret};
use flotta_testing::eventually_within;
use flotta_testing::s3::{self, CutProxy, S3Server};

use crate::harness::{
    RunningAgent, TestServer, process_runtime, quick_heartbeats, refusal, spawn_registered,
};

const DEVICE: &str = "data-cam";
const BUCKET: &str = "camera-frames";
const PART: usize = 8 * 1024 * 1024;

/// The S3 tests are ignored where there is no moto; on CI that is a failure, here.
#[test]
fn moto_is_there_on_ci() {
    s3::require_in_ci();
}

fn timing() -> AgentTiming {
    quick_heartbeats().with_data_sync_period(Duration::from_millis(300))
}

/// The bucket's ConfigMap and Secret, and the device's `storage.s3` naming them.
async fn storage(server: &TestServer, device: &str, port: u16) {
    let client = server.management_client();
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("bucket".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("BUCKET_HOST", "127.0.0.1".to_owned()),
                ("BUCKET_PORT", port.to_string()),
                ("BUCKET_NAME", BUCKET.to_owned()),
                ("BUCKET_REGION", s3::REGION.to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        ),
        ..Default::default()
    };
    client.create("default", &map).await.expect("config map");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("bucket-credentials".into()),
            ..Default::default()
        },
        string_data: Some(
            [
                ("AWS_ACCESS_KEY_ID".to_owned(), s3::ACCESS_KEY_ID.to_owned()),
                (
                    "AWS_SECRET_ACCESS_KEY".to_owned(),
                    s3::SECRET_ACCESS_KEY.to_owned(),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    client.create("default", &secret).await.expect("secret");
    client
        .patch::<EdgeDevice>(
            "default",
            device,
            &serde_json::json!({"spec": {
                "storage": {"s3": {
                    "configMapName": "bucket",
                    "secretName": "bucket-credentials"
                }},
                // Status (lastDataUpload) comes with the heartbeats.
                "heartbeat": {"periodSeconds": 1}
            }}),
        )
        .await
        .expect("device patched");
}

fn workload(device: &str, script: &str) -> EdgeWorkload {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "grabber", "namespace": "default"},
        "spec": {
            "type": "pod",
            "device": device,
            "data": {"egress": [{"source": "/export/frames", "target": "camera"}]},
            "pod": {"spec": {"containers": [{
                "name": "main", "image": "unused",
                "command": ["sh", "-c", script]
            }]}}
        }
    }))
    .expect("workload")
}

fn upload_state(path: &Path) -> Option<UploadState> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Bytes that differ part to part, so a part sent twice or out of place shows.
fn big_file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i / 4096 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto_server (PyPI moto[server]); scripts/test.sh runs it"]
async fn workload_files_reach_the_bucket_and_a_cut_upload_resumes_under_a_new_agent() {
    let moto = S3Server::start().await;
    moto.create_bucket(BUCKET).await;
    let proxy = CutProxy::start(moto.port()).await;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let runtime_dir = dir.path().join("runtime");
    let state = dir.path().join("state");
    let agent = server
        .agent_builder(DEVICE, process_runtime(&runtime_dir).await)
        .timing(timing())
        .state_dir(&state)
        .build()
        .expect("agent builds");
    let agent = spawn_registered(agent).await;
    storage(&server, DEVICE, proxy.port()).await;

    // The workload writes two small files into its export directory.
    let script = "mkdir -p \"$FLOTTA_EXPORT_DIR/frames/day1\" && \
                  printf one > \"$FLOTTA_EXPORT_DIR/frames/a.txt\" && \
                  printf two > \"$FLOTTA_EXPORT_DIR/frames/day1/b.txt\" && exec sleep 3600";
    server
        .management_client()
        .create("default", &workload(DEVICE, script))
        .await
        .expect("workload created");
    let patience = Duration::from_secs(60);
    let small = eventually_within("the workload's files in the bucket", patience, || async {
        let objects = moto.objects(BUCKET).await?;
        (objects.len() >= 2).then_some(objects)
    })
    .await;
    assert_eq!(
        small,
        [
            (format!("{DEVICE}/camera/a.txt"), 3),
            (format!("{DEVICE}/camera/day1/b.txt"), 3)
        ]
    );
    assert_eq!(
        moto.get(BUCKET, &format!("{DEVICE}/camera/a.txt")).await,
        b"one"
    );

    // The heartbeat reports when the workload's data was last uploaded.
    let client = server.management_client();
    eventually_within("lastDataUpload in the device status", patience, || async {
        let device: EdgeDevice = client.get("default", DEVICE).await.ok()?;
        device
            .status?
            .workloads?
            .into_iter()
            .find(|w| w.name == "grabber")?
            .last_data_upload
    })
    .await;

    // A large file goes in five parts; the link is cut after the first ones.
    let export = runtime_dir.join("grabber/export/frames");
    let content = big_file(4 * PART + 1024);
    let staging = dir.path().join("big.bin");
    std::fs::write(&staging, &content).expect("big file");
    std::fs::rename(&staging, export.join("big.bin")).expect("into the export directory");
    let state_file = state.join("data/grabber.json");
    eventually_within("the first part uploaded", patience, || async {
        let pending = upload_state(&state_file)?.pending?;
        (!pending.etags.is_empty()).then_some(())
    })
    .await;
    proxy.cut();
    let reason = eventually_within("the upload failing", patience, || async {
        agent.handle.status().data?.last_error
    })
    .await;
    assert!(reason.contains("big.bin"), "{reason}");
    agent.stop().await;
    let pending = upload_state(&state_file)
        .and_then(|s| s.pending)
        .expect("an upload under way is on disk");
    let done = pending.etags.len();
    assert!((1..5).contains(&done), "cut half-way: {done} of 5 parts");

    // A new agent on the same state resumes the same upload with the next part.
    proxy.restore();
    let agent = server
        .agent_builder(DEVICE, process_runtime(&runtime_dir).await)
        .timing(timing())
        .state_dir(&state)
        .build()
        .expect("agent builds");
    let agent = RunningAgent::spawn(agent);
    let key = format!("{DEVICE}/camera/big.bin");
    eventually_within("the large file in the bucket", patience, || async {
        let objects = moto.objects(BUCKET).await?;
        objects.iter().any(|(k, _)| *k == key).then_some(())
    })
    .await;
    assert!(
        moto.get(BUCKET, &key).await == content,
        "the object is the file, byte for byte"
    );
    let data = agent.handle.status().data.expect("data status");
    assert_eq!(
        data.uploaded_parts,
        (5 - done) as u64,
        "only the parts not yet sent were sent: {data:?}"
    );
    let after = upload_state(&state_file).expect("state");
    assert!(after.pending.is_none());
    assert_eq!(after.uploaded.len(), 3);
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_runtime_without_export_directories_refuses_the_version() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = std::sync::Arc::new(MemoryRuntime::new());
    let agent = server
        .agent_builder("data-memory", runtime.clone())
        .timing(timing())
        .state_dir(state.path())
        .build()
        .expect("agent builds");
    let mut agent = spawn_registered(agent).await;
    storage(&server, "data-memory", 9).await;
    server
        .management_client()
        .create("default", &workload("data-memory", "true"))
        .await
        .expect("workload created");
    let reason = refusal(&mut agent).await;
    assert!(
        reason.contains("data.egress of workloads grabber")
            && reason.contains("no export directory"),
        "{reason}"
    );
    assert!(runtime.names().is_empty(), "nothing of the version runs");
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn egress_without_storage_refuses_the_version_and_says_why() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let agent = server
        .agent_builder(
            "data-nostore",
            process_runtime(&dir.path().join("runtime")).await,
        )
        .timing(timing())
        .state_dir(dir.path().join("state"))
        .build()
        .expect("agent builds");
    let mut agent = spawn_registered(agent).await;
    server
        .management_client()
        .create("default", &workload("data-nostore", "exec sleep 3600"))
        .await
        .expect("workload created");
    let reason = refusal(&mut agent).await;
    assert!(
        reason
            .contains("workloads grabber have data.egress paths but the device has no storage.s3"),
        "{reason}"
    );
    agent.stop().await;
    server.stop().await;
}
