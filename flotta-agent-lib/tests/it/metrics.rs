//! Metrics pushed to a real Prometheus (Debian's `prometheus`, remote-write
//! receiver on): system and workload metrics arrive labelled with the device, and
//! samples buffered while Prometheus is down arrive once it is back.

use std::time::Duration;

use flotta_agent_lib::AgentEvent;
use flotta_core::model::{EdgeDevice, EdgeWorkload};
use flotta_testing::eventually_within;
use flotta_testing::prometheus::{self, Prometheus};

use crate::harness::{RunningAgent, TestServer, process_runtime, quick_heartbeats};

const DEVICE: &str = "metrics-cam";

/// The Prometheus tests are ignored where there is no Prometheus; on CI that is a
/// failure, here.
#[test]
fn prometheus_is_there_on_ci() {
    prometheus::require_in_ci();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus (Debian package prometheus); scripts/test.sh runs it"]
async fn system_and_workload_metrics_reach_prometheus_and_survive_its_outage() {
    let mut prometheus = Prometheus::start().await;
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
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    assert!(
        !state.join("metrics").exists(),
        "no metrics section, no buffer"
    );

    // Metrics on the device, through the management API.
    let client = server.management_client();
    client
        .patch::<EdgeDevice>(
            "default",
            DEVICE,
            &serde_json::json!({"spec": {"metrics": {
                "system": {"interval": 1},
                "receiverConfiguration": {
                    "url": prometheus.write_url(),
                    "requestNumSamples": 100,
                    "timeoutSeconds": 5
                }
            }}}),
        )
        .await
        .expect("device patched");

    // A workload serving a static exposition on the loopback.
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("site");
    std::fs::write(
        site.join("metrics"),
        "# TYPE demo_requests_total counter\ndemo_requests_total{path=\"/\"} 42\n",
    )
    .expect("exposition");
    let port = free_port();
    let workload: EdgeWorkload = serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "pod",
            "device": DEVICE,
            "metrics": {"port": port, "path": "/metrics", "interval": 1},
            "pod": {"spec": {"containers": [{
                "name": "main", "image": "unused",
                "command": ["python3", "-m", "http.server", port.to_string(),
                            "--bind", "127.0.0.1", "--directory", site.display().to_string()]
            }]}}
        }
    }))
    .expect("workload");
    client
        .create("default", &workload)
        .await
        .expect("workload created");

    let patience = Duration::from_secs(60);
    let selector = format!("device_id=\"{DEVICE}\",namespace=\"default\"");
    let memory = eventually_within("system metrics in Prometheus", patience, || async {
        let result = prometheus
            .query(&format!("node_memory_MemTotal_bytes{{{selector}}}"))
            .await?;
        result.first().map(|(_, v)| *v)
    })
    .await;
    assert!(memory > 0.0);
    for name in [
        "node_cpu_seconds_total",
        "node_load1",
        "node_boot_time_seconds",
        "node_network_receive_bytes_total",
        "flotta_agent_heartbeats_sent_total",
        "flotta_agent_certificate_expiry_seconds",
        "flotta_agent_metrics_dropped_samples_total",
    ] {
        eventually_within(name, patience, || async {
            let result = prometheus.query(&format!("{name}{{{selector}}}")).await?;
            (!result.is_empty()).then_some(())
        })
        .await;
    }
    let (labels, value) = eventually_within("workload metrics in Prometheus", patience, || async {
        let result = prometheus
            .query(&format!(
                "demo_requests_total{{{selector},workload=\"web\"}}"
            ))
            .await?;
        result.into_iter().next()
    })
    .await;
    assert_eq!(value, 42.0);
    assert_eq!(labels.get("path").map(String::as_str), Some("/"));
    let up = eventually_within("up of the workload", patience, || async {
        let result = prometheus
            .query(&format!("up{{{selector},workload=\"web\"}}"))
            .await?;
        result.first().map(|(_, v)| *v)
    })
    .await;
    assert_eq!(up, 1.0);

    // Prometheus goes away: pushes fail, samples wait in the buffer.
    prometheus.stop().await;
    agent
        .wait_for("MetricsPushFailed", |e| {
            matches!(e, AgentEvent::MetricsPushFailed { .. })
        })
        .await;
    let collections_at_stop = agent.handle.status().counters.metrics_collections;
    eventually_within(
        "collections buffered while Prometheus is down",
        patience,
        || async {
            let status = agent.handle.status();
            let buffered = status.metrics.as_ref().map_or(0, |m| m.buffered_samples);
            (status.counters.metrics_collections >= collections_at_stop + 4 && buffered > 0)
                .then_some(())
        },
    )
    .await;
    assert!(state.join("metrics").is_dir());

    // Back on the same port and storage: the buffer drains.
    prometheus.start_again().await;
    eventually_within("the buffer drained into Prometheus", patience, || async {
        let metrics = agent.handle.status().metrics?;
        (metrics.buffered_samples == 0 && metrics.consecutive_push_failures == 0).then_some(())
    })
    .await;
    let status = agent.handle.status();
    let metrics = status.metrics.expect("metrics status");
    assert_eq!(metrics.dropped_samples, 0, "nothing dropped: {metrics:?}");
    assert_eq!(status.counters.metrics_rejected_samples, 0);

    // One sample per collection reached Prometheus, across the outage: the count of
    // the collections counter's samples equals its last value (it counts from 1).
    let collected = status.counters.metrics_collections;
    let series = format!("flotta_agent_metrics_collections_total{{{selector}}}");
    eventually_within("the latest collection in Prometheus", patience, || async {
        let last = prometheus
            .query(&format!("max_over_time({series}[1h])"))
            .await?;
        (last.first()?.1 >= collected as f64).then_some(())
    })
    .await;
    // One query, so both are taken at the same instant.
    let missing = prometheus
        .query(&format!(
            "max_over_time({series}[1h]) - count_over_time({series}[1h])"
        ))
        .await
        .expect("query")
        .first()
        .expect("a result")
        .1;
    assert_eq!(
        missing,
        0.0,
        "collections missing in Prometheus; its log: {}",
        prometheus.log()
    );

    agent.stop().await;
    prometheus.stop().await;
}
