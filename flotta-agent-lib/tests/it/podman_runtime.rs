//! The podman runtime with real podman (Debian's 4.3, rootful, in namespaces of
//! the test: `flotta_testing::podman`): a workload with a config map and a secret
//! played, its environment, files, logs and exported data checked from the host,
//! listed, found again by a new runtime (an agent restart), replaced by a new
//! definition and removed; a pod that cannot start is refused with podman's
//! reason, one whose container fails is listed failed.

use std::path::Path;
use std::time::Duration;

use flotta_agent_lib::WorkloadRuntime;
use flotta_agent_lib::logs::cri_message;
use flotta_agent_lib::runtime::{PodmanRuntime, RuntimeError};
use flotta_core::reconcile::{WorkloadInputs, WorkloadPhase};
use flotta_core::wire::{Secret, Workload};
use flotta_testing::eventually_within;
use flotta_testing::podman::{self, Podman};

/// A local image: nothing can be pulled on the test machines.
const IMAGE: &str = "localhost/flotta-rs-test-busybox:latest";

/// Starting pods on vfs storage with two cores is slow when the machine is busy.
const PATIENCE: Duration = Duration::from_secs(120);

/// The podman tests are ignored where podman cannot run; on CI that is a failure.
#[test]
fn podman_is_there_on_ci() {
    podman::require_in_ci();
}

async fn podman_with_image() -> Podman {
    let podman = Podman::start().await;
    podman.import_busybox(IMAGE).await;
    podman
}

fn secret() -> Secret {
    Secret {
        // "s3cr3t" and "fast-lane", base64.
        name: Some("web-token".into()),
        data: Some(r#"{"token": "czNjcjN0", "lane": "ZmFzdC1sYW5l"}"#.into()),
        extra: Default::default(),
    }
}

/// A workload whose container records what it was given in `markers` (a host
/// directory), exports a file, writes a line to stdout and one to stderr, and
/// sleeps.
fn workload(markers: &Path, version: &str) -> Workload {
    let script = format!(
        "echo \"mode=$MODE token=$TOKEN lane=$lane export=$FLOTTA_EXPORT_DIR\" > /markers/env.tmp; \
         cat /config/greeting > /markers/config.tmp; \
         cat /secret/token > /markers/secret.tmp; \
         echo {version} > /export/out-{version}.txt; \
         echo \"hello from {version}\"; echo \"complaint from {version}\" >&2; \
         for f in env config secret; do mv /markers/$f.tmp /markers/$f; done; \
         echo {version} > /markers/version; exec sleep 600"
    );
    let spec = serde_json::json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": "main",
            "image": IMAGE,
            "command": ["/bin/sh", "-c", script],
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "web-token", "key": "token"}}}
            ],
            "envFrom": [{"secretRef": {"name": "web-token"}}],
            "volumeMounts": [
                {"name": "markers", "mountPath": "/markers"},
                {"name": "config", "mountPath": "/config"},
                {"name": "secret", "mountPath": "/secret"}
            ]
        }],
        "volumes": [
            {"name": "markers", "hostPath": {"path": markers.display().to_string(), "type": "Directory"}},
            {"name": "config", "configMap": {"name": "settings"}},
            {"name": "secret", "secret": {"secretName": "web-token"}}
        ]
    });
    Workload {
        name: Some("flotta-rs-it-web".into()),
        specification: Some(serde_yaml_ng::to_string(&spec).expect("spec")),
        configmaps: Some(vec![
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n  greeting: hello there\n".into(),
        ]),
        ..Default::default()
    }
}

