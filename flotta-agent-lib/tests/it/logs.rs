//! Workload logs forwarded to a real syslog server (Debian's `rsyslog`): a
//! workload's lines arrive in order, named by device, workload and container;
//! lines written while the server is down wait in the log file and arrive, none
//! lost and none twice, once it is back; a configuration the agent cannot carry
//! out is refused.

use std::time::Duration;

use flotta_agent_lib::MemoryRuntime;
use flotta_core::model::{ConfigMap, EdgeDevice, EdgeWorkload, ObjectMeta};
use flotta_testing::eventually_within;
use flotta_testing::syslog::{self, Syslog};

use crate::harness::{TestServer, process_runtime, quick_heartbeats, refusal, spawn_registered};

const DEVICE: &str = "logs-cam";

/// The syslog tests are ignored where there is no rsyslogd; on CI that is a
/// failure, here.
#[test]
fn rsyslog_is_there_on_ci() {
    syslog::require_in_ci();
}

/// The ConfigMap naming the syslog server, and the device's `logCollection`
/// target `central` pointing at it.
async fn log_collection(
    server: &TestServer,
    device: &str,
    address: &str,
    protocol: &str,
    ca: Option<&str>,
) {
    let client = server.management_client();
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("syslog-server".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("Address".to_owned(), address.to_owned()),
                ("Protocol".to_owned(), protocol.to_owned()),
            ]
            .into_iter()
            .chain(ca.map(|ca| ("CA".to_owned(), ca.to_owned())))
            .collect(),
        ),
        ..Default::default()
    };
    client.create("default", &map).await.expect("config map");
    client
        .patch::<EdgeDevice>(
            "default",
            device,
            &serde_json::json!({"spec": {"logCollection": {"central": {
                "kind": "syslog",
                "bufferSize": 1,
                "syslogConfig": {"name": "syslog-server"}
            }}}}),
        )
        .await
        .expect("device patched");
}

/// The workload's own lines, without the process runtime's start and exit
/// banners (`--- flotta: started ...`), which are forwarded as well.
fn workload_lines(received: &[syslog::Received]) -> Vec<&str> {
    received
        .iter()
        .map(|r| r.message.as_str())
        .filter(|m| !m.starts_with("--- flotta:"))
        .collect()
}

fn workload(device: &str, script: &str) -> EdgeWorkload {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "counter", "namespace": "default"},
        "spec": {
            "type": "pod",
            "device": device,
            "logCollection": "central",
            "pod": {"spec": {"containers": [{
                "name": "main", "image": "unused",
                "command": ["sh", "-c", script]
            }]}}
        }
    }))
    .expect("workload")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs rsyslog (Debian package rsyslog); scripts/test.sh runs it"]
async fn workload_lines_reach_syslog_in_order_and_survive_its_outage() {
    let mut syslog = Syslog::start().await;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let runtime = process_runtime(&dir.path().join("runtime")).await;
    let state = dir.path().join("state");
    let agent = server
        .agent_builder(DEVICE, runtime)
        .timing(quick_heartbeats())
        .state_dir(&state)
        .build()
        .expect("agent builds");
    let agent = spawn_registered(agent).await;
    log_collection(&server, DEVICE, &syslog.address(), "tcp", None).await;

    // Twenty lines, then twenty more once the file `go` exists.
    let go = dir.path().join("go");
    let script = format!(
        "i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo \"line $i\"; done; \
         while [ ! -e {go} ]; do sleep 0.1; done; \
         while [ $i -lt 40 ]; do i=$((i+1)); echo \"line $i\"; done; exec sleep 3600",
        go = go.display()
    );
    server
        .management_client()
        .create("default", &workload(DEVICE, &script))
        .await
        .expect("workload created");

    let patience = Duration::from_secs(60);
    eventually_within("the first twenty lines in syslog", patience, || async {
        (workload_lines(&syslog.received()).len() >= 20).then_some(())
    })
    .await;
    let first = syslog.received();
    // The runtime's own line, appended once the process started (so anywhere
    // among the workload's first lines), is forwarded too.
    assert!(
        first
            .iter()
            .any(|r| r.message.starts_with("--- flotta: started \"sh\"")),
        "the runtime's banner is forwarded: {first:?}"
    );
    let texts = workload_lines(&first);
    let expected: Vec<String> = (1..=20).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, expected, "in order, once each");
    let one = &first[0];
    assert_eq!(one.hostname, DEVICE);
    assert_eq!(one.app_name, "counter");
    assert_eq!(one.proc_id, "main");
    assert_eq!(
        one.structured_data,
        format!(
            "[flotta@32473 device=\"{DEVICE}\" namespace=\"default\" workload=\"counter\" container=\"main\"]"
        )
    );

    // The server goes away; the workload writes twenty more lines meanwhile.
    syslog.stop().await;
    std::fs::write(&go, "").expect("go");
    let reason = eventually_within("a failed send", patience, || async {
        agent.handle.status().logs?.last_error
    })
    .await;
    assert!(reason.contains(&syslog.address()), "{reason}");
    assert_eq!(
        workload_lines(&syslog.received()).len(),
        20,
        "nothing arrives while down"
    );

    // Back on the same port: the lines waiting in the log file arrive.
    syslog.start_again().await;
    eventually_within("all forty lines in syslog", patience, || async {
        (workload_lines(&syslog.received()).len() >= 40).then_some(())
    })
    .await;
    eventually_within("forwarding recovered", patience, || async {
        let logs = agent.handle.status().logs?;
        logs.last_error.is_none().then_some(logs)
    })
    .await;
    let all = syslog.received();
    let texts = workload_lines(&all);
    let expected: Vec<String> = (1..=40).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, expected, "none lost, none twice: {}", syslog.log());
    let status = agent.handle.status().logs.expect("logs status");
    assert_eq!(status.skipped_bytes, 0);
    assert!(status.forwarded_lines >= 40, "{status:?}");
    assert!(
        state.join("logs/counter/main.cursor.json").is_file(),
        "the place in the log is kept on disk"
    );

    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_runtime_without_logs_refuses_the_version_that_asks_for_them() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = std::sync::Arc::new(MemoryRuntime::new());
    let agent = server
        .agent_builder("logs-memory", runtime.clone())
        .timing(quick_heartbeats())
        .state_dir(state.path())
        .build()
        .expect("agent builds");
    let mut agent = spawn_registered(agent).await;
    log_collection(&server, "logs-memory", "127.0.0.1:514", "tcp", None).await;
    server
        .management_client()
        .create("default", &workload("logs-memory", "true"))
        .await
        .expect("workload created");
    let reason = refusal(&mut agent).await;
    assert!(
        reason.contains("logCollection of workloads counter")
            && reason.contains("runtime cannot give their logs"),
        "{reason}"
    );
    assert!(runtime.names().is_empty(), "nothing of the version runs");
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_protocol_refuses_the_version_and_says_where() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let runtime = process_runtime(&dir.path().join("runtime")).await;
    let agent = server
        .agent_builder("logs-relp", runtime)
        .timing(quick_heartbeats())
        .state_dir(dir.path().join("state"))
        .build()
        .expect("agent builds");
    let mut agent = spawn_registered(agent).await;
    log_collection(&server, "logs-relp", "127.0.0.1:2514", "relp", None).await;
    let reason = refusal(&mut agent).await;
    assert!(
        reason.contains("logCollection.central: syslogConfig protocol \"relp\" is not supported"),
        "{reason}"
    );
    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs rsyslog and its openssl driver (Debian packages rsyslog, rsyslog-openssl); scripts/test.sh runs it"]
