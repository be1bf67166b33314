//! The process runtime with real processes: start, environment, logs, restarts with
//! backoff, phases, clean stop, replacement and leftovers of a killed agent.

use std::path::Path;
use std::time::{Duration, Instant};

use flotta_agent_lib::runtime::{ProcessOptions, ProcessRuntime};
use flotta_agent_lib::{RuntimeError, WorkloadRuntime, WorkloadState};
use flotta_core::reconcile::WorkloadPhase;
use flotta_core::wire::Workload;
use flotta_testing::eventually;

fn options(dir: &Path) -> ProcessOptions {
    let mut options = ProcessOptions::new(dir);
    options.restart =
        flotta_core::backoff::Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
    options.stable_after = Duration::from_secs(60);
    options.stop_grace = Duration::from_secs(2);
    options
}

fn workload(name: &str, pod: &str) -> Workload {
    Workload {
        name: Some(name.into()),
        specification: Some(pod.into()),
        ..Default::default()
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

async fn phase(runtime: &ProcessRuntime, name: &str) -> Option<WorkloadPhase> {
    runtime
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|w| w.name == name)
        .map(|w| w.phase)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn a_workload_runs_with_its_environment_and_logs_then_stops_on_remove() {
    let dir = tempfile::tempdir().expect("dir");
    let runtime = ProcessRuntime::open(options(dir.path()))
        .await
        .expect("open");
    let mut recorder = workload(
        "recorder",
        r#"
containers:
- name: main
  image: ignored
  command: ["/bin/sh", "-c"]
  args: ["echo \"greeting=$GREETING level=$LEVEL pod=$POD\"; echo to-stderr >&2; exec sleep 300"]
  env:
  - name: GREETING
    value: hello-$(POD)
  - name: POD
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - name: LEVEL
    valueFrom: {configMapKeyRef: {name: settings, key: level}}
  envFrom:
  - configMapRef: {name: settings}
    prefix: CM_
- name: side
  command: ["sleep", "300"]
"#,
    );
    recorder.configmaps = Some(vec![
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: debug}\n"
            .into(),
    ]);
    runtime.apply(&recorder).await.expect("apply");

    let listed = runtime.list().await.expect("list");
    assert_eq!(
        listed,
        vec![WorkloadState {
            name: "recorder".into(),
            phase: WorkloadPhase::Running,
        }]
    );
    let log = runtime.log_file("recorder", "main");
    let line = eventually("the greeting in the log", || async {
        read(&log)
            .lines()
            .find(|l| l.starts_with("greeting="))
            .map(str::to_owned)
    })
    .await;
    // GREETING was expanded before POD was defined, so $(POD) stays as written.
    assert_eq!(line, "greeting=hello-$(POD) level=debug pod=recorder");
    eventually("stderr in the same log", || async {
        read(&log).contains("to-stderr").then_some(())
    })
    .await;

    let pids: Vec<u32> = runtime.pids("recorder").into_iter().flatten().collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|pid| alive(*pid)));
    assert!(dir.path().join("recorder/main.pid").exists());

    runtime.remove("recorder").await.expect("remove");
    assert!(runtime.list().await.expect("list").is_empty());
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still runs after remove");
    }
    assert!(!dir.path().join("recorder/main.pid").exists());
    assert!(read(&log).contains("--- flotta: stopped"));
    runtime.remove("recorder").await.expect("remove again");
}

#[tokio::test]
async fn a_crashing_process_is_failed_and_restarted_with_growing_waits() {
    let dir = tempfile::tempdir().expect("dir");
    let runtime = ProcessRuntime::open(options(dir.path()))
        .await
        .expect("open");
    let crasher = workload(
        "crasher",
        "containers:\n- name: c\n  command: [/bin/sh, -c, 'echo run; exit 3']\n",
    );
    runtime.apply(&crasher).await.expect("apply");
    let log = runtime.log_file("crasher", "c");
    let started = Instant::now();
    // The fourth exit, not the fourth start: between an exit and the next
    // start the workload is Failed, while the process runs it is Running.
    eventually("four exits", || async {
        (read(&log).matches("exited (exit status: 3)").count() >= 4).then_some(())
    })
    .await;
    // Waits of 100, 200 and 400 ms between the four runs; the next is 800 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert!(
        read(&log).contains("exited (exit status: 3)"),
        "{}",
        read(&log)
    );
    // Between runs, and once the fourth run has exited, the workload is failed.
    crate::harness::eventually("the crasher reported failed", || async {
        (phase(&runtime, "crasher").await == Some(WorkloadPhase::Failed)).then_some(())
    })
    .await;
    runtime.remove("crasher").await.expect("remove");
}

