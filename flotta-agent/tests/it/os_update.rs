//! OS updates across the reboot with the real `flotta-agent` binary, a real
//! in-process server, and the scripted OS (`flotta-scripted-os`) in `PATH` as
//! `rpm-ostree` and `systemctl`: its state file holds the deployments, and its
//! reboot boots the next deployment and ends the agent (SIGTERM), which the test
//! then starts again as systemd would after the boot.
//!
//! The tests wait on signals: the agent's `os-update.json` phase, the scripted
//! OS's state file, the device status the server keeps from heartbeats, the agent
//! process's exit.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use flotta_core::model::EdgeDevice;
use flotta_server::app::pki_files;
use flotta_testing::{TestServer, eventually_within};
use serde_json::{Value, json};

const AGENT: &str = env!("CARGO_BIN_EXE_flotta-agent");
const SCRIPTED_OS: &str = env!("CARGO_BIN_EXE_flotta-scripted-os");
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// The agent process, killed when dropped.
pub(crate) struct AgentProcess(Mutex<Child>);

impl AgentProcess {
    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// SIGKILL, as a power cut or the OOM killer would.
    pub(crate) fn kill(&self) {
        let mut child = self.child();
        child.kill().expect("SIGKILL the agent");
        child.wait().expect("reap the agent");
    }

    fn exited(&self) -> bool {
        matches!(self.child().try_wait(), Ok(Some(_)))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let child = self
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Calls held by [`Rig::hold`]; dropping it lets the held call carry on and later
/// calls run at once.
struct Held<'a> {
    rig: &'a Rig,
    _lock: std::fs::File,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.rig.change_os(|os| os["hang"] = Value::Null);
    }
}

/// A server, a device's agent configuration, and the scripted OS.
pub(crate) struct Rig {
    pub(crate) server: TestServer,
    dir: tempfile::TempDir,
    pub(crate) device: String,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ---\n{}\n--- os-update.json ---\n{:?}\n--- scripted OS ---\n{}",
                self.log(),
                self.record(),
                std::fs::read_to_string(self.path("os.json")).unwrap_or_default()
            );
        }
    }
}

