//! Prefetch and update windows with the real `flotta-agent` binary and its podman
//! runtime, against the scripted OS's `podman` (a registry that can be down, kube
//! play and pod listing in its state file). What the device runs is read from that
//! state (the pods and their images), not from the status the agent reports.

use flotta_core::model::{EdgeDevice, EdgeWorkload, Event};
use flotta_testing::eventually_within;
use serde_json::json;

use crate::os_update::{PATIENCE, Rig, degraded_reason};

const SCRIPTED_OS: &str = env!("CARGO_BIN_EXE_flotta-scripted-os");

/// A rig whose agent runs workloads through the podman runtime and the scripted
/// podman (no OS backend).
async fn podman_rig(device: &str) -> Rig {
    let rig = Rig::start(device, "").await;
    std::os::unix::fs::symlink(SCRIPTED_OS, rig.path("bin/podman")).expect("link podman");
    let toml = std::fs::read_to_string(rig.path("agent.toml")).expect("agent.toml");
    let toml = toml
        .replace("runtime = \"memory\"\n", "runtime = \"podman\"\n")
        .replace("os = \"rpm-ostree\"\n", "os = \"none\"\n")
        .lines()
        .filter(|l| !l.starts_with("ostree_remotes_dir"))
        .collect::<Vec<_>>()
        .join("\n");
    let toml = format!(
        "{toml}\n\n[podman]\nbinary = \"{}\"\nmanifest_dir = \"{}\"\n",
        rig.path("bin/podman").display(),
        rig.path("podman").display()
    );
    std::fs::write(rig.path("agent.toml"), toml).expect("write agent.toml");
    rig
}

fn workload(device: &str, image: &str) -> EdgeWorkload {
    serde_json::from_value(json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "app", "namespace": "default"},
        "spec": {
            "type": "pod",
            "device": device,
            "pod": {"spec": {"containers": [{"name": "main", "image": image}]}},
        },
    }))
    .expect("workload")
}

async fn set_image(rig: &Rig, image: &str) {
    let client = rig.server.management_client();
    let mut stored: EdgeWorkload = client.get("default", "app").await.expect("get");
    stored.spec = workload(&rig.device, image).spec;
    client.replace("default", &stored).await.expect("replaced");
}

/// The images the scripted podman's pod `app` runs.
fn running_images(rig: &Rig) -> Option<Vec<String>> {
    let pod = rig.os()["pods"]["app"].clone();
    serde_json::from_value(pod["images"].clone()).ok()
}

async fn wait_running(rig: &Rig, image: &str) {
    eventually_within(&format!("the pod running {image}"), PATIENCE, || async {
        (running_images(rig) == Some(vec![image.to_owned()])).then_some(())
    })
    .await;
}

async fn start_with_app(rig: &Rig) -> crate::os_update::AgentProcess {
    let agent = rig.agent();
    rig.registered().await;
    rig.server
        .management_client()
        .create("default", &workload(&rig.device, "registry.test/app:1"))
        .await
        .expect("workload created");
    wait_running(rig, "registry.test/app:1").await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_down_mid_update_leaves_the_running_pod_and_the_update_applies_later() {
    let rig = podman_rig("prefetch-podman").await;
    let _agent = start_with_app(&rig).await;
    let plays = rig.calls(&["podman", "kube", "play"]);

    rig.change_os(|os| os["registryDown"] = true.into());
    set_image(&rig, "registry.test/app:2").await;
    let status = rig
        .status_where("the failed prefetch reported", |s| {
            degraded_reason(s).is_some_and(|r| {
                r.starts_with("PrefetchFailed") && r.contains("connection refused")
            })
        })
        .await;
    assert!(
        degraded_reason(&status).is_some_and(|r| r.contains("registry.test/app:2")),
        "{status}"
    );
    eventually_within("a retried pull", PATIENCE, || async {
        (rig.calls(&["podman", "pull", "registry.test/app:2"]) >= 2).then_some(())
    })
    .await;
    assert_eq!(
        running_images(&rig),
        Some(vec!["registry.test/app:1".to_owned()]),
        "the running pod is untouched"
    );
    assert_eq!(
        rig.calls(&["podman", "kube", "play"]),
        plays,
        "nothing played while the images are missing"
    );

    rig.change_os(|os| os["registryDown"] = false.into());
    wait_running(&rig, "registry.test/app:2").await;
    rig.status_where("the workload running again", |s| {
        s["workloads"].as_array().is_some_and(|w| {
            w.iter()
                .any(|w| w["name"] == "app" && w["phase"] == "Running")
        }) && degraded_reason(s).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_update_window_the_image_is_prefetched_and_not_applied() {
    let rig = podman_rig("window-podman").await;
    let _agent = start_with_app(&rig).await;
    let client = rig.server.management_client();
    let schedule = |at: String, grace: &str| {
        json!({"spec": {"updatePolicy": {"updateSchedule": {
            "at": at, "timeZone": "UTC", "startGraceDuration": grace,
        }}}})
    };
    // A one-hour window twelve hours from now: closed whatever the time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let hour = (now / 3600 + 12) % 24;
    client
        .patch::<EdgeDevice>(
            "default",
            &rig.device,
            &schedule(format!("0 {hour} * * *"), "1h"),
        )
        .await
        .expect("schedule set");
    set_image(&rig, "registry.test/app:2").await;
    // The version carrying app:2, as the device downloaded it (its own state file);
    // the wait for the window is reported for that version once its images are in.
    let version = eventually_within("the new version downloaded", PATIENCE, || async {
        let desired = std::fs::read_to_string(rig.path("state/desired.json")).ok()?;
        if !desired.contains("registry.test/app:2") {
            return None;
        }
        let desired: serde_json::Value = serde_json::from_str(&desired).ok()?;
        desired["version"].as_str().map(str::to_owned)
    })
    .await;
    let waiting = eventually_within("the wait for the window reported", PATIENCE, || async {
        let events = client
            .list::<Event>(
                Some("default"),
                &flotta_client::ListParams::default()
                    .fields(format!("involvedObject.name={}", rig.device)),
            )
            .await
            .ok()?;
        events.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("WaitingForUpdateWindow")
                && e.message.as_deref().is_some_and(|m| m.contains(&version))
        })
    })
    .await;
    let message = waiting.message.unwrap_or_default();
    assert!(
        message.contains("waiting for the update window"),
        "{message}"
    );
    let images: Vec<String> =
        serde_json::from_value(rig.os()["images"].clone()).unwrap_or_default();
    assert!(
        images.iter().any(|i| i == "registry.test/app:2"),
        "prefetched outside the window: {images:?}"
    );
    assert_eq!(
        running_images(&rig),
        Some(vec!["registry.test/app:1".to_owned()]),
        "not applied outside the window"
    );

    // A window open every minute for a minute: the update applies.
    client
        .patch::<EdgeDevice>("default", &rig.device, &schedule("* * * * *".into(), "1m"))
        .await
        .expect("schedule set");
    wait_running(&rig, "registry.test/app:2").await;
}
