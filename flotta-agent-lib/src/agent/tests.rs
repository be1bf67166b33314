//! The agent's timing on a [`ManualClock`]: renewal when core says it falls due,
//! and backoff while the server is unreachable, in milliseconds of real time.

use std::sync::Arc;
use std::time::Duration;

use flotta_core::backoff::Backoff;
use flotta_core::enrolment::{AgentConfig, AgentPhase};
use flotta_core::pki::{
    BuiltinCa, CsrPolicy, DeviceIdentity, DeviceKey, issue_registration_certificate,
};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::oneshot;

use super::{Agent, AgentEvent, AgentHandle, AgentTiming, HeartbeatResult};
use crate::clock::{Clock, ManualClock};
use crate::runtime::MemoryRuntime;
use crate::state::{FileStateStore, StateItem, StateStore};

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const LIFETIME: time::Duration = time::Duration::days(90);

/// An agent resuming with a persisted certificate issued at `T0`, against a server
/// address nobody listens on, on a manual clock standing at `T0`.
struct Offline {
    clock: Arc<ManualClock>,
    handle: AgentHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Offline {
    async fn start(timing: AgentTiming, enrolment: AgentConfig) -> Self {
        let ca = BuiltinCa::generate("test CA", T0).expect("ca");
        let key = DeviceKey::generate().expect("key");
        let csr = key.csr("edge-1").expect("csr");
        let policy = CsrPolicy {
            device_lifetime: LIFETIME,
            ..CsrPolicy::default()
        };
        let device = DeviceIdentity::new("edge-1", "default").expect("device");
        let certificate = policy
            .issue(&ca, csr.pem().as_bytes(), &device, T0)
            .await
            .expect("issue");
        let registration = issue_registration_certificate(&ca, T0, time::Duration::days(365))
            .await
            .expect("register");
        let dir = tempfile::tempdir().expect("dir");
        let store = FileStateStore::new(dir.path());
        store
            .save(StateItem::DeviceKey, key.to_pem().as_bytes())
            .await
            .expect("key saved");
        store
            .save(StateItem::DeviceCertificate, certificate.pem().as_bytes())
            .await
            .expect("certificate saved");
        let clock = Arc::new(ManualClock::new(T0));
        let agent = Agent::builder()
            // Port 1 on loopback: connections are refused at once.
            .server("https://127.0.0.1:1")
            .ca_pem(ca.to_pem().0)
            .registration_identity(
                registration.certificate.pem(),
                registration.key_pem().to_owned(),
            )
            .device_id("edge-1")
            .state_store(Arc::new(store))
            .runtime(Arc::new(MemoryRuntime::new()))
            .timing(timing)
            .enrolment_config(enrolment)
            .clock(clock.clone())
            .build()
            .expect("agent");
        let handle = agent.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = agent
                .run(async {
                    let _ = stopped.await;
                })
                .await;
            assert!(result.is_ok(), "{result:?}");
        });
        Self {
            clock,
            handle,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within(&mut self.task).await.expect("agent task");
    }
}

/// Real-time guard of a wait on a signal; the tests themselves take milliseconds.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("the agent did not get there")
}

fn millis(ms: u64) -> time::Duration {
    time::Duration::try_from(Duration::from_millis(ms)).expect("in range")
}

#[tokio::test]
async fn renewal_starts_when_core_says_it_is_due_and_backs_off_while_offline() {
    // The run loops' retries sit hours away, out of the windows watched here.
    let timing =
        AgentTiming::default().with_retry(Duration::from_secs(3600), Duration::from_secs(7200));
    let enrolment = AgentConfig {
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(4)),
        ..AgentConfig::default()
    };
    let agent = Offline::start(timing, enrolment).await;
    let clock = agent.clock.clone();
    // Read back from state, the certificate's lifetime counts from its NotBefore
    // (an hour back-dated): due at two thirds of 90 days and an hour.
    let due = T0 - time::Duration::hours(1) + (LIFETIME + time::Duration::hours(1)) * 2 / 3;
    within(clock.sleeping_until(|d| d == due)).await;
    assert_eq!(agent.handle.status().certificate_renew_at, Some(due));
    assert_eq!(agent.handle.status().phase, Some(AgentPhase::Running));

    clock.advance_to(due - time::Duration::SECOND);
    assert!(clock.deadlines().contains(&due), "not due yet");

    // Due: the renewal finds no server and retries after 1 s, 2 s, 4 s, 4 s (each
    // jittered into its upper half).
    clock.advance_to(due);
    let mut now = due;
    for cap_ms in [1000, 2000, 4000, 4000] {
        let cap = millis(cap_ms);
        let retry = within(clock.sleeping_until(|d| d > now && d <= now + cap)).await;
        assert!(
            retry >= now + cap / 2,
            "{retry} is early for a cap of {cap}"
        );
        assert_eq!(agent.handle.status().phase, Some(AgentPhase::Renewing));
        clock.advance_to(retry);
        now = retry;
    }
    agent.stop().await;
}

#[tokio::test]
async fn heartbeats_back_off_doubling_to_the_cap_while_the_server_is_unreachable() {
    let retry = Backoff::new(Duration::from_secs(8), Duration::from_secs(32));
    let timing = AgentTiming::default().with_retry(retry.initial, retry.max);
    let agent = Offline::start(timing, AgentConfig::default()).await;
    let clock = agent.clock.clone();
    let mut events = agent.handle.subscribe();
    for failures in 1..=5u32 {
        within(async {
            while !matches!(events.recv().await, Ok(AgentEvent::HeartbeatFailed { .. })) {}
        })
        .await;
        let Some(HeartbeatResult::Failed {
            at,
            consecutive_failures,
            ..
        }) = agent.handle.status().last_heartbeat
        else {
            panic!("a failed heartbeat is reported");
        };
        assert_eq!(consecutive_failures, failures);
        assert_eq!(
            at,
            clock.now(),
            "the attempt is stamped by the agent's clock"
        );
        // The next attempt waits between half and all of 8 s · 2^(n-1), at most 32 s.
        let cap = time::Duration::try_from(retry.cap(failures - 1)).expect("in range");
        let next = within(clock.sleeping_until(|d| d >= at + cap / 2 && d <= at + cap)).await;
        clock.advance_to(at + cap / 2 - time::Duration::MILLISECOND);
        assert!(
            clock.deadlines().contains(&next),
            "the retry waits at least half the cap"
        );
        clock.advance_to(at + cap);
    }
    agent.stop().await;
}
