//! The podman runtime with real podman, where podman can start pods; elsewhere the
//! test says plainly why it could not run (see docs/agent.md).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flotta_agent_lib::WorkloadRuntime;
use flotta_agent_lib::runtime::{PodmanOptions, PodmanRuntime};
use flotta_core::reconcile::WorkloadPhase;
use flotta_core::wire::Workload;

/// A local image: nothing can be pulled on the test machines.
const IMAGE: &str = "localhost/flotta-rs-test-busybox:latest";

fn podman(args: &[&str]) -> Result<String, String> {
    let output = Command::new("podman")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run podman: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Imports a one-binary busybox image from the host's static busybox.
fn test_image(dir: &Path) -> Result<(), String> {
    if podman(&["image", "exists", IMAGE]).is_ok() {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no busybox binary on the host to build the test image from")?;
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
            .map_err(|e| e.to_string())?;
    }
    let tarball = dir.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        return Err(format!("tar failed: {status}"));
    }
    podman(&["import", &tarball.display().to_string(), IMAGE]).map(|_| ())
}

#[tokio::test]
async fn a_pod_is_played_listed_and_taken_down() {
    if Command::new("podman").arg("--version").output().is_err() {
        println!("skipped: podman not found in PATH");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    if let Err(reason) = test_image(dir.path()) {
        println!("skipped: no local test image for podman: {reason}");
        return;
    }
    let runtime = PodmanRuntime::open(PodmanOptions::new(dir.path().join("manifests")))
        .await
        .expect("open");
    let workload = Workload {
        name: Some("flotta-rs-it-sleeper".into()),
        specification: Some(format!(
            "containers:\n- name: main\n  image: {IMAGE}\n  command: [/bin/sleep, '300']\n"
        )),
        ..Default::default()
    };
    if let Err(error) = runtime.apply(&workload).await {
        println!("skipped: podman kube play cannot start pods here: {error}");
        let _ = runtime.remove("flotta-rs-it-sleeper").await;
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let listed = runtime.list().await.expect("list");
        let state = listed
            .into_iter()
            .find(|w| w.name == "flotta-rs-it-sleeper")
            .expect("the pod is listed");
        if state.phase == WorkloadPhase::Running || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let removed = runtime.remove("flotta-rs-it-sleeper").await;
    assert_eq!(state.phase, WorkloadPhase::Running);
    removed.expect("remove");
    assert!(
        runtime
            .list()
            .await
            .expect("list")
            .iter()
            .all(|w| w.name != "flotta-rs-it-sleeper")
    );
}
