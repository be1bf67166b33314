//! The `flotta-agent` binary killed with SIGKILL in the middle of an apply, with
//! the process runtime: the state directory stays consistent (the configuration
//! being applied is *desired*, the last complete one is still *current*), and the
//! agent restarted on the same state directory converges on the new configuration
//! with exactly one process per container and none of the old ones.
//!
//! The new configuration comes in one change (the device's label moves it from one
//! set of workloads to another), and its apply is slow on purpose: the old
//! workloads' processes ignore SIGTERM, so removing each one waits for the
//! runtime's stop grace period before SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotta_core::model::{EdgeDevice, EdgeWorkload};
use flotta_server::app::pki_files;
use flotta_testing::{TestServer, eventually_within};

const AGENT: &str = env!("CARGO_BIN_EXE_flotta-agent");
const DEVICE: &str = "killed-agent";
const WORKLOADS: usize = 3;

/// The agent process, killed when dropped so that a failing test leaves none behind.
pub(crate) struct AgentProcess(Child);

impl AgentProcess {
    pub(crate) fn start(config: &Path, log: &Path) -> AgentProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("agent log");
        let child = Command::new(AGENT)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("flotta-agent starts");
        AgentProcess(child)
    }

    pub(crate) fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the agent");
        self.0.wait().expect("reap the agent");
    }

    /// SIGTERM (the binary then stops its workloads) and wait.
    pub(crate) fn terminate(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Pids of live processes whose command line holds `marker`.
pub(crate) fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        })
        .collect()
}

/// The workload processes carrying `marker`, without the short-lived forks of
/// their shells (a command substitution, or a command between fork and exec,
/// carries its shell's command line too): those whose parent carries the marker.
pub(crate) fn workloads_with(marker: &str) -> Vec<u32> {
    let all = processes_with(marker);
    all.iter()
        .copied()
        .filter(|pid| parent_of(*pid).is_none_or(|parent| !all.contains(&parent)))
        .collect()
}

/// The parent of `pid`, from `/proc/PID/stat` (the field after the command name
/// in parentheses, which may itself hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The workload processes started by this run, ended at the end of the test
/// whatever happened.
struct Markers(String);

impl Markers {
    fn version(&self, version: u32) -> String {
        format!("{}-v{version}", self.0)
    }
}

impl Drop for Markers {
    fn drop(&mut self) {
        for pid in processes_with(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// A workload for devices labelled `stage={stage}` of one container that ignores
/// SIGTERM; `$0` of its shell is the marker, so its processes can be found.
fn workload(name: &str, stage: &str, marker: &str) -> EdgeWorkload {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"stage": stage}},
            "pod": {"spec": {"containers": [{"name": "main", "image": "unused", "command": [
                "sh", "-c", "trap '' TERM; while true; do sleep 1; done", marker
            ]}]}}}
    }))
    .expect("workload")
}

/// The version recorded in the agent's state file `item`, if the file exists; a
/// file that exists must decode.
fn version_in(state_dir: &Path, item: &str) -> Option<String> {
    let bytes = std::fs::read(state_dir.join(item)).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{item} is not valid JSON after a kill: {e}"));
    Some(
        value["version"]
            .as_str()
            .unwrap_or_else(|| panic!("{item} has no version: {value}"))
            .to_owned(),
    )
}

