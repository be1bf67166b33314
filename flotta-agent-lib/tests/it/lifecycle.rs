//! The agent's lifecycle against a real server over mutual TLS: manual approval,
//! certificate renewal and re-registration, offline queueing, disconnect, a kill in
//! the middle of an apply, a full state disk and `automaticallyUpgrade`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flotta_agent_lib::{
    AgentEvent, AgentPhase, BootedOs, Deployment, EVENTS_DROPPED_REASON, FileStateStore,
    HeartbeatResult, MemoryRuntime, OsError, OsHealth, OsUpdater, PersistedConfig, RuntimeError,
    StateError, StateItem, StateStore, WorkloadRuntime, WorkloadState,
};
use flotta_core::model::{EdgeDevice, EdgeDeviceSignedRequest, EdgeWorkload};
use flotta_core::pki::PeerCertificate;
use flotta_core::wire::{OsInformation, Workload};

use crate::harness::{
    RunningAgent, TestServer, eventually, one_second_heartbeats, persisted, process_runtime,
    process_workload, quick_heartbeats, read, workload,
};

fn names_in(config: &PersistedConfig) -> Vec<String> {
    config
        .message
        .workloads
        .iter()
        .flatten()
        .filter_map(|w| w.name.clone())
        .collect()
}

fn not_after(state: &Path) -> time::OffsetDateTime {
    let pem = read(state, StateItem::DeviceCertificate).expect("certificate persisted");
    PeerCertificate::parse(&pem)
        .expect("certificate parses")
        .not_after
}

#[tokio::test]
async fn manual_approval_holds_the_device_until_an_operator_approves() {
    let server = TestServer::builder().auto_approve(false).start().await;
    let state = tempfile::tempdir().expect("state dir");
    let logs = tempfile::tempdir().expect("log dir");
    let runtime = process_runtime(logs.path()).await;
    let agent = server
        .agent_builder("man-1", runtime.clone())
        .state_dir(state.path())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    let client = server.management_client();

    agent
        .wait_for("AwaitingApproval", |e| {
            matches!(
                e,
                AgentEvent::PhaseChanged(AgentPhase::AwaitingApproval { .. })
            )
        })
        .await;
    let request: EdgeDeviceSignedRequest = client
        .get("default", "man-1")
        .await
        .expect("the enrolment request exists");
    assert_eq!(request.spec.approved, Some(false));
    let device = client.get::<EdgeDevice>("default", "man-1").await;
    assert!(
        device.as_ref().is_err_and(|e| e.is_not_found()),
        "not registered before approval: {device:?}"
    );
    assert!(read(state.path(), StateItem::DeviceCertificate).is_none());

    server.approve("man-1").await;
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    agent
        .wait_for("HeartbeatDelivered", |e| {
            matches!(e, AgentEvent::HeartbeatDelivered)
        })
        .await;
    client
        .create::<EdgeWorkload>(
            "default",
            &process_workload(
                "meter",
                "man-1",
                &["sh", "-c", "echo metering; exec sleep 300"],
            ),
        )
        .await
        .expect("workload created");
    // A real process, started by the agent.
    eventually("the workload's output", || async {
        std::fs::read_to_string(runtime.log_file("meter", "main"))
            .ok()
            .filter(|log| log.contains("metering"))
    })
    .await;
    let phase = eventually("the workload in the device status", || async {
        let device: EdgeDevice = client.get("default", "man-1").await.ok()?;
        device
            .status?
            .workloads?
            .into_iter()
            .find(|w| w.name == "meter")?
            .phase
    })
    .await;
    assert_eq!(phase, "Running");
    agent.stop().await;
    runtime.remove("meter").await.expect("stopped");
}

