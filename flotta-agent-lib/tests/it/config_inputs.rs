//! The agent applies everything it plans: the `spec.files` overlay (content, mode,
//! owner, removal of what it created, restoration of what it replaced) and refuses
//! a version naming a file outside its allowed roots, applying nothing of it.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use flotta_agent_lib::{AgentEvent, MemoryRuntime};
use flotta_core::model::EdgeDevice;

use crate::harness::{RunningAgent, TestServer};

async fn set_files(server: &TestServer, device: &str, files: serde_json::Value) {
    server
        .management_client()
        .patch::<EdgeDevice>(
            "default",
            device,
            &serde_json::json!({"spec": {"files": files}}),
        )
        .await
        .expect("device patched");
}

fn applied(event: &AgentEvent) -> bool {
    matches!(event, AgentEvent::ConfigApplied { .. })
}

/// The owner the test can give files: another user when running as root.
fn owner() -> (String, u32, u32) {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    if uid == 0 {
        ("65534:65534".into(), 65534, 65534)
    } else {
        let gid = std::fs::metadata("/proc/self")
            .map(|m| m.gid())
            .unwrap_or(0);
        (format!("{uid}:{gid}"), uid, gid)
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("file").permissions().mode() & 0o7777
}

#[tokio::test]
async fn the_files_overlay_is_written_removed_restored_and_refused_outside_its_roots() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let root_dir = tempfile::tempdir().expect("root");
    let root = root_dir.path().join("files");
    std::fs::create_dir_all(&root).expect("root");
    let outside = tempfile::tempdir().expect("outside");
    let preexisting = root.join("pre.conf");
    std::fs::write(&preexisting, "original").expect("pre-existing file");
    std::fs::set_permissions(&preexisting, std::fs::Permissions::from_mode(0o640)).expect("mode");

    let agent = server
        .agent_builder("files-1", Arc::new(MemoryRuntime::new()))
        .state_dir(state.path())
        .file_roots([root.display().to_string()])
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent.wait_for("first apply", applied).await;

    let (owner, uid, gid) = owner();
    let a = root.join("app/a.conf");
    let b = root.join("b.bin");
    set_files(
        &server,
        "files-1",
        serde_json::json!([
            {"path": a.display().to_string(), "content": "mode=fast\n", "mode": "0640", "owner": owner},
            {"path": b.display().to_string(), "encoding": "base64",
             "content": base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 255])},
            {"path": preexisting.display().to_string(), "content": "replaced", "mode": "0600"},
        ]),
    )
    .await;
    agent.wait_for("the overlay applied", applied).await;
    assert_eq!(std::fs::read_to_string(&a).expect("a"), "mode=fast\n");
    assert_eq!(mode(&a), 0o640);
    let meta = std::fs::metadata(&a).expect("a");
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "owner");
    assert_eq!(std::fs::read(&b).expect("b"), [0u8, 1, 2, 255]);
    assert_eq!(mode(&b), 0o644, "the default mode");
    assert_eq!(
        std::fs::read_to_string(&preexisting).expect("pre"),
        "replaced"
    );

    // Entries removed: what the agent created goes, what it replaced comes back.
    set_files(
        &server,
        "files-1",
        serde_json::json!([{"path": b.display().to_string(), "encoding": "base64",
            "content": base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 255])}]),
    )
    .await;
    agent.wait_for("the removal applied", applied).await;
    assert!(!a.exists(), "a file the agent created is removed");
    assert_eq!(
        std::fs::read_to_string(&preexisting).expect("pre"),
        "original",
        "a file the agent replaced is restored"
    );
    assert_eq!(mode(&preexisting), 0o640);
    assert!(b.exists());

    // A version naming a file outside the roots is refused whole.
    let inside = root.join("c.conf");
    let forbidden = outside.path().join("evil.conf");
    set_files(
        &server,
        "files-1",
        serde_json::json!([
            {"path": inside.display().to_string(), "content": "c"},
            {"path": forbidden.display().to_string(), "content": "x"},
        ]),
    )
    .await;
    let seen = agent
        .wait_for("the refusal", |e| {
            matches!(e, AgentEvent::ApplyFailed { .. })
        })
        .await;
    let Some(AgentEvent::ApplyFailed { reason, .. }) = seen.last() else {
        panic!("no ApplyFailed in {seen:?}");
    };
    assert!(
        reason.contains(&forbidden.display().to_string())
            && reason.contains("outside the allowed roots"),
        "{reason}"
    );
    assert!(!forbidden.exists());
    assert!(
        !inside.exists(),
        "nothing of the refused version is applied"
    );
    assert!(b.exists(), "the running configuration stays");
    let status = agent.handle.status();
    assert!(status.failed_version.is_some());
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_failed_version_rolls_its_files_back() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let root = tempfile::tempdir().expect("root");
    let runtime = Arc::new(MemoryRuntime::new());
    let agent = server
        .agent_builder("files-2", runtime.clone())
        .state_dir(state.path())
        .file_roots([root.path().display().to_string()])
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent.wait_for("first apply", applied).await;
    let a = root.path().join("a.conf");
    let b = root.path().join("b.conf");
    let file = |path: &Path, content: &str| serde_json::json!({"path": path.display().to_string(), "content": content});
    set_files(&server, "files-2", serde_json::json!([file(&a, "one")])).await;
    agent.wait_for("the first overlay", applied).await;

    // A workload the runtime refuses: every version holding it fails.
    runtime.refuse("bad");
    server
        .management_client()
        .create::<flotta_core::model::EdgeWorkload>(
            "default",
            &crate::harness::workload("bad", "files-2", "bad:1"),
        )
        .await
        .expect("workload");
    agent
        .wait_for("the first rollback", |e| {
            matches!(e, AgentEvent::RolledBack { .. })
        })
        .await;

    // Files changed in a version that then fails are rolled back with it: the files
    // are written before the workloads start, and the rollback writes the last good
    // content again and removes what the failed version created.
    set_files(
        &server,
        "files-2",
        serde_json::json!([file(&a, "two"), file(&b, "new")]),
    )
    .await;
    let seen = agent
        .wait_for("the second rollback", |e| {
            matches!(e, AgentEvent::RolledBack { .. })
        })
        .await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, AgentEvent::ApplyFailed { reason, .. } if reason.contains("bad"))),
        "{seen:?}"
    );
    assert_eq!(std::fs::read_to_string(&a).expect("a"), "one");
    assert!(!b.exists(), "the failed version's new file is removed");
    agent.stop().await;
    server.stop().await;
}