#[tokio::test]
async fn restart_policy_never_leaves_an_exited_process_failed() {
    let dir = tempfile::tempdir().expect("dir");
    let runtime = ProcessRuntime::open(options(dir.path()))
        .await
        .expect("open");
    let once = workload(
        "once",
        "restartPolicy: Never\ncontainers:\n- name: c\n  command: [/bin/sh, -c, 'echo once']\n",
    );
    runtime.apply(&once).await.expect("apply");
    let log = runtime.log_file("once", "c");
    eventually("the exit", || async {
        read(&log).contains("exited").then_some(())
    })
    .await;
    // Time is the point: a restart would come 100 ms after the exit; 400 ms without
    // one shows `Never` is honoured.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(read(&log).matches("once\n").count(), 1, "{}", read(&log));
    assert_eq!(phase(&runtime, "once").await, Some(WorkloadPhase::Failed));
}

#[tokio::test]
async fn a_stubborn_process_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("dir");
    let mut opts = options(dir.path());
    opts.stop_grace = Duration::from_millis(300);
    let runtime = ProcessRuntime::open(opts).await.expect("open");
    let stubborn = workload(
        "stubborn",
        "containers:\n- name: c\n  command: [/bin/sh, -c, 'trap \"echo ignoring\" TERM; echo ready; while true; do sleep 0.05; done']\n",
    );
    runtime.apply(&stubborn).await.expect("apply");
    let log = runtime.log_file("stubborn", "c");
    eventually("ready", || async {
        read(&log).contains("ready").then_some(())
    })
    .await;
    let pid = runtime.pids("stubborn")[0].expect("pid");
    let started = Instant::now();
    runtime.remove("stubborn").await.expect("remove");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!alive(pid));
    assert!(read(&log).contains("signal: 9"), "{}", read(&log));
}