impl Rig {
    /// `health` is the body of the `[os_health]` table (the greenboot root is the
    /// rig's `greenboot/` directory).
    pub(crate) async fn start(device: &str, health: &str) -> Rig {
        let server = TestServer::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let rig = Rig {
            server,
            dir,
            device: device.to_owned(),
        };
        let bin = rig.path("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        for name in ["rpm-ostree", "systemctl"] {
            std::os::unix::fs::symlink(SCRIPTED_OS, bin.join(name)).expect("link the stand-in");
        }
        std::fs::create_dir_all(rig.path("greenboot/required.d")).expect("greenboot dir");
        rig.write_os(&json!({
            "booted": {"checksum": "c1"},
            "rollback": {"checksum": "c0"},
        }));
        let admin = rig.server.admin_config().clone();
        std::fs::write(rig.path("ca.crt"), &admin.certificate_authority).expect("write CA");
        let pki = rig.server.data_dir().join("pki");
        let toml = format!(
            r#"server = "{edge}"
ca = "{ca}"
registration_certificate = "{cert}"
registration_key = "{key}"
state_dir = "{state}"
device_id = "{device}"
runtime = "memory"
os = "rpm-ostree"
heartbeat_period_seconds = 1
ostree_remotes_dir = "{remotes}"

[os_health]
greenboot_dirs = ["{greenboot}"]
interval_seconds = 1
{health}
"#,
            edge = admin.edge_server,
            ca = rig.path("ca.crt").display(),
            cert = pki.join(pki_files::REGISTER_CERT).display(),
            key = pki.join(pki_files::REGISTER_KEY).display(),
            state = rig.path("state").display(),
            greenboot = rig.path("greenboot").display(),
            remotes = rig.path("remotes.d").display(),
        );
        std::fs::write(rig.path("agent.toml"), toml).expect("write agent.toml");
        rig
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the agent, as systemd does at boot.
    pub(crate) fn agent(&self) -> AgentProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .expect("agent log");
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new(AGENT)
            .arg("--config")
            .arg(self.path("agent.toml"))
            .env("PATH", path)
            .env("FLOTTA_SCRIPTED_OS_STATE", self.path("os.json"))
            .env("FLOTTA_SCRIPTED_OS_REMOTES", self.path("remotes.d"))
            .env("RUST_LOG", "flotta_agent_lib=info,warn")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("flotta-agent starts");
        AgentProcess(Mutex::new(child))
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    /// The scripted OS's state.
    pub(crate) fn os(&self) -> Value {
        let bytes = std::fs::read(self.path("os.json")).expect("scripted OS state");
        serde_json::from_slice(&bytes).expect("scripted OS state is JSON")
    }

    /// The scripted OS's lock: no call of it runs while the test changes its state.
    fn lock_os(&self) -> std::fs::File {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path("os.lock"))
            .expect("open the lock");
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).expect("lock");
        file
    }

    /// Holds every call of the scripted OS whose first word is `word` until the
    /// returned guard is dropped (the stand-in waits for the lock the guard keeps).
    fn hold(&self, word: &str) -> Held<'_> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path("os.hold"))
            .expect("open the hold lock");
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).expect("hold");
        self.change_os(|os| os["hang"] = word.into());
        Held {
            rig: self,
            _lock: file,
        }
    }

    fn write_os(&self, state: &Value) {
        let temp = self.path("os.json.tmp");
        std::fs::write(&temp, serde_json::to_vec(state).expect("encode")).expect("write");
        std::fs::rename(&temp, self.path("os.json")).expect("rename");
    }

    pub(crate) fn change_os(&self, change: impl FnOnce(&mut Value)) {
        let _lock = self.lock_os();
        let mut state = self.os();
        change(&mut state);
        self.write_os(&state);
    }

    /// Boots the machine whose reboot was held back.
    fn boot(&self) {
        let status = Command::new(SCRIPTED_OS)
            .arg("boot")
            .env("FLOTTA_SCRIPTED_OS_STATE", self.path("os.json"))
            .status()
            .expect("run the scripted OS");
        assert!(status.success(), "the scripted OS boots");
    }

    /// Calls of the scripted OS whose words start with `words`.
    pub(crate) fn calls(&self, words: &[&str]) -> usize {
        self.os()["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .filter(|c| {
                let c: Vec<&str> = c
                    .as_array()
                    .expect("call")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                c.starts_with(words)
            })
            .count()
    }

    /// The agent's persisted OS update, if any.
    fn record(&self) -> Option<Value> {
        let bytes = std::fs::read(self.path("state/os-update.json")).ok()?;
        Some(serde_json::from_slice(&bytes).expect("os-update.json is JSON"))
    }

    fn phase(&self) -> Option<String> {
        self.record()
            .and_then(|r| r["phase"].as_str().map(str::to_owned))
    }

    async fn wait_phase(&self, phase: &str) -> Value {
        eventually_within(&format!("OS update phase {phase}"), PATIENCE, || async {
            self.record().filter(|r| r["phase"] == phase)
        })
        .await
    }

    /// Waits for the agent's first configuration to be applied, then kills it.
    async fn wait_exit_or_kill(&self, agent: &AgentProcess) {
        let state = self.path("state");
        eventually_within("the first configuration", PATIENCE, || async {
            state.join("current.json").exists().then_some(())
        })
        .await;
        agent.kill();
    }

    pub(crate) async fn wait_exit(&self, agent: &AgentProcess, why: &str) {
        eventually_within(why, PATIENCE, || async { agent.exited().then_some(()) }).await;
    }

    pub(crate) async fn registered(&self) {
        let client = self.server.management_client();
        eventually_within("the agent to register", PATIENCE, || async {
            match client.get::<EdgeDevice>("default", &self.device).await {
                Ok(device) => Some(device),
                Err(error) if error.is_not_found() => None,
                Err(error) => panic!("reading the device: {error}"),
            }
        })
        .await;
    }

    /// Sets the device's OS target.
    async fn target(&self, commit: &str, window_seconds: i64) {
        self.server
            .management_client()
            .patch::<EdgeDevice>(
                "default",
                &self.device,
                &json!({"spec": {"osInformation": {
                    "commitID": commit,
                    "automaticallyUpgrade": true,
                    "rollbackAfterSeconds": window_seconds,
                }}}),
            )
            .await
            .expect("device patched");
    }

    /// Waits until the server's device status satisfies `check`, and returns it:
    /// follows a watch of the device (its current state first, then each change).
    pub(crate) async fn status_where(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        use flotta_client::{ListParams, WatchEvent};
        use futures::StreamExt;
        let client = self.server.management_client();
        let params = ListParams::default().fields(format!("metadata.name={}", self.device));
        let mut stream = Box::pin(client.watch::<EdgeDevice>(Some("default"), &params));
        let last = Mutex::new(Value::Null);
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(event) = stream.next().await {
                let devices = match event {
                    Ok(WatchEvent::Added(d) | WatchEvent::Modified(d)) => vec![d],
                    Ok(WatchEvent::Restarted(all)) => all,
                    Ok(WatchEvent::Deleted(_)) | Err(_) => continue,
                };
                for device in devices {
                    let Some(status) = device.status else {
                        continue;
                    };
                    let status = serde_json::to_value(status).expect("status as JSON");
                    if check(&status) {
                        return Some(status);
                    }
                    *last.lock().expect("lock") = status;
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(status)) => status,
            Ok(None) => panic!("the watch ended waiting for {what}"),
            Err(_) => panic!(
                "timed out waiting for {what}; last status: {}",
                last.lock().expect("lock")
            ),
        }
    }
}

