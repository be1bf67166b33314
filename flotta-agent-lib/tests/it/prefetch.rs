//! Prefetch before apply: a version whose images cannot be downloaded is not
//! applied (the running workloads stay as they are), is reported (event, status,
//! heartbeat) and retried with backoff, and applies once the registry recovers; a
//! prefetch that does not fit on the disk fails with the numbers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use async_trait::async_trait;
use flotta_agent_lib::{AgentEvent, MemoryRuntime, RuntimeError, WorkloadRuntime, WorkloadState};
use flotta_core::model::EdgeWorkload;
use flotta_core::reconcile::WorkloadInputs;
use flotta_core::wire::Workload;

use crate::harness::{RunningAgent, TestServer, quick_heartbeats, workload};

/// A memory runtime whose registry is down while `registry_down` is set.
struct FlakyRegistry {
    inner: MemoryRuntime,
    registry_down: AtomicBool,
    pulls: AtomicU32,
}

#[async_trait]
impl WorkloadRuntime for FlakyRegistry {
    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError> {
        self.inner.apply(workload).await
    }

    async fn prefetch(
        &self,
        workload: &Workload,
        _inputs: &WorkloadInputs,
    ) -> Result<(), RuntimeError> {
        self.pulls.fetch_add(1, Ordering::SeqCst);
        if self.registry_down.load(Ordering::SeqCst) {
            return Err(RuntimeError::PrefetchFailed {
                name: workload.name.clone().unwrap_or_default(),
                image: "registry.test/app:2".into(),
                reason: "connection refused".into(),
            });
        }
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.inner.remove(name).await
    }

    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError> {
        self.inner.list().await
    }
}

fn image_of(runtime: &FlakyRegistry) -> Option<String> {
    let workload = runtime.inner.workload("app")?;
    let spec = workload.specification?;
    spec.contains("app:2")
        .then(|| "app:2".to_owned())
        .or_else(|| spec.contains("app:1").then(|| "app:1".to_owned()))
}

#[tokio::test]
async fn a_failed_prefetch_leaves_the_running_version_and_is_retried_until_it_works() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(FlakyRegistry {
        inner: MemoryRuntime::new(),
        registry_down: AtomicBool::new(false),
        pulls: AtomicU32::new(0),
    });
    let mut timing = quick_heartbeats();
    timing.retry.initial = std::time::Duration::from_millis(50);
    timing.retry.max = std::time::Duration::from_millis(200);
    let agent = server
        .agent_builder("prefetch-1", runtime.clone())
        .state_dir(state.path())
        .timing(timing)
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    let client = server.management_client();
    client
        .create::<EdgeWorkload>(
            "default",
            &workload("app", "prefetch-1", "registry.test/app:1"),
        )
        .await
        .expect("workload created");
    agent
        .wait_for("version 1 applied", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. })
        })
        .await;
    assert_eq!(image_of(&runtime).as_deref(), Some("app:1"));

    runtime.registry_down.store(true, Ordering::SeqCst);
    client
        .patch::<EdgeWorkload>(
            "default",
            "app",
            &serde_json::json!({"spec": {"pod": {"spec": {"containers": [{"name": "main", "image": "registry.test/app:2"}]}}}}),
        )
        .await
        .expect("workload changed");
    // Two failed prefetches: reported each time, retried, nothing applied.
    for _ in 0..2 {
        let seen = agent
            .wait_for("a failed prefetch", |e| {
                matches!(e, AgentEvent::PrefetchFailed { .. })
            })
            .await;
        let Some(AgentEvent::PrefetchFailed { reason, .. }) = seen.last() else {
            panic!("no PrefetchFailed event");
        };
        assert!(
            reason
                .contains("image registry.test/app:2 could not be prefetched: connection refused"),
            "{reason}"
        );
    }
    assert_eq!(
        image_of(&runtime).as_deref(),
        Some("app:1"),
        "still version 1"
    );
    let status = agent.handle.status();
    assert!(
        status
            .prefetch_error
            .as_deref()
            .is_some_and(|e| e.contains("connection refused")),
        "{status:?}"
    );
    assert_eq!(
        status.failed_version, None,
        "a prefetch failure is not a failed version"
    );

    runtime.registry_down.store(false, Ordering::SeqCst);
    agent
        .wait_for("version 2 applied", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. })
        })
        .await;
    assert_eq!(image_of(&runtime).as_deref(), Some("app:2"));
    assert_eq!(agent.handle.status().prefetch_error, None);
    assert!(runtime.pulls.load(Ordering::SeqCst) >= 4);
    agent.stop().await;
}

#[tokio::test]
async fn a_prefetch_that_does_not_fit_on_the_disk_fails_with_the_numbers() {
    let server = TestServer::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let runtime = Arc::new(MemoryRuntime::new());
    let agent = server
        .agent_builder("prefetch-2", runtime.clone())
        .state_dir(state.path())
        .prefetch_min_free(state.path(), u64::MAX)
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    server
        .management_client()
        .create::<EdgeWorkload>(
            "default",
            &workload("app", "prefetch-2", "registry.test/app:1"),
        )
        .await
        .expect("workload created");
    let seen = agent
        .wait_for("a failed prefetch", |e| {
            matches!(e, AgentEvent::PrefetchFailed { .. })
        })
        .await;
    let Some(AgentEvent::PrefetchFailed { reason, .. }) = seen.last() else {
        panic!("no PrefetchFailed event");
    };
    assert!(reason.contains("not enough disk space on"), "{reason}");
    assert!(reason.contains("MiB available"), "{reason}");
    assert!(runtime.names().is_empty(), "nothing applied");
    agent.stop().await;
}