async fn phase(runtime: &PodmanRuntime, name: &str) -> Option<WorkloadPhase> {
    let listed = runtime.list().await.expect("list");
    listed.into_iter().find(|w| w.name == name).map(|w| w.phase)
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs podman, runc, catatonit, busybox-static and root; scripts/test.sh runs it"]
async fn a_workload_is_played_with_its_inputs_listed_found_again_replaced_and_removed() {
    let podman = podman_with_image().await;
    let dir = tempfile::tempdir().expect("dir");
    let markers = dir.path().join("markers");
    std::fs::create_dir_all(&markers).expect("markers");
    let manifests = dir.path().join("manifests");
    let runtime = PodmanRuntime::open(podman.options(&manifests))
        .await
        .expect("open");
    let name = "flotta-rs-it-web";
    let first = workload(&markers, "v1");
    let inputs = WorkloadInputs::resolve(&first, &[secret()]).expect("inputs");
    runtime.apply_with(&first, &inputs).await.expect("play");

    eventually_within("the pod running", PATIENCE, || async {
        (phase(&runtime, name).await == Some(WorkloadPhase::Running)).then_some(())
    })
    .await;
    eventually_within("the container's markers", PATIENCE, || async {
        read(&markers.join("version")).filter(|v| v.trim() == "v1")
    })
    .await;
    assert_eq!(
        read(&markers.join("env")).as_deref(),
        Some("mode=fast token=s3cr3t lane=fast-lane export=/export\n"),
        "environment from the config map, the secret (env and envFrom) and the runtime"
    );
    assert_eq!(
        read(&markers.join("config")).as_deref(),
        Some("hello there")
    );
    assert_eq!(read(&markers.join("secret")).as_deref(), Some("s3cr3t"));

    // The export directory on the host holds what the container wrote to /export.
    let export = runtime.export_dir(name).expect("an export directory");
    assert_eq!(export, manifests.join(name).join("export"));
    assert_eq!(read(&export.join("out-v1.txt")).as_deref(), Some("v1\n"));

    // Both streams in the container's k8s-file log, as the log forwarding reads it.
    let files = runtime.log_files(name);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].0, "main");
    let log = files[0].1.clone();
    let messages = eventually_within("both lines in the log file", PATIENCE, || async {
        let text = read(&log)?;
        let messages: Vec<String> = text
            .lines()
            .map(|line| String::from_utf8_lossy(cri_message(line.as_bytes())).into_owned())
            .collect();
        (messages.len() >= 2).then_some(messages)
    })
    .await;
    assert!(
        messages.contains(&"hello from v1".to_owned()),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"complaint from v1".to_owned()),
        "{messages:?}"
    );

    // An agent restart: a new runtime over the same directory finds the pod.
    drop(runtime);
    let runtime = PodmanRuntime::open(podman.options(&manifests))
        .await
        .expect("open again");
    assert_eq!(phase(&runtime, name).await, Some(WorkloadPhase::Running));
    assert_eq!(runtime.log_files(name), files);
    assert_eq!(runtime.export_dir(name), Some(export.clone()));

    // A new definition replaces the pod.
    let second = workload(&markers, "v2");
    let inputs = WorkloadInputs::resolve(&second, &[secret()]).expect("inputs");
    runtime.apply_with(&second, &inputs).await.expect("replace");
    eventually_within("the new container's markers", PATIENCE, || async {
        read(&markers.join("version")).filter(|v| v.trim() == "v2")
    })
    .await;
    let listed = runtime.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].phase, WorkloadPhase::Running);
    let containers = podman
        .run(&["ps", "--all", "--format", "{{.Names}}"])
        .await
        .expect("podman ps");
    let mains: Vec<&str> = containers
        .lines()
        .filter(|l| l.starts_with("flotta-rs-it-web-main"))
        .collect();
    assert_eq!(
        mains.len(),
        1,
        "one container of the workload: {containers}"
    );
    let new_log = runtime.log_files(name)[0].1.clone();
    assert_ne!(new_log, log, "the new container logs to its own file");
    assert_eq!(read(&export.join("out-v1.txt")).as_deref(), Some("v1\n"));
    assert_eq!(read(&export.join("out-v2.txt")).as_deref(), Some("v2\n"));

    runtime.remove(name).await.expect("remove");
    assert_eq!(phase(&runtime, name).await, None);
    assert!(
        podman.run(&["pod", "exists", name]).await.is_err(),
        "the pod is gone"
    );
    assert!(runtime.log_files(name).is_empty());
    assert_eq!(runtime.export_dir(name), None);
    assert!(
        export.join("out-v2.txt").is_file(),
        "exported data outlives the workload"
    );
    assert!(
        !manifests.join(name).join("volumes").exists(),
        "secret files go with the workload"
    );
    runtime.remove(name).await.expect("removing again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs podman, runc, catatonit, busybox-static and root; scripts/test.sh runs it"]
async fn a_pod_that_cannot_start_is_refused_and_a_failing_one_is_listed_failed() {
    let podman = podman_with_image().await;
    let dir = tempfile::tempdir().expect("dir");
    let runtime = PodmanRuntime::open(podman.options(dir.path().join("manifests")))
        .await
        .expect("open");
    let missing = Workload {
        name: Some("flotta-rs-it-missing".into()),
        specification: Some(format!(
            "containers:\n- name: main\n  image: {IMAGE}\n  command: [/bin/no-such-program]\n"
        )),
        ..Default::default()
    };
    let error = runtime
        .apply(&missing)
        .await
        .expect_err("the program does not exist");
    assert!(
        matches!(&error, RuntimeError::ApplyFailed { name, .. } if name == "flotta-rs-it-missing"),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("/bin/no-such-program") && text.contains("no such file or directory"),
        "podman's reason: {text}"
    );
    assert_eq!(
        phase(&runtime, "flotta-rs-it-missing").await,
        None,
        "nothing of it stays"
    );

    let failing = Workload {
        name: Some("flotta-rs-it-failing".into()),
        specification: Some(format!(
            "restartPolicy: Never\ncontainers:\n- name: main\n  image: {IMAGE}\n  command: [/bin/sh, -c, 'echo giving up; exit 3']\n"
        )),
        ..Default::default()
    };
    runtime.apply(&failing).await.expect("it starts");
    eventually_within("the failed container listed failed", PATIENCE, || async {
        (phase(&runtime, "flotta-rs-it-failing").await == Some(WorkloadPhase::Failed)).then_some(())
    })
    .await;
    runtime
        .remove("flotta-rs-it-failing")
        .await
        .expect("remove");
}