fn upgrade_phase(status: &Value) -> Option<&str> {
    status["upgradeInformation"]["phase"].as_str()
}

pub(crate) fn degraded_reason(status: &Value) -> Option<String> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Degraded" && c["status"] == "True")
        .map(|c| {
            format!(
                "{}: {}",
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
}

fn write_check(rig: &Rig, name: &str, body: &str) {
    std::fs::write(
        rig.path("greenboot/required.d").join(name),
        format!("#!/bin/bash\n{body}\n"),
    )
    .expect("write the check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_boots_healthy_is_committed_and_reported() {
    let rig = Rig::start("os-healthy", "").await;
    write_check(&rig, "10-ok.sh", "exit 0");
    let agent = rig.agent();
    rig.registered().await;
    rig.target("c2", 30).await;
    // Staged, persisted as rebooting, and the reboot ends the process.
    rig.wait_exit(&agent, "the reboot to end the agent").await;
    let record = rig.record().expect("os-update.json before the reboot");
    assert_eq!(record["phase"], "rebooting", "{record}");
    assert_eq!(record["previous"], "c1");
    let os = rig.os();
    assert_eq!(os["booted"]["checksum"], "c2", "{os}");
    assert_eq!(
        rig.calls(&["rpm-ostree", "deploy", "--lock-finalization", "c2"]),
        1
    );
    assert_eq!(rig.calls(&["rpm-ostree", "finalize-deployment", "c2"]), 1);

    let _agent = rig.agent();
    let record = rig.wait_phase("committed").await;
    assert_eq!(record["boots"], 1);
    let status = rig
        .status_where("the server to show the commit", |s| {
            upgrade_phase(s) == Some("Committed")
        })
        .await;
    assert_eq!(
        status["upgradeInformation"]["currentCommitID"], "c2",
        "{status}"
    );
    assert_eq!(
        status["upgradeInformation"]["lastUpgradeStatus"],
        "succeeded"
    );
    assert_eq!(status["upgradeInformation"]["target"], "c2");
    assert_eq!(rig.calls(&["rpm-ostree", "deploy"]), 1, "staged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_health_check_rolls_back_reports_and_is_not_retried() {
    let rig = Rig::start("os-unhealthy", "").await;
    write_check(
        &rig,
        "20-app.sh",
        "echo 'app not answering on :8080' >&2; exit 1",
    );
    let agent = rig.agent();
    rig.registered().await;
    rig.target("c2", 2).await;
    rig.wait_exit(&agent, "the reboot into c2").await;
    assert_eq!(rig.os()["booted"]["checksum"], "c2");

    // Boots into c2: the check fails for the whole window, the agent rolls back
    // and reboots into c1.
    let agent = rig.agent();
    rig.wait_exit(&agent, "the reboot after the rollback").await;
    let record = rig.record().expect("record");
    assert_eq!(record["phase"], "rollbackRebooting", "{record}");
    assert!(
        record["message"]
            .as_str()
            .is_some_and(|m| m.contains("app not answering on :8080")),
        "{record}"
    );
    assert_eq!(rig.os()["booted"]["checksum"], "c1");
    assert_eq!(rig.calls(&["rpm-ostree", "rollback"]), 1);

    // Back on c1: rolled back, reported with the check's output.
    let _agent = rig.agent();
    rig.wait_phase("rolledBack").await;
    let status = rig
        .status_where("the server to show the rollback", |s| {
            upgrade_phase(s) == Some("RolledBack")
                && degraded_reason(s).is_some_and(|r| r.starts_with("OsUpgradeFailed"))
        })
        .await;
    let reason = degraded_reason(&status).expect("degraded");
    assert!(reason.contains("20-app.sh"), "{reason}");
    assert!(reason.contains("app not answering on :8080"), "{reason}");
    assert!(reason.contains("rolled back to c1"), "{reason}");
    assert_eq!(status["upgradeInformation"]["currentCommitID"], "c1");
    assert_eq!(status["upgradeInformation"]["lastUpgradeStatus"], "failed");

    // The configuration with the failed target is applied without it: the same
    // target is not staged again.
    let state = rig.path("state");
    eventually_within(
        "the configuration applied after the rollback",
        PATIENCE,
        || async {
            let current = std::fs::read_to_string(state.join("current.json")).ok()?;
            let desired = std::fs::read_to_string(state.join("desired.json")).ok()?;
            let version = |text: &str| {
                serde_json::from_str::<Value>(text)
                    .ok()
                    .map(|v| v["version"].clone())
            };
            (version(&current) == version(&desired) && current.contains("\"c2\"")).then_some(())
        },
    )
    .await;
    assert_eq!(
        rig.calls(&["rpm-ostree", "deploy"]),
        1,
        "c2 not staged again"
    );
    assert!(rig.log().contains("not tried again"), "{}", rig.log());

    // A new target is tried.
    std::fs::remove_file(rig.path("greenboot/required.d/20-app.sh")).expect("fix the app");
    let agent = _agent;
    rig.target("c3", 30).await;
    rig.wait_exit(&agent, "the reboot into c3").await;
    assert_eq!(
        rig.calls(&["rpm-ostree", "deploy", "--lock-finalization", "c3"]),
        1
    );
    let _agent = rig.agent();
    rig.wait_phase("committed").await;
    assert_eq!(rig.os()["booted"]["checksum"], "c3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reboot_within_the_window_fails_and_drops_the_staged_target() {
    let rig = Rig::start("os-no-reboot", "").await;
    rig.change_os(|os| os["reboot"] = "ignore".into());
    let agent = rig.agent();
    rig.registered().await;
    rig.target("c2", 2).await;
    let record = rig.wait_phase("rolledBack").await;
    assert!(
        record["message"]
            .as_str()
            .is_some_and(|m| m.contains("no boot into c2 within 2 s")),
        "{record}"
    );
    let os = rig.os();
    assert_eq!(os["booted"]["checksum"], "c1", "{os}");
    assert!(os["staged"].is_null(), "the staged target is dropped: {os}");
    assert_eq!(rig.calls(&["rpm-ostree", "cleanup", "-p"]), 1);
    assert!(!agent.exited(), "no reboot was needed to go back");
    rig.status_where("the server to show the failure", |s| {
        upgrade_phase(s) == Some("RolledBack")
            && degraded_reason(s).is_some_and(|r| r.contains("no boot into c2"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_that_comes_back_too_late_counts_as_failed_after_the_boot() {
    let rig = Rig::start("os-late-boot", "").await;
    rig.change_os(|os| os["reboot"] = "ignore".into());
    let agent = rig.agent();
    rig.registered().await;
    rig.target("c2", 3).await;
    rig.wait_phase("rebooting").await;
    eventually_within("the reboot request", PATIENCE, || async {
        (rig.os()["rebootPending"] == true).then_some(())
    })
    .await;
    // The machine hangs on the way down; the agent dies with it. It comes back,
    // still on c1, after the window (the record's request time is moved back
    // rather than waiting it out).
    agent.kill();
    let mut record = rig.record().expect("record");
    record["rebootRequestedAt"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(rig.path("state/os-update.json"), record.to_string()).expect("age the record");
    rig.change_os(|os| os["reboot"] = "now".into());
    let _agent = rig.agent();
    let record = rig.wait_phase("rolledBack").await;
    assert!(
        record["message"]
            .as_str()
            .is_some_and(|m| m.contains("no boot into c2 within 3 s")),
        "{record}"
    );
    let os = rig.os();
    assert_eq!(os["booted"]["checksum"], "c1");
    assert!(os["staged"].is_null(), "{os}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_rebooting_and_in_the_health_window_the_agent_resumes() {
    let ready = tempfile::tempdir().expect("dir");
    let marker = ready.path().join("ready");
    let rig = Rig::start(
        "os-killed",
        &format!("commands = [\"test -e {}\"]", marker.display()),
    )
    .await;
    rig.change_os(|os| os["reboot"] = "ignore".into());
    let agent = rig.agent();
    rig.registered().await;
    rig.target("c2", 120).await;

    // Killed after the reboot was requested, before it happened.
    rig.wait_phase("rebooting").await;
    eventually_within("the reboot request", PATIENCE, || async {
        (rig.os()["rebootPending"] == true).then_some(())
    })
    .await;
    agent.kill();
    rig.boot();
    assert_eq!(rig.os()["booted"]["checksum"], "c2");
    rig.change_os(|os| os["reboot"] = "now".into());

    // Booted into c2: the health window opens; killed inside it.
    let agent = rig.agent();
    let record = rig.wait_phase("healthCheck").await;
    assert_eq!(record["boots"], 1);
    agent.kill();

    // Started again (the boot counter counts it); the check passes now.
    let agent = rig.agent();
    eventually_within("the second start in the window", PATIENCE, || async {
        rig.record()
            .filter(|r| r["phase"] == "healthCheck" && r["boots"] == 2)
    })
    .await;
    std::fs::write(&marker, "").expect("ready");
    rig.wait_phase("committed").await;
    assert_eq!(rig.calls(&["rpm-ostree", "deploy"]), 1);
    assert_eq!(rig.calls(&["rpm-ostree", "rollback"]), 0);
    assert!(!agent.exited());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_rebooting_after_a_rollback_the_agent_finishes_it() {
    let rig = Rig::start("os-killed-rollback", "units = [\"app.service\"]").await;
    let agent = rig.agent();
    rig.registered().await;
    rig.target("c2", 1).await;
    rig.wait_exit(&agent, "the reboot into c2").await;
    // app.service is not active: the health window fails; the reboot after the
    // rollback hangs and the agent is killed.
    rig.change_os(|os| os["reboot"] = "ignore".into());
    let agent = rig.agent();
    let record = rig.wait_phase("rollbackRebooting").await;
    assert!(
        record["message"]
            .as_str()
            .is_some_and(|m| m.contains("unit: app.service")),
        "{record}"
    );
    eventually_within("the reboot request", PATIENCE, || async {
        (rig.os()["rebootPending"] == true).then_some(())
    })
    .await;
    agent.kill();
    rig.boot();
    assert_eq!(rig.os()["booted"]["checksum"], "c1");
    let _agent = rig.agent();
    rig.wait_phase("rolledBack").await;
    assert_eq!(
        rig.calls(&["rpm-ostree", "rollback"]),
        1,
        "rolled back once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_rollback_false_keeps_the_failed_target() {
    let rig = Rig::start("os-no-rollback", "commands = [\"echo db down; exit 2\"]").await;
    let agent = rig.agent();
    rig.registered().await;
    rig.server
        .management_client()
        .patch::<EdgeDevice>(
            "default",
            &rig.device,
            &json!({"spec": {"osInformation": {
                "commitID": "c2", "automaticallyUpgrade": true,
                "rollbackAfterSeconds": 1, "automaticRollback": false,
            }}}),
        )
        .await
        .expect("device patched");
    rig.wait_exit(&agent, "the reboot into c2").await;
    let _agent = rig.agent();
    let record = rig.wait_phase("failed").await;
    assert!(
        record["message"]
            .as_str()
            .is_some_and(|m| m.contains("exit status 2: db down")),
        "{record}"
    );
    assert_eq!(rig.os()["booted"]["checksum"], "c2");
    assert_eq!(rig.calls(&["rpm-ostree", "rollback"]), 0);
    rig.status_where("the server to show the kept failure", |s| {
        upgrade_phase(s) == Some("Failed")
            && degraded_reason(s).is_some_and(|r| r.contains("not rolled back"))
    })
    .await;
    assert_eq!(rig.phase().as_deref(), Some("failed"), "still failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_staging_the_agent_reboots_without_staging_again() {
    let rig = Rig::start("os-killed-staged", "").await;
    let agent = rig.agent();
    rig.registered().await;
    rig.wait_exit_or_kill(&agent).await;
    // The state a kill -9 between the persisted Staged step and the Rebooting one
    // leaves: the record says staged, the backend has the target staged (locked).
    rig.change_os(|os| os["staged"] = json!({"checksum": "c2", "locked": true}));
    let record = json!({
        "target": {"commit_id": "c2", "automatically_upgrade": true, "rollback_after_seconds": 30},
        "previous": "c1",
        "phase": "staged",
    });
    std::fs::write(rig.path("state/os-update.json"), record.to_string()).expect("write the record");
    rig.target("c2", 30).await;
    let agent = rig.agent();
    rig.wait_exit(&agent, "the reboot into c2").await;
    assert_eq!(rig.calls(&["rpm-ostree", "deploy"]), 0, "not staged again");
    assert_eq!(rig.calls(&["rpm-ostree", "finalize-deployment", "c2"]), 1);
    let _agent = rig.agent();
    rig.wait_phase("committed").await;
    assert_eq!(rig.os()["booted"]["checksum"], "c2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_update_record_is_reported_and_the_device_keeps_what_it_runs() {
    let rig = Rig::start("os-corrupt-record", "").await;
    std::fs::create_dir_all(rig.path("state")).expect("state dir");
    std::fs::write(rig.path("state/os-update.json"), "{\"phase\": \"sideways\"").expect("write");
    let _agent = rig.agent();
    rig.registered().await;
    let status = rig
        .status_where("the device's commit on the server", |s| {
            s["upgradeInformation"]["currentCommitID"] == "c1"
        })
        .await;
    assert!(status["upgradeInformation"]["phase"].is_null(), "{status}");
    let log = eventually_within("the unusable record in the log", PATIENCE, || async {
        let log = rig.log();
        log.contains("ignoring the unusable OS update record")
            .then_some(log)
    })
    .await;
    assert!(log.contains("os-update.json"), "{log}");
    assert_eq!(rig.calls(&["rpm-ostree", "rollback"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_staging_the_agent_stages_again_and_carries_on() {
    let rig = Rig::start("os-killed-staging", "").await;
    let held = rig.hold("deploy");
    let agent = rig.agent();
    rig.registered().await;
    rig.target("c2", 30).await;
    // `rpm-ostree deploy` runs (and waits): the record says staging. kill -9.
    rig.wait_phase("staging").await;
    eventually_within("the deploy call", PATIENCE, || async {
        (rig.calls(&["rpm-ostree", "deploy"]) == 1).then_some(())
    })
    .await;
    agent.kill();
    // The transaction the killed agent started finishes on its own, as
    // rpm-ostree's daemon finishes it.
    drop(held);
    eventually_within("the orphaned deploy to finish", PATIENCE, || async {
        rig.os()["staged"]["checksum"].as_str().map(|_| ())
    })
    .await;

    let agent = rig.agent();
    rig.wait_exit(&agent, "the reboot into c2").await;
    assert_eq!(rig.os()["booted"]["checksum"], "c2");
    assert_eq!(rig.calls(&["rpm-ostree", "finalize-deployment", "c2"]), 1);
    let _agent = rig.agent();
    rig.wait_phase("committed").await;
    rig.status_where("the server to show the commit", |s| {
        upgrade_phase(s) == Some("Committed") && s["upgradeInformation"]["currentCommitID"] == "c2"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_rolling_back_the_rollback_is_not_undone() {
    let rig = Rig::start("os-killed-rolling-back", "").await;
    write_check(&rig, "20-app.sh", "echo 'app down' >&2; exit 1");
    let agent = rig.agent();
    rig.registered().await;
    rig.target("c2", 2).await;
    rig.wait_exit(&agent, "the reboot into c2").await;
    assert_eq!(rig.os()["booted"]["checksum"], "c2");

    // After the boot the check fails; `rpm-ostree rollback` runs (and waits) with
    // the record saying rollingBack. kill -9, and the rollback completes.
    let held = rig.hold("rollback");
    let agent = rig.agent();
    rig.wait_phase("rollingBack").await;
    eventually_within("the rollback call", PATIENCE, || async {
        (rig.calls(&["rpm-ostree", "rollback"]) == 1).then_some(())
    })
    .await;
    agent.kill();
    drop(held);
    eventually_within("the orphaned rollback to finish", PATIENCE, || async {
        (rig.os()["rollbackQueued"] == true).then_some(())
    })
    .await;

    // The restarted agent does the rollback step again: rpm-ostree's rollback
    // swaps the boot order, so a second one would boot c2 again. It must not.
    let agent = rig.agent();
    rig.wait_exit(&agent, "the reboot after the rollback").await;
    assert_eq!(
        rig.os()["booted"]["checksum"],
        "c1",
        "rolled back to c1; calls {}",
        rig.os()["calls"]
    );
    let _agent = rig.agent();
    rig.wait_phase("rolledBack").await;
    rig.status_where("the server to show the rollback", |s| {
        upgrade_phase(s) == Some("RolledBack") && s["upgradeInformation"]["currentCommitID"] == "c1"
    })
    .await;
}

/// An OSTree repository's HTTP server as far as a pull's first request goes: it
/// answers `GET /repo/config` with 200 while `up`, 503 otherwise, and counts them.
struct HostedObjects {
    url: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HostedObjects {
    async fn start() -> HostedObjects {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/repo", listener.local_addr().expect("addr"));
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (up_in, requests_in) = (up.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = vec![0u8; 4096];
                let read = stream.read(&mut buffer).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
                requests_in.fetch_add(1, Ordering::SeqCst);
                let answer = if !request.starts_with("GET /repo/config ") {
                    "HTTP/1.0 404 Not Found\r\n\r\n"
                } else if up_in.load(Ordering::SeqCst) {
                    "HTTP/1.0 200 OK\r\n\r\n[core]\nrepo_version=1\nmode=archive-z2\n"
                } else {
                    "HTTP/1.0 503 Service Unavailable\r\n\r\n"
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        HostedObjects {
            url,
            up,
            requests,
            task,
        }
    }
}

impl Drop for HostedObjects {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_pulled_from_its_hosted_objects_url_once_the_server_serves_it() {
    use std::sync::atomic::Ordering;
    let rig = Rig::start("os-hosted", "").await;
    let hosted = HostedObjects::start().await;
    let agent = rig.agent();
    rig.registered().await;
    rig.server
        .management_client()
        .patch::<EdgeDevice>(
            "default",
            &rig.device,
            &json!({"spec": {"osInformation": {
                "commitID": "c2",
                "hostedObjectsURL": hosted.url,
                "automaticallyUpgrade": true,
                "rollbackAfterSeconds": 30,
            }}}),
        )
        .await
        .expect("device patched");
    // The repository answers 503: staging (part of the prefetch) fails, nothing of
    // the version is applied, the failure is reported and retried.
    let status = rig
        .status_where("the failed pull reported", |s| {
            degraded_reason(s).is_some_and(|r| r.starts_with("PrefetchFailed") && r.contains("503"))
        })
        .await;
    assert_eq!(status["upgradeInformation"]["currentCommitID"], "c1");
    assert!(rig.os()["staged"].is_null(), "nothing staged");
    let remote = std::fs::read_to_string(rig.path("remotes.d/flotta.conf")).expect("remote");
    assert_eq!(
        remote,
        format!(
            "[remote \"flotta\"]\nurl={}\ngpg-verify=false\n",
            hosted.url
        )
    );
    eventually_within("a retry", PATIENCE, || async {
        (hosted.requests.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;

    // The repository recovers: the next retry pulls and stages c2, and the update
    // goes through the reboot.
    hosted.up.store(true, Ordering::SeqCst);
    rig.wait_exit(&agent, "the reboot into c2").await;
    assert_eq!(rig.os()["booted"]["checksum"], "c2");
    assert!(
        rig.calls(&[
            "rpm-ostree",
            "rebase",
            "--lock-finalization",
            "flotta:",
            "c2"
        ]) >= 2,
        "pulled from the hosted remote"
    );
    assert_eq!(rig.calls(&["rpm-ostree", "deploy"]), 0);
    let _agent = rig.agent();
    rig.wait_phase("committed").await;
    rig.status_where("the server to show c2", |s| {
        upgrade_phase(s) == Some("Committed") && s["upgradeInformation"]["currentCommitID"] == "c2"
    })
    .await;
}