#[tokio::test]
async fn with_the_process_runtime_a_failing_workload_rolls_back_and_is_not_retried() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let logs = tempfile::tempdir().expect("log dir");
    let runtime = process_runtime(logs.path()).await;
    let agent = server
        .agent_builder("proc-1", runtime.clone())
        .state_dir(state.path())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    let client = server.management_client();
    client
        .create::<EdgeWorkload>(
            "default",
            &process_workload("good", "proc-1", &["sh", "-c", "echo up; exec sleep 300"]),
        )
        .await
        .expect("workload created");
    let good = agent
        .wait_for("ConfigApplied with good", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. })
                && persisted(state.path(), StateItem::CurrentConfig)
                    .is_some_and(|c| names_in(&c) == ["good"])
        })
        .await;
    let Some(AgentEvent::ConfigApplied { version: good }) = good.last().cloned() else {
        panic!("{good:?}");
    };

    client
        .create::<EdgeWorkload>(
            "default",
            &process_workload("broken", "proc-1", &["/nonexistent/flotta-test-binary"]),
        )
        .await
        .expect("workload created");
    let seen = agent
        .wait_for("RolledBack", |e| matches!(e, AgentEvent::RolledBack { .. }))
        .await;
    let failed = seen
        .iter()
        .find_map(|e| match e {
            AgentEvent::ApplyFailed { version, reason } => Some((version.clone(), reason.clone())),
            _ => None,
        })
        .expect("ApplyFailed before RolledBack");
    assert!(failed.1.contains("broken"), "{failed:?}");
    assert_eq!(
        seen.last(),
        Some(&AgentEvent::RolledBack {
            failed_version: failed.0.clone(),
            to_version: good.clone(),
            complete: true,
        })
    );
    let names: Vec<String> = runtime
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["good"]);
    // The failed version is not tried again over several long-poll rounds. Each
    // round makes one or two look-ups of the device's configuration on the server:
    // six more mean at least three rounds.
    let lookups = server.edge().config_cache_stats().hits;
    eventually("three more long-poll rounds", || async {
        (server.edge().config_cache_stats().hits >= lookups + 6).then_some(())
    })
    .await;
    while let Ok(event) = agent.events.try_recv() {
        assert!(
            !matches!(event, AgentEvent::ApplyFailed { .. }),
            "the failed version was retried: {event:?}"
        );
    }
    assert_eq!(
        agent.handle.status().failed_version.as_deref(),
        Some(failed.0.as_str())
    );
    agent.stop().await;
    runtime.remove("good").await.expect("stopped");
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_at_two_thirds_of_its_lifetime() {
    // 6 s certificates: renewal falls due 4 s after the agent got one.
    let server = TestServer::builder()
        .cert_lifetime(Duration::from_secs(6))
        .start()
        .await;
    let state = tempfile::tempdir().expect("state dir");
    let agent = server
        .agent_builder("renew-1", Arc::new(MemoryRuntime::new()))
        .state_dir(state.path())
        .timing(quick_heartbeats())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    let first_certificate = read(state.path(), StateItem::DeviceCertificate).expect("cert");
    let first_key = read(state.path(), StateItem::DeviceKey).expect("key");
    let first_expiry = not_after(state.path());
    let status = agent.handle.status();
    assert_eq!(status.certificate_expires, Some(first_expiry));
    let renew_at = status.certificate_renew_at.expect("renewal scheduled");
    // Two thirds of the whole seconds left when the agent got it (5 or 6 s, as
    // NotAfter has a one-second precision): 3 or 4 s after, 2 to 3 s before expiry.
    let lead = first_expiry - renew_at;
    assert!(
        lead >= time::Duration::seconds(2) && lead <= time::Duration::milliseconds(3100),
        "renewal {lead} before expiry, expected about a third of 6 s"
    );

    let seen = agent
        .wait_for("CertificateRenewed", |e| {
            matches!(e, AgentEvent::CertificateRenewed { .. })
        })
        .await;
    // Not before it fell due: measured against the wall clock the schedule is
    // written in, so a test thread that saw `Registered` late cannot shorten it.
    let seen_at = time::OffsetDateTime::now_utc();
    assert!(
        seen_at >= renew_at,
        "renewed at {seen_at}, before its renewal time {renew_at}"
    );
    let Some(AgentEvent::CertificateRenewed {
        expired,
        not_after: renewed_until,
    }) = seen.last()
    else {
        panic!("no renewal in {seen:?}");
    };
    assert!(!expired);
    assert!(
        !seen.contains(&AgentEvent::Registered),
        "renewal enrolled again: {seen:?}"
    );
    // New key and certificate, persisted together, the commit file gone.
    let certificate = eventually("the renewed certificate persisted", || async {
        read(state.path(), StateItem::DeviceCertificate).filter(|c| *c != first_certificate)
    })
    .await;
    assert_eq!(
        PeerCertificate::parse(&certificate)
            .expect("parses")
            .not_after,
        *renewed_until
    );
    assert!(*renewed_until > first_expiry);
    assert_ne!(read(state.path(), StateItem::DeviceKey), Some(first_key));
    assert!(read(state.path(), StateItem::RenewedIdentity).is_none());
    // The server takes the new certificate.
    agent
        .wait_for("HeartbeatDelivered", |e| {
            matches!(e, AgentEvent::HeartbeatDelivered)
        })
        .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_certificate_that_expired_while_offline_is_re_registered() {
    let mut server = TestServer::builder()
        .cert_lifetime(Duration::from_secs(3))
        .start()
        .await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    let agent = server
        .agent_builder("expire-1", runtime.clone())
        .state_dir(state.path())
        .timing(quick_heartbeats())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    let expiry = not_after(state.path());
    server.stop_keeping_data().await;
    // Offline until well past the certificate's expiry: time is what this test is
    // about (the certificate's lifetime is 3 s).
    let wait = expiry - time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    assert!(matches!(
        agent.handle.status().last_heartbeat,
        Some(HeartbeatResult::Failed { .. })
    ));
    server.start_again().await;
    let back = Instant::now();
    let seen = agent
        .wait_for("CertificateRenewed", |e| {
            matches!(e, AgentEvent::CertificateRenewed { .. })
        })
        .await;
    println!(
        "figure: re-registered {:?} after the server came back",
        back.elapsed()
    );
    assert!(
        matches!(
            seen.last(),
            Some(AgentEvent::CertificateRenewed { expired: true, .. })
        ),
        "{seen:?}"
    );
    assert!(!seen.contains(&AgentEvent::Registered), "{seen:?}");
    assert!(not_after(state.path()) > time::OffsetDateTime::now_utc());
    agent
        .wait_for("HeartbeatDelivered", |e| {
            matches!(e, AgentEvent::HeartbeatDelivered)
        })
        .await;
    // Still the same device: its workloads follow the server.
    server
        .management_client()
        .create::<EdgeWorkload>("default", &workload("w", "expire-1", "registry.local/w:1"))
        .await
        .expect("workload created");
    eventually("the workload in the runtime", || async {
        runtime.workload("w")
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn events_queue_while_offline_and_are_delivered_with_the_dropped_count() {
    let mut server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let agent = server
        .agent_builder("queue-1", Arc::new(MemoryRuntime::new()))
        .state_dir(state.path())
        .timing(quick_heartbeats())
        .offline_queue_capacity(3)
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    one_second_heartbeats(&server, "queue-1", state.path()).await;
    let handle = agent.handle.clone();
    agent
        .wait_for("an empty queue", |e| {
            matches!(e, AgentEvent::HeartbeatDelivered) && handle.status().queued_events == 0
        })
        .await;

    // Events the agent reported itself before the outage (registration, the
    // patched configuration) may already have overflowed the small queue: count
    // only what the outage drops.
    let dropped_before = handle.status().dropped_events;

    server.stop_keeping_data().await;
    // From here on nothing can be delivered: drop what was seen before.
    agent.events = agent.events.resubscribe();
    let outage = Instant::now();
    let mut failures = Vec::new();
    while failures.len() < 6 {
        let seen = agent
            .wait_for("HeartbeatFailed", |e| {
                matches!(e, AgentEvent::HeartbeatFailed { .. })
            })
            .await;
        assert!(
            !seen.contains(&AgentEvent::HeartbeatDelivered),
            "delivered while the server is down: {seen:?}"
        );
        failures.push(outage.elapsed());
    }
    // Exponential backoff (50 ms doubling, capped at 500 ms, jittered into the upper
    // half): later gaps are much longer than the first.
    let gaps: Vec<Duration> = failures.windows(2).map(|w| w[1] - w[0]).collect();
    let last = *gaps.last().expect("gaps");
    assert!(
        last >= Duration::from_millis(180) && last <= Duration::from_millis(700),
        "{gaps:?}"
    );
    assert!(gaps[0] < last, "{gaps:?}");

    // The agent may have queued an event of its own as the outage began (a
    // configuration applied just before it): count from what is queued now.
    let before_probes = handle.status();
    for n in 0..5 {
        handle.report_event("Probe", format!("reading {n}"), false);
    }
    let overflow = (before_probes.queued_events + 5).saturating_sub(3) as u64;
    let status = handle.status();
    assert_eq!(status.queued_events, 3);
    assert_eq!(
        status.dropped_events,
        before_probes.dropped_events + overflow
    );
    // Dropped since the last delivery, as the next delivery reports them.
    let dropped_since_delivery = before_probes.dropped_events - dropped_before + overflow;

    server.start_again().await;
    let seen = agent
        .wait_for("QueueDelivered", |e| {
            matches!(e, AgentEvent::QueueDelivered { .. })
        })
        .await;
    assert_eq!(
        seen.last(),
        Some(&AgentEvent::QueueDelivered {
            events: 3,
            dropped: dropped_since_delivery
        })
    );
    assert_eq!(handle.status().queued_events, 0);
    assert!(!EVENTS_DROPPED_REASON.is_empty());
    // The server has the device's status again (last seen after the outage).
    let device: EdgeDevice = server
        .management_client()
        .get("default", "queue-1")
        .await
        .expect("device");
    assert_eq!(
        device.status.and_then(|s| s.phase).as_deref(),
        Some("up"),
        "device status after the outage"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_deleted_device_is_disconnected_its_workloads_and_state_removed() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    let agent = server
        .agent_builder("gone-1", runtime.clone())
        .state_dir(state.path())
        .timing(quick_heartbeats())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    let client = server.management_client();
    client
        .create::<EdgeWorkload>("default", &workload("cam", "gone-1", "registry.local/c:1"))
        .await
        .expect("workload created");
    eventually("the workload in the runtime", || async {
        runtime.workload("cam")
    })
    .await;

    client
        .delete::<EdgeDevice>("default", "gone-1")
        .await
        .expect("device deleted");
    let seen = agent
        .wait_for("Disconnected", |e| {
            matches!(e, AgentEvent::Disconnected { .. })
        })
        .await;
    assert_eq!(
        seen.last(),
        Some(&AgentEvent::Disconnected {
            removed_workloads: vec!["cam".to_owned()],
            complete: true,
        })
    );
    let handle = agent.handle.clone();
    agent.finished().await.expect("the agent stops cleanly");
    assert!(handle.status().disconnected);
    assert!(runtime.names().is_empty());
    for item in StateItem::ALL {
        assert!(read(state.path(), item).is_none(), "{item} left behind");
    }
}

/// A runtime that never finishes applying workloads named `stall`, like a process
/// killed in the middle of an apply.
struct StallingRuntime {
    inner: MemoryRuntime,
    stalled: AtomicBool,
}

#[async_trait]
impl WorkloadRuntime for StallingRuntime {
    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError> {
        if workload.name.as_deref() == Some("stall") {
            self.stalled.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        self.inner.apply(workload).await
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.inner.remove(name).await
    }

    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError> {
        self.inner.list().await
    }
}

#[tokio::test]
async fn an_agent_killed_mid_apply_converges_after_restart() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let client = server.management_client();
    let stalling = Arc::new(StallingRuntime {
        inner: MemoryRuntime::new(),
        stalled: AtomicBool::new(false),
    });
    let mut agent = RunningAgent::spawn(
        server
            .agent_builder("kill-1", stalling.clone())
            .state_dir(state.path())
            .build()
            .expect("agent builds"),
    );
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    client
        .create::<EdgeWorkload>("default", &workload("base", "kill-1", "registry.local/b:1"))
        .await
        .expect("workload created");
    eventually("base in the runtime", || async {
        stalling.inner.workload("base")
    })
    .await;
    client
        .create::<EdgeWorkload>(
            "default",
            &workload("stall", "kill-1", "registry.local/s:1"),
        )
        .await
        .expect("workload created");
    eventually("the apply under way", || async {
        stalling.stalled.load(Ordering::SeqCst).then_some(())
    })
    .await;
    agent.kill().await;

    // On disk: the new configuration is desired, the old one is current.
    let desired = persisted(state.path(), StateItem::DesiredConfig).expect("desired");
    let current = persisted(state.path(), StateItem::CurrentConfig).expect("current");
    assert_eq!(names_in(&desired), ["base", "stall"]);
    assert_eq!(names_in(&current), ["base"]);

    // A new process: nothing runs, same state directory.
    let restarted = Instant::now();
    let runtime = Arc::new(MemoryRuntime::new());
    let agent = RunningAgent::spawn(server.agent("kill-1", state.path(), runtime.clone()));
    let version = eventually("convergence on the new configuration", || async {
        let running = runtime.names();
        let version = agent.handle.status().config_version?;
        (running == ["base", "stall"] && version == desired.version).then_some(version)
    })
    .await;
    let converged = restarted.elapsed();
    println!("figure: restart after a kill mid-apply converged in {converged:?}");
    assert_eq!(
        persisted(state.path(), StateItem::CurrentConfig).map(|c| c.version),
        Some(version)
    );
    assert_eq!(runtime.apply_attempts("stall"), 1);
    agent.stop().await;
}

#[tokio::test]
async fn restarting_with_the_server_down_restores_the_persisted_workloads() {
    let mut server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let first = Arc::new(MemoryRuntime::new());
    let mut agent = RunningAgent::spawn(server.agent("down-1", state.path(), first.clone()));
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    server
        .management_client()
        .create::<EdgeWorkload>(
            "default",
            &workload("logger", "down-1", "registry.local/l:1"),
        )
        .await
        .expect("workload created");
    // Persisted as current before ConfigApplied, after the runtime has it.
    agent
        .wait_for("logger applied", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. }) && first.workload("logger").is_some()
        })
        .await;
    agent.stop().await;
    let second = Arc::new(MemoryRuntime::new());
    let restarted = server
        .agent_builder("down-1", second.clone())
        .state_dir(state.path())
        .timing(quick_heartbeats())
        .build()
        .expect("agent builds");
    server.stop_keeping_data().await;

    let mut agent = RunningAgent::spawn(restarted);
    agent
        .wait_for("HeartbeatFailed", |e| {
            matches!(e, AgentEvent::HeartbeatFailed { .. })
        })
        .await;
    // The configuration loop restores the persisted workloads beside the
    // heartbeat loop, with no server to ask.
    eventually("logger restored while the server is down", || async {
        second.workload("logger")
    })
    .await;
    assert_eq!(agent.handle.status().phase, Some(AgentPhase::Running));
    agent.stop().await;
}

/// An OS that records what it was asked to stage and activate.
struct RecordingOs {
    running: Mutex<String>,
    staged: Mutex<Vec<String>>,
}

#[async_trait]
impl OsUpdater for RecordingOs {
    async fn booted(&self) -> Result<BootedOs, OsError> {
        let running = self.running.lock().expect("lock").clone();
        let staged = self.staged.lock().expect("lock").last().cloned();
        Ok(BootedOs {
            staged: staged.filter(|s| *s != running).map(Deployment::commit),
            booted: Some(Deployment::commit(running)),
            ..Default::default()
        })
    }

    async fn stage(&self, target: &OsInformation) -> Result<(), OsError> {
        self.staged
            .lock()
            .expect("lock")
            .push(target.commit_id.clone().unwrap_or_default());
        Ok(())
    }

    async fn activate(&self) -> Result<(), OsError> {
        let last = self.staged.lock().expect("lock").last().cloned();
        if let Some(commit) = last {
            *self.running.lock().expect("lock") = commit;
        }
        Ok(())
    }

    async fn rollback(&self) -> Result<(), OsError> {
        Ok(())
    }

    async fn reboot(&self) -> Result<(), OsError> {
        Ok(())
    }

    async fn health(&self) -> Result<OsHealth, OsError> {
        Ok(OsHealth::Healthy)
    }
}

#[tokio::test]
async fn the_os_is_upgraded_only_when_automatically_upgrade_is_set() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let os = Arc::new(RecordingOs {
        running: Mutex::new("c1".to_owned()),
        staged: Mutex::new(Vec::new()),
    });
    let agent = server
        .agent_builder("os-1", Arc::new(MemoryRuntime::new()))
        .state_dir(state.path())
        .os_updater(os.clone())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    let client = server.management_client();
    let os_spec = |auto: bool| serde_json::json!({"spec": {"osInformation": {"commitID": "c2", "automaticallyUpgrade": auto}}});
    client
        .patch::<EdgeDevice>("default", "os-1", &os_spec(false))
        .await
        .expect("device patched");
    eventually("the OS target in the running configuration", || async {
        let config = persisted(state.path(), StateItem::CurrentConfig)?;
        let os = config.message.configuration?.os?;
        (os.commit_id.as_deref() == Some("c2")).then_some(())
    })
    .await;
    assert!(os.staged.lock().expect("lock").is_empty());
    assert_eq!(*os.running.lock().expect("lock"), "c1");

    client
        .patch::<EdgeDevice>("default", "os-1", &os_spec(true))
        .await
        .expect("device patched");
    eventually("the upgrade", || async {
        (*os.running.lock().expect("lock") == "c2").then_some(())
    })
    .await;
    assert_eq!(*os.staged.lock().expect("lock"), ["c2"]);
    agent.stop().await;
}

/// A state directory on a small tmpfs when this process may mount one (root),
/// otherwise a store whose writes fail with ENOSPC while `full` is set.
enum FullDisk {
    Tmpfs { mount: tempfile::TempDir },
    Simulated { full: Arc<AtomicBool> },
}

impl FullDisk {
    fn new() -> (FullDisk, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if mounted {
            println!("disk full: a 512 KiB tmpfs at {}", dir.path().display());
            let state = tempfile::tempdir().expect("dir");
            (FullDisk::Tmpfs { mount: dir }, state)
        } else {
            println!("disk full: mount not permitted here; a store failing with ENOSPC");
            (
                FullDisk::Simulated {
                    full: Arc::new(AtomicBool::new(false)),
                },
                dir,
            )
        }
    }

    fn state_dir<'a>(&'a self, fallback: &'a Path) -> &'a Path {
        match self {
            FullDisk::Tmpfs { mount } => mount.path(),
            FullDisk::Simulated { .. } => fallback,
        }
    }

    fn fill(&self) {
        match self {
            FullDisk::Tmpfs { mount } => {
                use std::io::Write as _;
                let mut filler =
                    std::fs::File::create(mount.path().join("filler")).expect("filler");
                let block = vec![0u8; 4096];
                while filler.write_all(&block).is_ok() {}
            }
            FullDisk::Simulated { full } => full.store(true, Ordering::SeqCst),
        }
    }

    fn free(&self) {
        match self {
            FullDisk::Tmpfs { mount } => {
                std::fs::remove_file(mount.path().join("filler")).expect("filler removed");
            }
            FullDisk::Simulated { full } => full.store(false, Ordering::SeqCst),
        }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        if let FullDisk::Tmpfs { mount } = self {
            let _ = std::process::Command::new("umount")
                .arg(mount.path())
                .status();
        }
    }
}

struct SimulatedFullStore {
    inner: FileStateStore,
    full: Arc<AtomicBool>,
}

#[async_trait]
impl StateStore for SimulatedFullStore {
    async fn load(&self, item: StateItem) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.load(item).await
    }

    async fn save(&self, item: StateItem, content: &[u8]) -> Result<(), StateError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StateError::Io {
                operation: "write",
                path: self.inner.path_of(item),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        self.inner.save(item, content).await
    }

    async fn remove(&self, item: StateItem) -> Result<(), StateError> {
        self.inner.remove(item).await
    }
}