/// Polls `check` every 20 ms for up to `within`.
pub(crate) fn wait_until(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn write_config(dir: &Path, data_dir: &Path, edge_server: &str, ca_pem: &str) -> PathBuf {
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, ca_pem).expect("write CA");
    let pki = data_dir.join("pki");
    let config = dir.join("agent.toml");
    let toml = format!(
        r#"server = "{edge_server}"
ca = "{ca}"
registration_certificate = "{cert}"
registration_key = "{key}"
state_dir = "{state}"
device_id = "{DEVICE}"
runtime = "process"
heartbeat_period_seconds = 1

[process]
log_dir = "{logs}"
initial_backoff_seconds = 1
max_backoff_seconds = 2
stop_grace_seconds = 1
"#,
        ca = ca.display(),
        cert = pki.join(pki_files::REGISTER_CERT).display(),
        key = pki.join(pki_files::REGISTER_KEY).display(),
        state = dir.join("state").display(),
        logs = dir.join("workloads").display(),
    );
    std::fs::write(&config, toml).expect("write agent.toml");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_binary_killed_mid_apply_converges_after_a_restart() {
    let server = TestServer::start().await;
    let admin = server.admin_config().clone();
    let client = server.management_client();

    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let agent_config = write_config(
        dir.path(),
        server.data_dir(),
        &admin.edge_server,
        &admin.certificate_authority,
    );
    let agent_log = dir.path().join("agent.log");
    let markers = Markers(format!("flotta-kill-test-{}", std::process::id()));
    let (v1, v2) = (markers.version(1), markers.version(2));
    for i in 0..WORKLOADS {
        for (stage, marker) in [("one", &v1), ("two", &v2)] {
            client
                .create::<EdgeWorkload>(
                    "default",
                    &workload(&format!("{stage}-{i}"), stage, marker),
                )
                .await
                .expect("workload created");
        }
    }

    let mut agent = AgentProcess::start(&agent_config, &agent_log);
    // Enrolment labels are not copied to the device: label it through the API once
    // it is registered.
    eventually_within("the agent to register", Duration::from_secs(60), || async {
        match client.get::<EdgeDevice>("default", DEVICE).await {
            Ok(device) => Some(device),
            Err(error) if error.is_not_found() => None,
            Err(error) => panic!("reading the device: {error}"),
        }
    })
    .await;
    client
        .patch::<EdgeDevice>(
            "default",
            DEVICE,
            &serde_json::json!({"metadata": {"labels": {"stage": "one"}}}),
        )
        .await
        .expect("device labelled");
    let v1_applied = tokio::task::spawn_blocking({
        let (state_dir, v1) = (state_dir.clone(), v1.clone());
        move || {
            wait_until("the first configuration", Duration::from_secs(60), || {
                // Applied completely: current catches up with desired at the end.
                workloads_with(&v1).len() == WORKLOADS
                    && version_in(&state_dir, "current.json").is_some()
                    && version_in(&state_dir, "current.json")
                        == version_in(&state_dir, "desired.json")
            });
            version_in(&state_dir, "current.json").expect("current version")
        }
    })
    .await
    .expect("wait task");

    // One change: the device moves to stage two, whose workloads replace the old
    // ones; removing each old one takes a stop grace period.
    client
        .patch::<EdgeDevice>(
            "default",
            DEVICE,
            &serde_json::json!({"metadata": {"labels": {"stage": "two"}}}),
        )
        .await
        .expect("device relabelled");
    let (desired_at_kill, current_at_kill, v1_at_kill) = tokio::task::spawn_blocking({
        let (state_dir, v1) = (state_dir.clone(), v1.clone());
        move || {
            wait_until("the apply under way", Duration::from_secs(60), || {
                (1..WORKLOADS).contains(&workloads_with(&v1).len())
            });
            agent.kill();
            (
                version_in(&state_dir, "desired.json"),
                version_in(&state_dir, "current.json"),
                workloads_with(&v1).len(),
            )
        }
    })
    .await
    .expect("kill task");
    let desired_at_kill = desired_at_kill.expect("desired.json after the kill");
    // Consistent: the last complete configuration is still current, the one being
    // applied is desired.
    assert_eq!(
        current_at_kill.as_deref(),
        Some(v1_applied.as_str()),
        "current.json after a kill mid-apply"
    );
    assert_ne!(
        desired_at_kill, v1_applied,
        "the kill came before the apply"
    );
    println!(
        "agent killed with {v1_at_kill} of {WORKLOADS} old workloads left: current {current_at_kill:?}, desired {desired_at_kill}"
    );

    let restarted = Instant::now();
    let mut agent = AgentProcess::start(&agent_config, &agent_log);
    let converged = tokio::task::spawn_blocking({
        let (state_dir, v1, v2, desired) = (
            state_dir.clone(),
            v1.clone(),
            v2.clone(),
            desired_at_kill.clone(),
        );
        move || {
            wait_until(
                "convergence after the restart",
                Duration::from_secs(60),
                || {
                    workloads_with(&v2).len() == WORKLOADS
                        && workloads_with(&v1).is_empty()
                        && version_in(&state_dir, "current.json").as_deref()
                            == Some(desired.as_str())
                },
            );
            restarted.elapsed()
        }
    })
    .await
    .expect("wait task");
    // Still exactly one process per container a moment later: nothing left over
    // restarts, nothing is started twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        workloads_with(&v2).len(),
        WORKLOADS,
        "processes of the new version"
    );
    assert!(
        processes_with(&v1).is_empty(),
        "processes of the old version left"
    );
    assert_eq!(
        version_in(&state_dir, "desired.json").as_deref(),
        Some(desired_at_kill.as_str())
    );
    println!(
        "figure: flotta-agent SIGKILLed mid-apply ({WORKLOADS} process workloads replaced, stop grace 1 s each): converged {} ms after the restart",
        converged.as_millis()
    );
    tokio::task::spawn_blocking(move || agent.terminate())
        .await
        .expect("terminate task");
    server.stop().await;
    drop(markers);
}
