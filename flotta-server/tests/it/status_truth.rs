//! Status that tells the truth, with real agents (process runtime) against the real
//! server: devices turn offline and back online in the API and its watch stream,
//! workloads are counted by the revision devices run, and a device whose
//! configuration no longer renders keeps its last good one and says why.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotta_agent_lib::runtime::{RuntimeError, WorkloadRuntime, WorkloadState};
use flotta_agent_lib::{AgentEvent, AgentTiming, ProcessOptions, ProcessRuntime};
use flotta_client::{ListParams, ManagementClient, WatchEvent};
use flotta_core::backoff::Backoff;
use flotta_core::model::{Condition, EdgeDevice, EdgeWorkload};
use flotta_core::wire::Workload;
use flotta_testing::agent::RunningAgent;
use flotta_testing::{Database, NAMESPACE, TestServer, eventually, eventually_within, test_config};
use futures::StreamExt;
use serde_json::{Value, json};

const API_VERSION: &str = "management.project-flotta.io/v1alpha1";

/// How often the server ages device statuses in these tests.
const SWEEP: Duration = Duration::from_millis(200);

/// A process runtime that can be told to refuse every apply, as a device whose
/// hardware went missing would.
struct Refusing {
    inner: ProcessRuntime,
    refuse: AtomicBool,
}

#[async_trait]
impl WorkloadRuntime for Refusing {
    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(RuntimeError::ApplyFailed {
                name: workload.name.clone().unwrap_or_default(),
                reason: "camera not attached".into(),
                source: None,
            });
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

/// The server, its data directory, and agents' state and logs.
struct Bench {
    server: TestServer,
    client: ManagementClient,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn start(database: Database) -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&dir.path().join("server"), &database);
        config.status_sweep_period = SWEEP;
        let server = TestServer::start_with(config).await;
        let client = server.management_client();
        Bench {
            server,
            client,
            dir,
        }
    }

    /// A device set giving every `site=lab` device a heartbeat of `period` seconds.
    async fn lab_set(&self, period: u64, template: Option<Value>) {
        let mut spec = json!({"selector": {"matchLabels": {"site": "lab"}},
            "heartbeat": {"periodSeconds": period}});
        if let Some(template) = template {
            spec["template"] = template;
        }
        let set = json!({"apiVersion": API_VERSION, "kind": "EdgeDeviceSet",
            "metadata": {"name": "lab", "namespace": NAMESPACE}, "spec": spec});
        self.client
            .create_raw(
                flotta_client::ResourceType::of::<flotta_core::model::EdgeDeviceSet>(),
                NAMESPACE,
                &set,
            )
            .await
            .expect("create set");
    }

    /// A real agent `id` with a process runtime, its state and logs under the
    /// bench's directory (the same on every start, so a restart resumes).
    async fn agent(
        &self,
        id: &str,
        runtime: Arc<dyn WorkloadRuntime>,
        period: u64,
    ) -> RunningAgent {
        let registration =
            flotta_testing::identity::registration_identity_in(&self.dir.path().join("server"));
        let timing = AgentTiming::default()
            .with_heartbeat_period(Duration::from_secs(period))
            .with_config_wait(flotta_testing::quick::CONFIG_WAIT)
            .with_retry(
                flotta_testing::quick::RETRY_INITIAL,
                flotta_testing::quick::RETRY_MAX,
            );
        let agent = flotta_testing::agent::agent_builder(
            &self.server.edge_server(),
            &self.server.ca_pem(),
            &registration,
            id,
            runtime,
        )
        .state_dir(self.dir.path().join("agents").join(id))
        .timing(timing)
        .build()
        .expect("agent builds");
        RunningAgent::spawn(agent)
    }

    async fn process_runtime(&self, id: &str) -> ProcessRuntime {
        let mut options = ProcessOptions::new(self.dir.path().join("logs").join(id));
        options.restart = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        options.stop_grace = Duration::from_secs(2);
        ProcessRuntime::open(options)
            .await
            .expect("process runtime")
    }

    async fn device(&self, id: &str) -> EdgeDevice {
        self.client
            .get::<EdgeDevice>(NAMESPACE, id)
            .await
            .expect("get device")
    }

    /// Creates or replaces workload `name` for `site=lab` devices, running `sleep`
    /// with `seconds` (a different argument is a different revision).
    async fn put_workload(&self, name: &str, seconds: u32) {
        let body = json!({"apiVersion": API_VERSION, "kind": "EdgeWorkload",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"site": "lab"}},
                "pod": {"spec": {"containers": [{"name": "main", "image": "none",
                    "command": ["sleep", seconds.to_string()]}]}}}});
        let resource = flotta_client::ResourceType::of::<EdgeWorkload>();
        if self
            .client
            .get::<EdgeWorkload>(NAMESPACE, name)
            .await
            .is_ok()
        {
            self.client
                .patch_raw(resource, NAMESPACE, name, &json!({"spec": body["spec"]}))
                .await
                .expect("update workload");
        } else {
            self.client
                .create_raw(resource, NAMESPACE, &body)
                .await
                .expect("create workload");
        }
    }
}