#[tokio::test]
async fn a_full_state_disk_is_reported_and_leaves_the_state_intact() {
    let server = TestServer::start().await;
    let (disk, fallback) = FullDisk::new();
    let state_dir = disk.state_dir(fallback.path()).to_owned();
    let runtime = Arc::new(MemoryRuntime::new());
    let builder = server
        .agent_builder("full-1", runtime.clone())
        .timing(quick_heartbeats());
    let builder = match &disk {
        FullDisk::Tmpfs { .. } => builder.state_dir(&state_dir),
        FullDisk::Simulated { full } => builder.state_store(Arc::new(SimulatedFullStore {
            inner: FileStateStore::new(&state_dir),
            full: full.clone(),
        })),
    };
    let mut agent = RunningAgent::spawn(builder.build().expect("agent builds"));
    agent
        .wait_for("ConfigApplied", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. })
        })
        .await;
    let before = read(&state_dir, StateItem::CurrentConfig).expect("current persisted");

    disk.fill();
    let client = server.management_client();
    client
        .create::<EdgeWorkload>("default", &workload("big", "full-1", "registry.local/b:1"))
        .await
        .expect("workload created");
    // The persisted event queue may hit the full disk first; the configuration's
    // write is the one that must fail and say so.
    let seen = agent
        .wait_for("StateWriteFailed for the desired configuration", |e| {
            matches!(
                e,
                AgentEvent::StateWriteFailed {
                    item: StateItem::DesiredConfig,
                    ..
                }
            )
        })
        .await;
    let Some(AgentEvent::StateWriteFailed { item, reason }) = seen.last() else {
        panic!("{seen:?}");
    };
    assert_eq!(*item, StateItem::DesiredConfig);
    assert!(
        reason.contains("No space left on device"),
        "unclear reason: {reason}"
    );
    assert!(reason.contains("desired.json"), "no file named: {reason}");
    let status = agent.handle.status();
    assert!(status.state_error.is_some());
    // Nothing was started that the device could not restore after a restart, and
    // the state on disk is whole: the old configuration, no temporary files.
    assert!(runtime.workload("big").is_none());
    assert_eq!(
        read(&state_dir, StateItem::CurrentConfig).as_deref(),
        Some(before.as_slice())
    );
    assert!(persisted(&state_dir, StateItem::CurrentConfig).is_some());
    let temporaries: Vec<_> = std::fs::read_dir(&state_dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temporaries.is_empty(), "{temporaries:?}");

    disk.free();
    let freed = Instant::now();
    eventually("the workload after space came back", || async {
        runtime.workload("big")
    })
    .await;
    println!(
        "figure: applied {:?} after space came back",
        freed.elapsed()
    );
    eventually("the state error cleared", || async {
        agent.handle.status().state_error.is_none().then_some(())
    })
    .await;
    let current = persisted(&state_dir, StateItem::CurrentConfig).expect("current");
    assert_eq!(names_in(&current), ["big"]);
    agent.stop().await;
    drop(disk);
}