async fn workload_lines_reach_syslog_over_tls_checked_against_the_configured_ca() {
    let syslog = Syslog::start_tls().await;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let agent = server
        .agent_builder(
            "logs-tls",
            process_runtime(&dir.path().join("runtime")).await,
        )
        .timing(quick_heartbeats())
        .state_dir(dir.path().join("state"))
        .build()
        .expect("agent builds");
    let agent = spawn_registered(agent).await;
    log_collection(
        &server,
        "logs-tls",
        &syslog.address(),
        "tls",
        Some(syslog.ca_pem().expect("TLS server")),
    )
    .await;
    let script = "for i in 1 2 3 4 5; do echo \"secure $i\"; done; exec sleep 3600";
    server
        .management_client()
        .create("default", &workload("logs-tls", script))
        .await
        .expect("workload created");
    let lines = eventually_within("five lines over TLS", Duration::from_secs(60), || async {
        let received = syslog.received();
        let lines: Vec<String> = workload_lines(&received)
            .into_iter()
            .map(str::to_owned)
            .collect();
        (lines.len() >= 5).then_some(lines)
    })
    .await;
    assert_eq!(
        lines,
        ["secure 1", "secure 2", "secure 3", "secure 4", "secure 5"]
    );
    assert!(
        syslog.received().iter().all(|r| r.hostname == "logs-tls"),
        "{}",
        syslog.log()
    );
    let status = agent.handle.status().logs.expect("logs status");
    assert!(status.last_error.is_none(), "{status:?}");
    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs rsyslog and podman (Debian packages rsyslog, podman, runc, catatonit, busybox-static) and root; scripts/test.sh runs it"]
async fn a_podman_workload_s_lines_reach_syslog_without_the_cri_prefix() {
    const IMAGE: &str = "localhost/flotta-rs-test-busybox:latest";
    let podman = flotta_testing::podman::Podman::start().await;
    podman.import_busybox(IMAGE).await;
    let syslog = Syslog::start().await;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let runtime = std::sync::Arc::new(
        flotta_agent_lib::PodmanRuntime::open(podman.options(dir.path().join("podman")))
            .await
            .expect("podman runtime"),
    );
    let agent = server
        .agent_builder("logs-podman", runtime)
        .timing(quick_heartbeats())
        .state_dir(dir.path().join("state"))
        .build()
        .expect("agent builds");
    let agent = spawn_registered(agent).await;
    log_collection(&server, "logs-podman", &syslog.address(), "tcp", None).await;
    let mut counter = workload(
        "logs-podman",
        "i=0; while [ $i -lt 5 ]; do i=$((i+1)); echo \"line $i\"; done; \
         echo 'to stderr' >&2; exec sleep 3600",
    );
    let container = &mut counter.spec.pod.spec.containers[0];
    container.image = Some(IMAGE.into());
    if let Some(program) = container.command.as_mut().and_then(|c| c.first_mut()) {
        *program = "/bin/sh".into();
    }
    server
        .management_client()
        .create("default", &counter)
        .await
        .expect("workload created");

    let received = eventually_within("six lines in syslog", Duration::from_secs(120), || async {
        let received = syslog.received();
        (received.len() >= 6).then_some(received)
    })
    .await;
    let mut texts: Vec<&str> = received.iter().map(|r| r.message.as_str()).collect();
    // stdout and stderr are read by conmon apart: their order between them is not kept.
    texts.sort_unstable();
    assert_eq!(
        texts,
        [
            "line 1",
            "line 2",
            "line 3",
            "line 4",
            "line 5",
            "to stderr"
        ],
        "each line once, without the timestamp, stream and tag"
    );
    assert_eq!(received[0].app_name, "counter");
    assert_eq!(received[0].proc_id, "main");
    drop(agent);
}