/// The reason the agent gives for refusing a version whose spec is `spec` plus a
/// file of the overlay; asserts that the file (the version's only other change) was
/// not written: nothing of a refused version is applied.
async fn refusal_of(device: &str, spec: serde_json::Value) -> String {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let root_dir = tempfile::tempdir().expect("root");
    let agent = server
        .agent_builder(device, Arc::new(MemoryRuntime::new()))
        .state_dir(state.path())
        .file_roots([root_dir.path().display().to_string()])
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent.wait_for("first apply", applied).await;
    let marker = root_dir.path().join("refused.conf");
    let mut spec = spec;
    spec["files"] = serde_json::json!([{"path": marker.display().to_string(), "content": "x"}]);
    server
        .management_client()
        .patch::<EdgeDevice>("default", device, &serde_json::json!({ "spec": spec }))
        .await
        .expect("device patched");
    let seen = agent
        .wait_for("the refusal", |e| {
            matches!(e, AgentEvent::ApplyFailed { .. })
        })
        .await;
    let Some(AgentEvent::ApplyFailed { reason, .. }) = seen.last() else {
        panic!("no ApplyFailed in {seen:?}");
    };
    assert!(
        !marker.exists(),
        "nothing of the refused version is applied"
    );
    let reason = reason.clone();
    agent.stop().await;
    server.stop().await;
    reason
}

/// The agent does not fetch an OS image's hosted objects: a version naming them is
/// refused whole, with a reason that says so, rather than applied without them.
#[tokio::test]
async fn an_os_target_with_hosted_objects_is_refused() {
    let reason = refusal_of(
        "hosted-1",
        serde_json::json!({"osInformation": {"commitID": "c2", "automaticallyUpgrade": true,
            "hostedObjectsURL": "https://images.example.com/objects"}}),
    )
    .await;
    assert!(
        reason.contains("hostedObjectsURL") && reason.contains("not supported"),
        "{reason}"
    );
}

/// The agent does not mount block devices: a version asking for mounts is
/// refused whole, naming them, rather than applied without them.
#[tokio::test]
async fn a_version_with_mounts_is_refused() {
    let reason = refusal_of(
        "mounts-1",
        serde_json::json!({"mounts": [{"device": "/dev/sdb1", "folder": "/var/lib/camera-data",
            "type": "ext4", "options": "rw,nosuid"}]}),
    )
    .await;
    assert!(
        reason.contains("configuration.mounts (/var/lib/camera-data) is not supported"),
        "{reason}"
    );
}