#[tokio::test]
async fn a_denied_device_waits_long_and_comes_in_once_approved() {
    let server = TestServer::builder().auto_approve(false).start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    let denied_wait = Duration::from_millis(800);
    let agent = server
        .agent_builder("denied-1", runtime)
        .state_dir(state.path())
        .enrolment_config(flotta_core::enrolment::AgentConfig {
            denied_wait: time::Duration::try_from(denied_wait).expect("in range"),
            ..flotta_testing::quick::enrolment_config(flotta_testing::quick::RETRY_MAX)
        })
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    let client = server.management_client();
    agent
        .wait_for("AwaitingApproval", |e| {
            matches!(
                e,
                AgentEvent::PhaseChanged(AgentPhase::AwaitingApproval { .. })
            )
        })
        .await;

    // An operator denies it: the agent says so and asks again only after the wait,
    // counted from its denied attempt, which comes after `denied_at`.
    let denied_at = Instant::now();
    client.deny("default", "denied-1").await.expect("deny");
    agent
        .wait_for("Denied", |e| {
            matches!(e, AgentEvent::PhaseChanged(AgentPhase::Denied { .. }))
        })
        .await;
    assert!(matches!(
        agent.handle.status().phase,
        Some(AgentPhase::Denied { .. })
    ));
    assert!(read(state.path(), StateItem::DeviceCertificate).is_none());

    // Approved later: it registers at its next attempt, not before the wait.
    client
        .approve("default", "denied-1")
        .await
        .expect("approve");
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    assert!(
        denied_at.elapsed() >= denied_wait,
        "asked again after {:?}, sooner than the denied wait",
        denied_at.elapsed()
    );
    let request: EdgeDeviceSignedRequest = client.get("default", "denied-1").await.expect("get");
    let conditions = request.status.expect("status").conditions;
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].type_, "approved");
    agent.stop().await;
}