#[tokio::test]
async fn a_new_definition_replaces_the_processes() {
    let dir = tempfile::tempdir().expect("dir");
    let runtime = ProcessRuntime::open(options(dir.path()))
        .await
        .expect("open");
    let first = workload("web", "containers:\n- name: c\n  command: [sleep, '300']\n");
    runtime.apply(&first).await.expect("apply");
    let pid = runtime.pids("web")[0].expect("pid");

    let second = workload("web", "containers:\n- name: c\n  command: [sleep, '301']\n");
    runtime.apply(&second).await.expect("replace");
    let new_pid = runtime.pids("web")[0].expect("pid");
    assert_ne!(new_pid, pid);
    assert!(!alive(pid));
    let listed = runtime.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "web");
    runtime.shutdown().await;
    assert!(!alive(new_pid));
    assert!(runtime.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn definitions_that_cannot_run_fail_without_leaving_anything_running() {
    let dir = tempfile::tempdir().expect("dir");
    let runtime = ProcessRuntime::open(options(dir.path()))
        .await
        .expect("open");
    let cases = [
        (
            "no-command",
            "containers:\n- name: c\n  image: quay.io/x\n",
            "command is empty",
        ),
        ("not-yaml", "containers: [", "not a valid PodSpec"),
        (
            "init",
            "initContainers:\n- name: i\n  command: [true]\ncontainers:\n- name: c\n  command: [sleep, '1']\n",
            "initContainers",
        ),
        (
            "secret",
            "containers:\n- name: c\n  command: [sleep, '1']\n  env:\n  - name: P\n    valueFrom: {secretKeyRef: {name: s, key: k}}\n",
            "secretKeyRef",
        ),
        (
            "missing-map",
            "containers:\n- name: c\n  command: [sleep, '1']\n  env:\n  - name: P\n    valueFrom: {configMapKeyRef: {name: m, key: k}}\n",
            "configMapKeyRef",
        ),
        (
            "bad-name",
            "containers:\n- name: ../c\n  command: [sleep, '1']\n",
            "spec.containers[0].name",
        ),
        // The first container starts, the second cannot: the first is stopped again.
        (
            "missing-program",
            "containers:\n- name: ok\n  command: [sleep, '300']\n- name: bad\n  command: [/nonexistent/program]\n",
            "could not start",
        ),
    ];
    for (name, pod, expected) in cases {
        let error = runtime.apply(&workload(name, pod)).await.expect_err(name);
        assert!(
            matches!(error, RuntimeError::ApplyFailed { .. }),
            "{name}: {error}"
        );
        assert!(error.to_string().contains(expected), "{name}: {error}");
    }
    assert!(runtime.list().await.expect("list").is_empty());
    assert!(!dir.path().join("missing-program/ok.pid").exists());
    assert!(matches!(
        runtime
            .apply(&workload("../escape", "containers: []"))
            .await,
        Err(RuntimeError::ApplyFailed { .. })
    ));
    assert!(matches!(
        runtime.apply(&Workload::default()).await,
        Err(RuntimeError::UnnamedWorkload)
    ));
}

#[tokio::test]
async fn processes_left_by_a_killed_agent_are_stopped_when_the_runtime_opens() {
    let dir = tempfile::tempdir().expect("dir");
    // A process of "an earlier agent": started outside any runtime, in its own
    // process group, recorded in a pid file as the runtime records them.
    let mut leftover = std::process::Command::new("sleep");
    std::os::unix::process::CommandExt::process_group(&mut leftover, 0);
    let mut leftover = leftover.arg("300").spawn().expect("spawn sleep");
    let pid = leftover.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let start = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(19))
        .expect("start time")
        .to_owned();
    std::fs::create_dir_all(dir.path().join("old")).expect("dir");
    std::fs::write(dir.path().join("old/c.pid"), format!("{pid} {start}\n")).expect("pid file");
    // A stale pid file naming a pid reused by another process must be left alone.
    std::fs::write(
        dir.path().join("old/stale.pid"),
        format!("{} 1\n", std::process::id()),
    )
    .expect("stale pid file");

    let _runtime = ProcessRuntime::open(options(dir.path()))
        .await
        .expect("open");
    let status = leftover.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
    assert!(!dir.path().join("old/c.pid").exists());
    assert!(!dir.path().join("old/stale.pid").exists());
}

#[tokio::test]
async fn secret_volume_files_are_owner_only_and_go_with_the_workload() {
    use base64::Engine;
    use flotta_core::reconcile::WorkloadInputs;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("dir");
    let runtime = ProcessRuntime::open(options(dir.path()))
        .await
        .expect("open");
    let secret = flotta_core::wire::Secret {
        name: Some("tls".into()),
        data: Some(format!(
            "{{\"tls.key\": \"{}\"}}",
            base64::engine::general_purpose::STANDARD.encode("KEY")
        )),
        extra: Default::default(),
    };
    let definition = workload(
        "vol",
        "containers: [{name: main, command: [sleep, '300']}]\nvolumes: [{name: certs, secret: {secretName: tls}}]\n",
    );
    let inputs = WorkloadInputs::resolve(&definition, &[secret]).expect("inputs");
    runtime
        .apply_with(&definition, &inputs)
        .await
        .expect("apply");
    let file = dir.path().join("vol/volumes/certs/tls.key");
    assert_eq!(read(&file), "KEY");
    let mode = std::fs::metadata(&file).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    runtime.remove("vol").await.expect("remove");
    assert!(
        !dir.path().join("vol/volumes").exists(),
        "secret files removed"
    );
    // Without the configuration's secrets the reference cannot be resolved.
    let error = runtime.apply(&definition).await.expect_err("no secrets");
    assert!(
        error.to_string().contains("spec.volumes[0].secret"),
        "{error}"
    );
}