fn condition<'a>(conditions: Option<&'a Vec<Condition>>, type_: &str) -> Option<&'a Condition> {
    conditions?.iter().find(|c| c.type_ == type_)
}

fn device_condition(device: &EdgeDevice, type_: &str) -> Option<Condition> {
    condition(
        device.status.as_ref().and_then(|s| s.conditions.as_ref()),
        type_,
    )
    .cloned()
}

/// `(status, reason)` of the device's condition `type_`.
fn state_of(device: &EdgeDevice, type_: &str) -> Option<(String, String)> {
    device_condition(device, type_).map(|c| (c.status, c.reason))
}

/// Waits on `watch` for an event of device `id` that `accepts`, up to `within`.
async fn watch_for(
    watch: &mut (
             impl futures::Stream<Item = flotta_client::ClientResult<WatchEvent<EdgeDevice>>> + Unpin
         ),
    id: &str,
    within: Duration,
    what: &str,
    accepts: impl Fn(&EdgeDevice) -> bool,
) -> EdgeDevice {
    let found = tokio::time::timeout(within, async {
        while let Some(event) = watch.next().await {
            let devices = match event.expect("watch event") {
                WatchEvent::Added(d) | WatchEvent::Modified(d) => vec![d],
                WatchEvent::Restarted(items) => items,
                WatchEvent::Deleted(_) => continue,
            };
            for device in devices {
                if device.metadata.name.as_deref() == Some(id) && accepts(&device) {
                    return Some(device);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(device)) => device,
        other => panic!("no watch event with {what} for {id} within {within:?}: {other:?}"),
    }
}

async fn silent_device_turns_offline_and_back(database: Database) {
    let bench = Bench::start(database).await;
    const PERIOD: u64 = 1;
    bench.lab_set(PERIOD, None).await;
    let id = "status-online";
    let runtime: Arc<dyn WorkloadRuntime> = Arc::new(bench.process_runtime(id).await);
    let agent = bench.agent(id, runtime.clone(), PERIOD).await;
    eventually("the device online, heartbeating every second", || async {
        let device = bench.client.get::<EdgeDevice>(NAMESPACE, id).await.ok()?;
        let online = device_condition(&device, "Online")?;
        (online.status == "True" && online.message.contains("every 1 s")).then_some(())
    })
    .await;
    let mut watch = Box::pin(bench.client.watch::<EdgeDevice>(
        Some(NAMESPACE),
        &ListParams::default().fields(format!("metadata.name={id}")),
    ));
    agent.stop().await;
    let offline = watch_for(
        &mut watch,
        id,
        Duration::from_secs(3 * PERIOD + 10),
        "Online=False",
        |d| state_of(d, "Online").is_some_and(|(s, _)| s == "False"),
    )
    .await;
    let condition = device_condition(&offline, "Online").expect("online condition");
    assert_eq!(condition.reason, "Offline");
    let last_seen = offline
        .status
        .as_ref()
        .and_then(|s| s.last_seen.clone())
        .expect("lastSeen");
    let silence = condition.last_transition_time.0.as_second() - last_seen.0.as_second();
    // Offline once silent for more than three periods (whole seconds), written by
    // the next sweep.
    assert!(
        (3 * PERIOD as i64..=3 * PERIOD as i64 + 2).contains(&silence),
        "offline {silence} s after the last heartbeat: {condition:?}"
    );
    let status = offline.status.as_ref().expect("status");
    assert_eq!(status.phase.as_deref(), Some("unknown"));
    // Field selectors see the aged phase.
    let unknown = bench
        .client
        .list::<EdgeDevice>(
            Some(NAMESPACE),
            &ListParams::default().fields("status.phase=unknown"),
        )
        .await
        .expect("list by phase");
    assert!(
        unknown
            .items
            .iter()
            .any(|d| d.metadata.name.as_deref() == Some(id)),
        "the offline device is listed by status.phase=unknown"
    );

    let agent = bench.agent(id, runtime, PERIOD).await;
    let back = watch_for(
        &mut watch,
        id,
        Duration::from_secs(30),
        "Online=True",
        |d| state_of(d, "Online").is_some_and(|(s, _)| s == "True"),
    )
    .await;
    assert_eq!(
        state_of(&back, "Online"),
        Some(("True".into(), "HeartbeatReceived".into()))
    );
    assert_eq!(back.status.and_then(|s| s.phase).as_deref(), Some("up"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_turns_offline_and_back_online_sqlite() {
    silent_device_turns_offline_and_back(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FLOTTA_TEST_POSTGRES_URL (scripts/postgres.sh)"]
async fn a_silent_device_turns_offline_and_back_online_postgres() {
    silent_device_turns_offline_and_back(Database::fresh_postgres().await).await;
}

/// `(current, older, failed)` of the workload's `status.devices` once it names
/// `revision` as current, as `accepts` wants it.
async fn workload_counts(
    bench: &Bench,
    name: &str,
    what: &str,
    accepts: impl Fn(&flotta_core::model::WorkloadDeviceCounts) -> bool,
) -> EdgeWorkload {
    eventually(what, || async {
        let workload = bench
            .client
            .get::<EdgeWorkload>(NAMESPACE, name)
            .await
            .ok()?;
        let devices = workload.status.as_ref()?.devices.as_ref()?;
        accepts(devices).then_some(workload)
    })
    .await
}

fn workload_condition(workload: &EdgeWorkload, type_: &str) -> (String, String) {
    condition(
        workload.status.as_ref().and_then(|s| s.conditions.as_ref()),
        type_,
    )
    .map(|c| (c.status.clone(), c.reason.clone()))
    .unwrap_or_default()
}

async fn workload_update_counts_devices_by_revision(database: Database) {
    let bench = Bench::start(database).await;
    // Long enough that stopped agents stay online while the others restart.
    const PERIOD: u64 = 10;
    bench.lab_set(PERIOD, None).await;
    bench.put_workload("camera", 1000).await;
    let ids = ["rev-a", "rev-b", "rev-c"];
    let mut runtimes = Vec::new();
    let mut agents = Vec::new();
    for id in ids {
        let runtime = Arc::new(Refusing {
            inner: bench.process_runtime(id).await,
            refuse: AtomicBool::new(false),
        });
        agents.push(bench.agent(id, runtime.clone(), PERIOD).await);
        runtimes.push(runtime);
    }
    let first = workload_counts(&bench, "camera", "all three on the first revision", |d| {
        d.targeted == 3 && d.current == 3
    })
    .await;
    assert_eq!(workload_condition(&first, "Available").0, "True");
    let first_revision = first.status.as_ref().and_then(|s| s.revision.clone());

    // Every agent stops, the workload changes: all three run the older revision.
    for agent in agents.drain(..) {
        agent.stop().await;
    }
    bench.put_workload("camera", 2000).await;
    let updated = workload_counts(
        &bench,
        "camera",
        "three devices on an older revision",
        |d| d.older == 3 && d.current == 0,
    )
    .await;
    let second_revision = updated.status.as_ref().and_then(|s| s.revision.clone());
    assert_ne!(second_revision, first_revision, "a new revision");
    assert_eq!(
        updated.status.as_ref().and_then(|s| s.observed_generation),
        updated.metadata.generation,
        "observedGeneration is the generation counted"
    );
    assert_eq!(
        workload_condition(&updated, "Available"),
        ("False".into(), "NotAllCurrent".into())
    );
    assert_eq!(workload_condition(&updated, "Progressing").0, "True");

    // They come back one by one, and the counts move from older to current.
    for (i, (id, runtime)) in ids.iter().zip(&runtimes).enumerate() {
        let mut agent = bench.agent(id, runtime.clone(), PERIOD).await;
        agent
            .wait_for("configuration applied", |e| {
                matches!(e, AgentEvent::ConfigApplied { .. })
            })
            .await;
        let current = i as i64 + 1;
        let status = workload_counts(
            &bench,
            "camera",
            &format!("{current} devices on the current revision"),
            |d| d.current == current && d.older == 3 - current,
        )
        .await;
        let available = workload_condition(&status, "Available").0;
        assert_eq!(
            available == "True",
            current == 3,
            "Available only once every target runs the current revision"
        );
        let device = bench.device(id).await;
        let revision = device
            .status
            .as_ref()
            .and_then(|s| s.workloads.as_ref())
            .and_then(|w| w.iter().find(|w| w.name == "camera"))
            .and_then(|w| w.revision.clone());
        assert_eq!(
            revision, second_revision,
            "{id} reports the revision it runs"
        );
        agents.push(agent);
    }

    // One device cannot apply the next revision: it rolls back and says why.
    runtimes[0].refuse.store(true, Ordering::SeqCst);
    bench.put_workload("camera", 3000).await;
    let failing = workload_counts(&bench, "camera", "two current, one failed", |d| {
        d.current == 2 && d.failed == 1
    })
    .await;
    let devices = failing
        .status
        .as_ref()
        .and_then(|s| s.devices.clone())
        .expect("device counts");
    assert_eq!(devices.failure_reasons.get("ApplyFailed"), Some(&1));
    assert_eq!(
        workload_condition(&failing, "Degraded"),
        ("True".into(), "DevicesFailed".into())
    );
    assert_eq!(workload_condition(&failing, "Available").0, "False");
    let device = eventually("the failing device degraded", || async {
        let device = bench
            .client
            .get::<EdgeDevice>(NAMESPACE, ids[0])
            .await
            .ok()?;
        state_of(&device, "Degraded")
            .is_some_and(|(s, _)| s == "True")
            .then_some(device)
    })
    .await;
    let degraded = device_condition(&device, "Degraded").expect("degraded");
    assert_eq!(degraded.reason, "ApplyFailed");
    assert!(
        degraded.message.contains("camera not attached"),
        "the agent's reason: {degraded:?}"
    );
    for agent in agents {
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_update_is_counted_by_revision_sqlite() {
    workload_update_counts_devices_by_revision(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FLOTTA_TEST_POSTGRES_URL (scripts/postgres.sh)"]
async fn a_workload_update_is_counted_by_revision_postgres() {
    workload_update_counts_devices_by_revision(Database::fresh_postgres().await).await;
}

async fn template_problem_keeps_the_last_good_configuration(database: Database) {
    let bench = Bench::start(database).await;
    const PERIOD: u64 = 1;
    bench.lab_set(PERIOD, None).await;
    bench.put_workload("recorder", 1000).await;
    let id = "template-device";
    let runtime = Arc::new(bench.process_runtime(id).await);
    let mut agent = bench.agent(id, runtime.clone(), PERIOD).await;
    agent
        .wait_for("configuration applied", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. })
        })
        .await;
    let good = eventually("the device up to date", || async {
        let device = bench.client.get::<EdgeDevice>(NAMESPACE, id).await.ok()?;
        (state_of(&device, "Updated")? == ("True".to_owned(), "UpToDate".to_owned()))
            .then_some(device)
    })
    .await;
    let good_version = good
        .status
        .as_ref()
        .and_then(|s| s.last_synced_resource_version.clone())
        .expect("version");
    assert_eq!(
        state_of(&good, "SpecValid").map(|s| s.0).as_deref(),
        Some("True")
    );
    let pids = runtime.pids("recorder");
    assert!(
        pids.iter().all(Option::is_some),
        "the workload runs: {pids:?}"
    );

    // The set's template now needs a label the device does not have.
    bench
        .client
        .patch_raw(
            flotta_client::ResourceType::of::<flotta_core::model::EdgeDeviceSet>(),
            NAMESPACE,
            "lab",
            &json!({"spec": {"template": {"spec": {"metrics": {"receiverConfiguration": {
                "url": "https://{{ .metadata.labels.zone }}.metrics.example"}}}}}}),
        )
        .await
        .expect("patch set");
    let invalid = eventually("SpecValid=False on the device", || async {
        let device = bench.client.get::<EdgeDevice>(NAMESPACE, id).await.ok()?;
        (state_of(&device, "SpecValid")?.0 == "False").then_some(device)
    })
    .await;
    let spec_valid = device_condition(&invalid, "SpecValid").expect("condition");
    assert_eq!(spec_valid.reason, "TemplateFailed");
    assert!(
        spec_valid.message.contains("zone"),
        "the message names the missing label: {spec_valid:?}"
    );
    assert_eq!(
        state_of(&invalid, "Updated").map(|s| s.1).as_deref(),
        Some("OutOfDate")
    );
    // An event says why: RenderFailed, a Warning with the condition's message.
    let params = flotta_client::ListParams {
        field_selector: Some(format!("involvedObject.name={id},reason=RenderFailed")),
        ..Default::default()
    };
    let failed = eventually("a RenderFailed event about the device", || async {
        let events = bench
            .client
            .list_all::<flotta_core::model::Event>(Some(NAMESPACE), &params)
            .await
            .ok()?;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].type_.as_deref(), Some("Warning"));
    assert_eq!(
        failed[0].involved_object.kind.as_deref(),
        Some("EdgeDevice")
    );
    assert_eq!(
        failed[0].message.as_deref(),
        Some(spec_valid.message.as_str())
    );
    let set = eventually("the set says its template fails", || async {
        let set = bench
            .client
            .get::<flotta_core::model::EdgeDeviceSet>(NAMESPACE, "lab")
            .await
            .ok()?;
        let valid = condition(set.status.as_ref()?.conditions.as_ref(), "Valid")?;
        (valid.status == "False").then_some(set)
    })
    .await;
    let valid = condition(
        set.status.as_ref().and_then(|s| s.conditions.as_ref()),
        "Valid",
    )
    .expect("Valid");
    assert_eq!(valid.reason, "TemplateFailed");
    assert!(valid.message.contains(id), "{valid:?}");
    assert_eq!(set.status.as_ref().and_then(|s| s.device_count), Some(1));

    // The device keeps running its last good configuration: heartbeating after the
    // change, it still reports it, and the workload's processes are the same.
    let since = spec_valid.last_transition_time.0.as_second();
    let later = eventually("a heartbeat after the template change", || async {
        let device = bench.client.get::<EdgeDevice>(NAMESPACE, id).await.ok()?;
        let seen = device.status.as_ref()?.last_seen.as_ref()?.0.as_second();
        (seen > since + 1).then_some(device)
    })
    .await;
    assert_eq!(
        later
            .status
            .as_ref()
            .and_then(|s| s.last_synced_resource_version.as_deref()),
        Some(good_version.as_str())
    );
    assert_eq!(
        agent.handle.status().config_version.as_deref(),
        Some(good_version.as_str())
    );
    assert_eq!(
        runtime.pids("recorder"),
        pids,
        "the workload was left alone"
    );

    // The label arrives: the configuration renders again and reaches the device.
    bench
        .client
        .patch::<EdgeDevice>(
            NAMESPACE,
            id,
            &json!({"metadata": {"labels": {"zone": "z1"}}}),
        )
        .await
        .expect("label the device");
    agent
        .wait_for("the new configuration applied", |e| {
            matches!(e, AgentEvent::ConfigApplied { .. })
        })
        .await;
    eventually_within("SpecValid=True again", Duration::from_secs(30), || async {
        let device = bench.client.get::<EdgeDevice>(NAMESPACE, id).await.ok()?;
        (state_of(&device, "SpecValid")?.0 == "True" && state_of(&device, "Updated")?.0 == "True")
            .then_some(())
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_problem_keeps_the_last_good_configuration_sqlite() {
    template_problem_keeps_the_last_good_configuration(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FLOTTA_TEST_POSTGRES_URL (scripts/postgres.sh)"]
async fn a_template_problem_keeps_the_last_good_configuration_postgres() {
    template_problem_keeps_the_last_good_configuration(Database::fresh_postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_fleet_gauges_and_a_latency_histogram() {
    let bench = Bench::start(Database::Sqlite).await;
    bench.lab_set(1, None).await;
    bench.put_workload("meter", 1000).await;
    let id = "metrics-device";
    let runtime = Arc::new(bench.process_runtime(id).await);
    let agent = bench.agent(id, runtime, 1).await;
    workload_counts(&bench, "meter", "the device on the current revision", |d| {
        d.current == 1
    })
    .await;
    let text = bench
        .server
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    // The server recorded the end of the certificate it issued to the agent, a
    // device lifetime from now.
    let recorded = bench
        .device(id)
        .await
        .metadata
        .annotations
        .and_then(|a| a.get("flotta-rs.io/certificate-not-after").cloned())
        .and_then(|text| flotta_core::timestamp::parse_rfc3339(&text))
        .expect("certificate-not-after annotation");
    let expected_end = time::OffsetDateTime::now_utc() + flotta_core::pki::DEFAULT_DEVICE_LIFETIME;
    assert!(
        (recorded - expected_end).abs() < time::Duration::hours(1),
        "{recorded} vs {expected_end}"
    );
    for expected in [
        "flotta_devices 1\n",
        "flotta_devices_by_condition{condition=\"Online\",status=\"True\"} 1\n",
        "flotta_enrolments_pending 0\n",
        // The agent's certificate is fresh: not expiring within 30 days.
        "flotta_device_certificates_expiring{within=\"30d\"} 0\n",
        "flotta_workload_devices{namespace=\"default\",workload=\"meter\",state=\"current\"} 1\n",
        "# TYPE flotta_http_request_latency_seconds histogram\n",
        "flotta_http_request_latency_seconds_bucket{listener=\"edge\",method=\"POST\",le=\"+Inf\"}",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    agent.stop().await;
}

/// Flotta's own agent reports only the configuration `version`: a device on the
/// served version counts as running that configuration's revision of each workload
/// it reports `Running`, and as running an older one once the workload changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flotta_agent_reporting_only_the_version_counts_by_configuration() {
    let bench = Bench::start(Database::Sqlite).await;
    let id = "flotta-agent";
    let identity = crate::app_edge_client::enrol_and_register(
        &bench.server.edge_server(),
        &bench.server.ca_pem(),
        &bench.dir.path().join("server"),
        id,
    )
    .await;
    let device = crate::app_edge_client::device_client(&bench.server.ca_pem(), &identity);
    let workload = |seconds: u32| {
        json!({"apiVersion": API_VERSION, "kind": "EdgeWorkload",
            "metadata": {"name": "legacy", "namespace": NAMESPACE},
            "spec": {"type": "pod", "device": id,
                "pod": {"spec": {"containers": [{"name": "main", "image": "none",
                    "command": ["sleep", seconds.to_string()]}]}}}})
    };
    let resource = flotta_client::ResourceType::of::<EdgeWorkload>();
    bench
        .client
        .create_raw(resource, NAMESPACE, &workload(100))
        .await
        .expect("create workload");
    let url = |path: &str| crate::app_edge_client::edge_url(&bench.server.edge_server(), path);
    let version = eventually("a configuration carrying the workload", || async {
        let response = device
            .get(url(&format!("/data/{id}/in")))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        let content = &body["content"];
        (content["workloads"][0]["name"] == "legacy")
            .then(|| content["version"].as_str().map(str::to_owned))
            .flatten()
    })
    .await;
    let beat = |version: String| {
        let device = device.clone();
        let url = url(&format!("/data/{id}/out"));
        async move {
            let response = device
                .post(url)
                .json(&flotta_testing::messages::envelope(
                    "heartbeat",
                    json!({"status": "up", "version": version,
                        "workloads": [{"name": "legacy", "status": "Running"}]}),
                ))
                .send()
                .await
                .expect("heartbeat");
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    beat(version.clone()).await;
    let counted = workload_counts(
        &bench,
        "legacy",
        "the device on the current revision",
        |d| d.current == 1,
    )
    .await;
    let stored = bench.device(id).await;
    let revision = stored
        .status
        .as_ref()
        .and_then(|s| s.workloads.as_ref())
        .and_then(|w| w.first())
        .and_then(|w| w.revision.clone());
    assert_eq!(revision, counted.status.and_then(|s| s.revision));
    assert_eq!(
        state_of(&stored, "Updated"),
        Some(("True".into(), "UpToDate".into()))
    );

    // The workload changes; the device still reports the old version.
    bench
        .client
        .patch_raw(
            resource,
            NAMESPACE,
            "legacy",
            &json!({"spec": workload(200)["spec"]}),
        )
        .await
        .expect("update workload");
    beat(version).await;
    workload_counts(&bench, "legacy", "the device on an older revision", |d| {
        d.older == 1 && d.current == 0
    })
    .await;
}
