//! A fleet of real device agents (`flotta-agent-lib` with the in-memory runtime)
//! running in this process against a server, for the fault tests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotta_agent_lib::{AgentHandle, AgentPhase, AgentTiming, HeartbeatResult, MemoryRuntime};
use flotta_testing::agent::RunningAgent;
use time::OffsetDateTime;

/// One agent of the fleet.
pub struct Member {
    pub device_id: String,
    pub runtime: Arc<MemoryRuntime>,
    pub handle: AgentHandle,
    agent: RunningAgent,
}

/// Agents sharing one temporary directory for their state.
pub struct Fleet {
    pub members: Vec<Member>,
    _state: tempfile::TempDir,
}

/// Timers of the fleet's agents: heartbeat `period`, retries from 50 ms up to
/// `retry_max`, long-polls of `config_wait`.
pub fn timing(period: Duration, retry_max: Duration, config_wait: Duration) -> AgentTiming {
    AgentTiming::default()
        .with_heartbeat_period(period)
        .with_config_wait(config_wait)
        .with_retry(flotta_testing::quick::RETRY_INITIAL, retry_max)
}

impl Fleet {
    /// Starts `count` agents named `{prefix}-{i}` (namespace `default`; they report
    /// labels `site=lab` and `fleet={prefix}` at enrolment, which the server does
    /// not copy to the device) against the Edge API at `edge_server`, enrolling
    /// with the registration identity found in `data_dir/pki`.
    pub fn spawn(
        edge_server: &str,
        ca_pem: &str,
        data_dir: &Path,
        prefix: &str,
        count: usize,
        timing: AgentTiming,
    ) -> Fleet {
        let registration = flotta_testing::identity::registration_identity_in(data_dir);
        let state = tempfile::tempdir().expect("state directory");
        let members = (0..count)
            .map(|i| {
                let device_id = format!("{prefix}-{i:03}");
                let runtime = Arc::new(MemoryRuntime::new());
                let agent = flotta_testing::agent::agent_builder(
                    edge_server,
                    ca_pem,
                    &registration,
                    &device_id,
                    runtime.clone(),
                )
                .label("fleet", prefix)
                .state_dir(state.path().join(&device_id))
                .timing(timing)
                .enrolment_config(flotta_testing::quick::enrolment_config(timing.retry.max))
                .build()
                .expect("agent builds");
                let agent = RunningAgent::spawn(agent);
                Member {
                    device_id,
                    runtime,
                    handle: agent.handle.clone(),
                    agent,
                }
            })
            .collect();
        Fleet {
            members,
            _state: state,
        }
    }

    /// Waits until every agent holds a certificate and delivered a heartbeat.
    pub async fn wait_registered(&self, within: Duration) {
        let since = OffsetDateTime::UNIX_EPOCH;
        let deadline = Instant::now() + within;
        loop {
            let running = self
                .members
                .iter()
                .filter(|m| m.handle.status().phase == Some(AgentPhase::Running))
                .count();
            let beating = self.heartbeating_since(since);
            if running == self.members.len() && beating == self.members.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{running} of {} agents registered and {beating} heartbeating after {within:?}",
                self.members.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets every device's `spec.heartbeat.periodSeconds` through the management
    /// API at `api_server` (the server's default is 60 s, as Flotta's), with a
    /// longest silence of one period, so that the agents heartbeat every period
    /// as Flotta's do (the heartbeat load these tests put on the server; by
    /// default an idle agent sends one only when its report changes), then waits
    /// until each agent delivered a heartbeat after having applied it.
    pub async fn set_heartbeat_period(
        &self,
        client: &reqwest::Client,
        api_server: &str,
        token: &str,
        period: Duration,
    ) {
        for member in &self.members {
            let response = client
                .patch(format!(
                    "{api_server}{}",
                    crate::api_harness::object_path("default", "edgedevices", &member.device_id)
                ))
                .bearer_auth(token)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/merge-patch+json",
                )
                .body(
                    serde_json::json!({"spec": {"heartbeat": {
                        "periodSeconds": period.as_secs(),
                        "maxSilenceSeconds": period.as_secs(),
                    }}})
                    .to_string(),
                )
                .send()
                .await
                .expect("patch device");
            assert!(
                response.status().is_success(),
                "heartbeat period of {}: {}",
                member.device_id,
                response.status()
            );
        }
        // Within two periods of now, every agent runs the new configuration and has
        // heartbeated on its schedule.
        let since = OffsetDateTime::now_utc() + time::Duration::try_from(period).expect("period");
        self.wait_heartbeating_since(since, Instant::now(), period * 4 + Duration::from_secs(30))
            .await;
    }

    /// How many agents had a heartbeat delivered (answered 200) at or after `since`.
    pub fn heartbeating_since(&self, since: OffsetDateTime) -> usize {
        self.members
            .iter()
            .filter(|m| {
                matches!(m.handle.status().last_heartbeat,
                    Some(HeartbeatResult::Delivered { at }) if at >= since)
            })
            .count()
    }

    /// Waits until every agent had a heartbeat delivered at or after `since`;
    /// returns the time that took from `start`.
    pub async fn wait_heartbeating_since(
        &self,
        since: OffsetDateTime,
        start: Instant,
        within: Duration,
    ) -> Duration {
        loop {
            let beating = self.heartbeating_since(since);
            if beating == self.members.len() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{beating} of {} agents heartbeating again after {within:?}",
                self.members.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every agent's runtime runs `workload` with an image `image`;
    /// returns, per agent, the time from `start` to when it was first seen so
    /// (sampled every 10 ms).
    pub async fn wait_converged(
        &self,
        workload: &str,
        image: &str,
        start: Instant,
        within: Duration,
    ) -> Vec<Duration> {
        let mut converged: Vec<Option<Duration>> = vec![None; self.members.len()];
        loop {
            for (member, at) in self.members.iter().zip(converged.iter_mut()) {
                if at.is_none() && runs_image(&member.runtime, workload, image) {
                    *at = Some(start.elapsed());
                }
            }
            if converged.iter().all(Option::is_some) {
                return converged.into_iter().flatten().collect();
            }
            let missing: Vec<&str> = self
                .members
                .iter()
                .zip(&converged)
                .filter(|(_, at)| at.is_none())
                .map(|(m, _)| m.device_id.as_str())
                .collect();
            assert!(
                start.elapsed() < within,
                "{workload} ({image}) not applied within {within:?} on {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every agent and checks none failed.
    pub async fn stop(mut self) {
        for member in &mut self.members {
            member.agent.request_stop();
        }
        for member in self.members {
            let result = member.agent.stopped().await;
            assert!(
                result.is_ok(),
                "agent {} ended with {result:?}",
                member.device_id
            );
        }
    }
}

/// Whether `runtime` runs `workload` with a container of image `image`.
fn runs_image(runtime: &MemoryRuntime, workload: &str, image: &str) -> bool {
    runtime
        .workload(workload)
        .and_then(|w| w.specification)
        .is_some_and(|pod| pod.contains(image))
}

/// An EdgeWorkload for every device of its namespace (an empty selector), running
/// `image`.
pub fn fleet_workload(name: &str, image: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {}},
            "pod": {"spec": {"containers": [{"name": "app", "image": image}]}}},
    })
}

/// The `q` quantile (0..=1) of `samples`, nearest rank.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}
