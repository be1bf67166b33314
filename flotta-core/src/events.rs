//! How events are recorded: what each one says, how a repetition is folded into
//! the event already stored, and which events retention drops. The server carries
//! these decisions out; nothing here does IO.
//!
//! An event is identified by what it says: the object it is about, its reason,
//! message, type and reporting component. [`EventOccurrence::object_name`] turns
//! that into the stored object's name, so a repetition finds the same object and
//! [`EventOccurrence::fold_into`] bumps its `count` and `lastTimestamp` instead of
//! adding one (as Kubernetes' event recorder does).
//!
//! ```
//! use flotta_core::events::{EventOccurrence, EventType};
//! use time::OffsetDateTime;
//!
//! let reported = flotta_core::wire::EventInfo {
//!     reason: Some("ApplyFailed".into()),
//!     message: Some("version abc: podman refused the pod".into()),
//!     type_: Some("warn".into()),
//!     ..Default::default()
//! };
//! let occurrence = EventOccurrence::from_device("lab", "edge-01", &reported);
//! assert_eq!(occurrence.event_type, EventType::Warning);
//! let now = OffsetDateTime::now_utc();
//! let first = occurrence.fold_into(None, now);
//! let again = occurrence.fold_into(Some(first), now);
//! assert_eq!(again.count, Some(2));
//! assert!(occurrence.object_name().starts_with("edge-01."));
//! ```

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::enrolment::DeviceRecord;
use crate::kind::ResourceKind;
use crate::model::{
    Condition, EdgeDeviceStatus, Event, EventSource, ObjectMeta, ObjectReference, Resource, Time,
};
use crate::reconcile::status::device_condition;
use crate::wire::EventInfo;

/// `source.component` of events the server records.
pub const SERVER_COMPONENT: &str = "flotta-server";
/// `source.component` of events a device reported.
pub const AGENT_COMPONENT: &str = "flotta-agent";

/// Longest reason kept (longer ones are cut), as Kubernetes limits it.
pub const MAX_REASON_CHARS: usize = 128;
/// Longest message kept (longer ones are cut and end with `...`).
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// An event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong or needs attention.
    Warning,
}

impl EventType {
    /// `Normal` or `Warning`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }

    /// The type of a device event's wire `type` (Flotta's `info` and `warn`):
    /// `warn` (and `warning`, `Warning`) is a warning, anything else normal.
    pub fn from_agent(type_: Option<&str>) -> Self {
        match type_ {
            Some(t) if t.eq_ignore_ascii_case("warn") || t.eq_ignore_ascii_case("warning") => {
                EventType::Warning
            }
            _ => EventType::Normal,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvolvedObject {
    /// Its kind.
    pub kind: ResourceKind,
    /// Its namespace (the event is stored there too).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its `metadata.uid`, when the recorder knows it.
    pub uid: Option<String>,
}

impl InvolvedObject {
    /// The object `kind` `namespace/name`, uid unknown.
    pub fn new(kind: ResourceKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            uid: None,
        }
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.kind.api_version().to_owned()),
            kind: Some(self.kind.as_str().to_owned()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: self.uid.clone(),
            ..Default::default()
        }
    }
}

/// Something that happened once: what an event says, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventOccurrence {
    /// The object it is about.
    pub involved: InvolvedObject,
    /// Short CamelCase reason, e.g. `ApplyFailed`.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// Normal or warning.
    pub event_type: EventType,
    /// Who reports it ([`SERVER_COMPONENT`] or [`AGENT_COMPONENT`]).
    pub component: &'static str,
    /// The device that reported it (`source.host`), for device events.
    pub host: Option<String>,
}

fn cut(text: &str, max: usize, ellipsis: bool) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = if ellipsis { max.saturating_sub(3) } else { max };
    let mut out: String = text.chars().take(keep).collect();
    if ellipsis {
        out.push_str("...");
    }
    out
}

fn time_of(at: OffsetDateTime) -> Option<Time> {
    serde_json::from_value(Value::String(crate::timestamp::rfc3339_seconds(at))).ok()
}

impl EventOccurrence {
    /// An event the server records about `involved`. Reason and message are cut to
    /// [`MAX_REASON_CHARS`] and [`MAX_MESSAGE_CHARS`].
    pub fn new(
        involved: InvolvedObject,
        reason: &str,
        message: &str,
        event_type: EventType,
    ) -> Self {
        Self {
            involved,
            reason: cut(reason, MAX_REASON_CHARS, false),
            message: cut(message, MAX_MESSAGE_CHARS, true),
            event_type,
            component: SERVER_COMPONENT,
            host: None,
        }
    }

    /// An event device `device` (in `namespace`) reported in a heartbeat: about
    /// its `EdgeDevice`, from `flotta-agent` on that host. A missing reason reads
    /// `Unknown`; Flotta's `info`/`warn` become `Normal`/`Warning`.
    pub fn from_device(namespace: &str, device: &str, reported: &EventInfo) -> Self {
        let reason = reported
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or("Unknown");
        let message = reported.message.as_deref().unwrap_or_default();
        Self {
            component: AGENT_COMPONENT,
            host: Some(device.to_owned()),
            ..Self::new(
                InvolvedObject::new(ResourceKind::EdgeDevice, namespace, device),
                reason,
                message,
                EventType::from_agent(reported.type_.as_deref()),
            )
        }
    }

    /// The events of one heartbeat, identical ones folded together: each
    /// occurrence with how many times the heartbeat carried it, in first-seen order.
    pub fn from_heartbeat(
        namespace: &str,
        device: &str,
        reported: &[EventInfo],
    ) -> Vec<(EventOccurrence, u32)> {
        let mut folded: Vec<(EventOccurrence, u32)> = Vec::new();
        for event in reported {
            let occurrence = Self::from_device(namespace, device, event);
            match folded.iter_mut().find(|(o, _)| *o == occurrence) {
                Some((_, times)) => *times = times.saturating_add(1),
                None => folded.push((occurrence, 1)),
            }
        }
        folded
    }

    /// The namespace the event is stored in: its object's.
    pub fn namespace(&self) -> &str {
        &self.involved.namespace
    }

    /// The stored event's name: the object's name (cut to leave room), a dot and
    /// 16 hex digits of a SHA-256 over everything the event says, so the same
    /// event always gets the same name and different ones (practically) never do.
    pub fn object_name(&self) -> String {
        let mut hash = Sha256::new();
        for part in [
            self.involved.kind.as_str(),
            &self.involved.namespace,
            &self.involved.name,
            &self.reason,
            &self.message,
            self.event_type.as_str(),
            self.component,
            self.host.as_deref().unwrap_or_default(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest = hash.finalize();
        let mut suffix = String::with_capacity(16);
        for byte in &digest[..8] {
            suffix.push_str(&format!("{byte:02x}"));
        }
        // A DNS subdomain has at most 253 characters; a cut name must not end in a
        // dot or a dash.
        let prefix: String = self.involved.name.chars().take(253 - 17).collect();
        let prefix = prefix.trim_end_matches(['.', '-']).to_ascii_lowercase();
        if prefix.is_empty() {
            suffix
        } else {
            format!("{prefix}.{suffix}")
        }
    }

    /// The event to store for this occurrence happening `times` times at `now`:
    /// a new one (count `times`, first and last timestamps `now`) or `existing`
    /// with its count raised by `times` and `lastTimestamp` moved to `now`.
    pub fn fold_times_into(
        &self,
        existing: Option<Event>,
        times: u32,
        now: OffsetDateTime,
    ) -> Event {
        let times = i32::try_from(times.max(1)).unwrap_or(i32::MAX);
        let now_time = time_of(now);
        match existing {
            Some(mut event) => {
                event.count = Some(event.count.unwrap_or(1).saturating_add(times));
                if event.first_timestamp.is_none() {
                    event.first_timestamp = now_time.clone();
                }
                event.last_timestamp = now_time;
                event
            }
            None => Event {
                api_version: Event::RESOURCE_KIND.api_version().to_owned(),
                kind: Event::KIND.to_owned(),
                metadata: ObjectMeta {
                    name: Some(self.object_name()),
                    namespace: Some(self.involved.namespace.clone()),
                    ..Default::default()
                },
                involved_object: self.involved.reference(),
                reason: Some(self.reason.clone()),
                message: Some(self.message.clone()),
                type_: Some(self.event_type.as_str().to_owned()),
                count: Some(times),
                first_timestamp: now_time.clone(),
                last_timestamp: now_time,
                source: Some(EventSource {
                    component: Some(self.component.to_owned()),
                    host: self.host.clone(),
                }),
                reporting_component: Some(self.component.to_owned()),
                extra: Default::default(),
            },
        }
    }

    /// [`fold_times_into`](Self::fold_times_into) for one occurrence.
    pub fn fold_into(&self, existing: Option<Event>, now: OffsetDateTime) -> Event {
        self.fold_times_into(existing, 1, now)
    }
}

/// The server-side events, one variant per reason: the reason, type and message
/// of each are decided here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent<'a> {
    /// A device asked to enrol; its signed request was created.
    EnrolmentRequested {
        /// The signed request (named after the device).
        request: InvolvedObject,
        /// The namespace the device asks to join.
        target_namespace: &'a str,
    },
    /// An enrolment request was approved (`by`: who, e.g. `automatic approval`).
    EnrolmentApproved {
        /// The signed request.
        request: InvolvedObject,
        /// Who approved it.
        by: &'a str,
    },
    /// An enrolment request was declined.
    EnrolmentDenied {
        /// The signed request.
        request: InvolvedObject,
        /// Who declined it.
        by: &'a str,
    },
    /// A device registered and received its first certificate.
    Registered {
        /// The device.
        device: InvolvedObject,
    },
    /// A registration was refused for a device the server has decided about
    /// (denied, registered, being deleted; see [`registration_refusal_is_recorded`]).
    RegistrationRefused {
        /// The signed request (registration certificate) or the device (its own
        /// certificate), named after the device.
        object: InvolvedObject,
        /// The refusal's reason code, as the device was told, e.g.
        /// `AlreadyRegistered`.
        code: &'a str,
        /// Why, as the device was told.
        why: &'a str,
    },
    /// A workload references a secret or config map that does not exist (its
    /// `ReferencesResolved` condition turned `False`).
    MissingReference {
        /// The workload.
        workload: InvolvedObject,
        /// The condition's message, naming each missing object (never a value).
        message: &'a str,
    },
    /// A device's configuration does not render (its `SpecValid` condition turned
    /// `False`, see [`new_render_problem`]).
    RenderFailed {
        /// The device.
        device: InvolvedObject,
        /// The render problem, as the condition says it.
        message: &'a str,
    },
    /// A registered device renewed its certificate.
    CertificateRenewed {
        /// The device.
        device: InvolvedObject,
    },
    /// A device being deleted was told to disconnect.
    Disconnected {
        /// The device.
        device: InvolvedObject,
    },
    /// A device was deleted through the API.
    Deleted {
        /// The device.
        device: InvolvedObject,
    },
    /// A workload change made a new revision and its rollout began.
    RolloutStarted {
        /// The workload.
        workload: InvolvedObject,
        /// The new revision.
        revision: &'a str,
    },
    /// A rollout released a batch: its devices are given the new revision.
    RolloutBatchReleased {
        /// The workload.
        workload: InvolvedObject,
        /// The revision rolled out.
        revision: &'a str,
        /// The batch's index, from 0.
        batch: u32,
    },
    /// A rollout paused (an operator, a failed batch, its deadline, or waiting
    /// for approval).
    RolloutPaused {
        /// The workload.
        workload: InvolvedObject,
        /// The revision rolled out.
        revision: &'a str,
        /// Why, as `status.rollout` says it.
        why: &'a str,
    },
    /// Every target device runs the revision.
    RolloutComplete {
        /// The workload.
        workload: InvolvedObject,
        /// The revision rolled out.
        revision: &'a str,
    },
}

impl ServerEvent<'_> {
    /// The event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ServerEvent::EnrolmentRequested { .. } => "EnrolmentRequested",
            ServerEvent::EnrolmentApproved { .. } => "EnrolmentApproved",
            ServerEvent::EnrolmentDenied { .. } => "EnrolmentDenied",
            ServerEvent::Registered { .. } => "Registered",
            ServerEvent::RegistrationRefused { .. } => "RegistrationRefused",
            ServerEvent::MissingReference { .. } => "MissingReference",
            ServerEvent::RenderFailed { .. } => "RenderFailed",
            ServerEvent::CertificateRenewed { .. } => "CertificateRenewed",
            ServerEvent::Disconnected { .. } => "Disconnected",
            ServerEvent::Deleted { .. } => "Deleted",
            ServerEvent::RolloutStarted { .. } => "RolloutStarted",
            ServerEvent::RolloutBatchReleased { .. } => "RolloutBatchReleased",
            ServerEvent::RolloutPaused { .. } => "RolloutPaused",
            ServerEvent::RolloutComplete { .. } => "RolloutComplete",
        }
    }

    /// What the server records.
    pub fn occurrence(&self) -> EventOccurrence {
        let (object, message, event_type) = match self {
            ServerEvent::EnrolmentRequested {
                request,
                target_namespace,
            } => (
                request,
                format!(
                    "device {} asked to enrol into namespace {target_namespace}",
                    request.name
                ),
                EventType::Normal,
            ),
            ServerEvent::EnrolmentApproved { request, by } => (
                request,
                format!("enrolment of device {} approved by {by}", request.name),
                EventType::Normal,
            ),
            ServerEvent::EnrolmentDenied { request, by } => (
                request,
                format!("enrolment of device {} declined by {by}", request.name),
                EventType::Warning,
            ),
            ServerEvent::Registered { device } => (
                device,
                "the device registered and received its certificate".to_owned(),
                EventType::Normal,
            ),
            ServerEvent::RegistrationRefused { object, code, why } => (
                object,
                format!(
                    "registration of device {} refused ({code}): {why}",
                    object.name
                ),
                EventType::Warning,
            ),
            ServerEvent::MissingReference { workload, message } => {
                (workload, (*message).to_owned(), EventType::Warning)
            }
            ServerEvent::RenderFailed { device, message } => {
                (device, (*message).to_owned(), EventType::Warning)
            }
            ServerEvent::CertificateRenewed { device } => (
                device,
                "the device renewed its certificate".to_owned(),
                EventType::Normal,
            ),
            ServerEvent::Disconnected { device } => (
                device,
                "the device is being deleted and was told to disconnect".to_owned(),
                EventType::Normal,
            ),
            ServerEvent::Deleted { device } => (
                device,
                "the device was deleted".to_owned(),
                EventType::Normal,
            ),
            ServerEvent::RolloutStarted { workload, revision } => (
                workload,
                format!("rollout of revision {revision} started"),
                EventType::Normal,
            ),
            ServerEvent::RolloutBatchReleased {
                workload,
                revision,
                batch,
            } => (
                workload,
                format!(
                    "batch {} released: its devices are given revision {revision}",
                    batch + 1
                ),
                EventType::Normal,
            ),
            ServerEvent::RolloutPaused {
                workload,
                revision,
                why,
            } => (
                workload,
                format!("rollout of revision {revision} paused: {why}"),
                EventType::Warning,
            ),
            ServerEvent::RolloutComplete { workload, revision } => (
                workload,
                format!("every target device runs revision {revision}"),
                EventType::Normal,
            ),
        };
        EventOccurrence::new(object.clone(), self.reason(), &message, event_type)
    }
}

/// Whether a refused registration of a device in state `record` is recorded as a
/// `RegistrationRefused` event: yes once an operator or the server has decided about
/// the device (denied, registered, being deleted), where a refusal means someone
/// asks for what they may not have; no while the device is unknown or waits for
/// approval, where the agent is simply told to ask again later (a 404 it polls).
pub const fn registration_refusal_is_recorded(record: DeviceRecord) -> bool {
    matches!(
        record,
        DeviceRecord::Denied | DeviceRecord::Registered | DeviceRecord::Deleted
    )
}

/// The render problem a device status change reveals: the message of `after`'s
/// `SpecValid=False` condition, unless `before` already said the same. A device
/// whose rendering keeps failing the same way is told once, not at every write.
pub fn new_render_problem<'a>(
    before: Option<&EdgeDeviceStatus>,
    after: &'a EdgeDeviceStatus,
) -> Option<&'a str> {
    let now = spec_invalid(after)?;
    let earlier = before.and_then(spec_invalid);
    if earlier.is_some_and(|e| e.reason == now.reason && e.message == now.message) {
        return None;
    }
    Some(now.message.as_str())
}

/// The `SpecValid=False` condition of `status`, if it has one.
fn spec_invalid(status: &EdgeDeviceStatus) -> Option<&Condition> {
    status
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == device_condition::SPEC_VALID && c.status == "False")
}

/// How many events are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    /// At most this many events in all; the least recently seen go first.
    pub max_events: usize,
    /// Events not seen again for this long go.
    pub max_age: Duration,
}

impl EventRetention {
    /// Default [`max_events`](Self::max_events): 10,000.
    pub const DEFAULT_MAX_EVENTS: usize = 10_000;
    /// Default [`max_age`](Self::max_age): one hour, as Kubernetes' `--event-ttl`.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

    /// The events of `events` (each with when it was last seen) that retention
    /// drops at `now`: those last seen more than `max_age` ago, then the least
    /// recently seen beyond `max_events`. Returned in `events`' order.
    pub fn expired<'a, K>(
        &self,
        events: &'a [(K, OffsetDateTime)],
        now: OffsetDateTime,
    ) -> Vec<&'a K> {
        let oldest_kept = now - self.max_age;
        let mut order: Vec<usize> = (0..events.len()).collect();
        // Most recent first; the index breaks ties so the result is deterministic.
        order.sort_by(|&a, &b| events[b].1.cmp(&events[a].1).then(a.cmp(&b)));
        let mut dropped = vec![false; events.len()];
        for (rank, &index) in order.iter().enumerate() {
            if rank >= self.max_events || events[index].1 < oldest_kept {
                dropped[index] = true;
            }
        }
        events
            .iter()
            .zip(dropped)
            .filter(|(_, dropped)| *dropped)
            .map(|((key, _), _)| key)
            .collect()
    }
}

impl Default for EventRetention {
    fn default() -> Self {
        Self {
            max_events: Self::DEFAULT_MAX_EVENTS,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }
}

/// When an event was last seen: `lastTimestamp`, else `firstTimestamp`, else its
/// creation; `None` when it carries none of them.
pub fn last_seen(event: &Value) -> Option<OffsetDateTime> {
    [
        "/lastTimestamp",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|pointer| event.pointer(pointer).and_then(Value::as_str))
    .and_then(crate::timestamp::parse_rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_recorded_once_the_device_is_decided() {
        for record in DeviceRecord::ALL {
            let expected = matches!(
                record,
                DeviceRecord::Denied | DeviceRecord::Registered | DeviceRecord::Deleted
            );
            assert_eq!(
                registration_refusal_is_recorded(record),
                expected,
                "{record:?}"
            );
        }
    }

    fn status_with_spec_valid(status: &str, reason: &str, message: &str) -> EdgeDeviceStatus {
        serde_json::from_value(serde_json::json!({"conditions": [
            {"type": "Online", "status": "True", "reason": "Heartbeat", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "SpecValid", "status": status, "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]}))
        .expect("status")
    }

    #[test]
    fn a_render_problem_is_new_once() {
        let valid = status_with_spec_valid("True", "Valid", "");
        let broken = status_with_spec_valid("False", "TemplateFailed", "label zone is missing");
        let other = status_with_spec_valid("False", "TemplateFailed", "label room is missing");
        assert_eq!(new_render_problem(None, &valid), None);
        assert_eq!(
            new_render_problem(None, &broken),
            Some("label zone is missing")
        );
        assert_eq!(
            new_render_problem(Some(&valid), &broken),
            Some("label zone is missing")
        );
        assert_eq!(new_render_problem(Some(&broken), &broken), None);
        assert_eq!(
            new_render_problem(Some(&broken), &other),
            Some("label room is missing")
        );
        assert_eq!(new_render_problem(Some(&broken), &valid), None);
        assert_eq!(
            new_render_problem(Some(&EdgeDeviceStatus::default()), &broken),
            Some("label zone is missing")
        );
    }

    fn info(reason: &str, message: &str, type_: &str) -> EventInfo {
        EventInfo {
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            ..Default::default()
        }
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).expect("valid time")
    }

    #[test]
    fn agent_types_map_to_kubernetes_types() {
        for (wire, expected) in [
            (Some("warn"), EventType::Warning),
            (Some("Warning"), EventType::Warning),
            (Some("info"), EventType::Normal),
            (Some("debug"), EventType::Normal),
            (None, EventType::Normal),
        ] {
            assert_eq!(EventType::from_agent(wire), expected, "{wire:?}");
        }
    }

    #[test]
    fn the_same_event_gets_the_same_name_and_others_do_not() {
        let a = EventOccurrence::from_device("ns", "dev-1", &info("ApplyFailed", "m", "warn"));
        let same = EventOccurrence::from_device("ns", "dev-1", &info("ApplyFailed", "m", "warn"));
        assert_eq!(a.object_name(), same.object_name());
        for other in [
            EventOccurrence::from_device("ns", "dev-1", &info("ApplyFailed", "m2", "warn")),
            EventOccurrence::from_device("ns", "dev-1", &info("ApplyFailed", "m", "info")),
            EventOccurrence::from_device("ns", "dev-1", &info("RolledBack", "m", "warn")),
            EventOccurrence::from_device("ns", "dev-2", &info("ApplyFailed", "m", "warn")),
            EventOccurrence::from_device("other", "dev-1", &info("ApplyFailed", "m", "warn")),
        ] {
            assert_ne!(a.object_name(), other.object_name(), "{other:?}");
        }
        let name = a.object_name();
        assert!(name.starts_with("dev-1."), "{name}");
        assert_eq!(name.len(), "dev-1.".len() + 16);
        crate::validation::dns1123_subdomain(&name).expect("a valid object name");
    }

    #[test]
    fn long_names_stay_valid_object_names() {
        // 253 characters in labels of 63: the longest name a device can have.
        let device = [
            &"a".repeat(63),
            &"b".repeat(63),
            &"c".repeat(63),
            &"d".repeat(61),
        ]
        .map(|s| s.as_str())
        .join(".");
        assert_eq!(device.len(), 253);
        let occurrence = EventOccurrence::from_device("ns", &device, &info("R", "m", "info"));
        let name = occurrence.object_name();
        assert!(name.len() <= 253, "{}", name.len());
        crate::validation::dns1123_subdomain(&name).expect("a valid object name");
    }

    #[test]
    fn repetitions_bump_count_and_last_timestamp() {
        let occurrence =
            EventOccurrence::from_device("ns", "dev-1", &info("ApplyFailed", "boom", "warn"));
        let first = occurrence.fold_into(None, at(0));
        assert_eq!(first.count, Some(1));
        assert_eq!(first.type_.as_deref(), Some("Warning"));
        assert_eq!(first.api_version, "v1");
        assert_eq!(first.kind, "Event");
        assert_eq!(first.involved_object.kind.as_deref(), Some("EdgeDevice"));
        assert_eq!(first.involved_object.name.as_deref(), Some("dev-1"));
        assert_eq!(first.involved_object.namespace.as_deref(), Some("ns"));
        assert_eq!(
            first.source.as_ref().and_then(|s| s.component.as_deref()),
            Some(AGENT_COMPONENT)
        );
        assert_eq!(first.metadata.namespace.as_deref(), Some("ns"));
        let again = occurrence.fold_times_into(Some(first.clone()), 3, at(10));
        assert_eq!(again.count, Some(4));
        assert_eq!(again.first_timestamp, first.first_timestamp);
        assert_ne!(again.last_timestamp, first.last_timestamp);
        let value = serde_json::to_value(&again).expect("serialises");
        assert_eq!(last_seen(&value), Some(at(10)));
    }

    #[test]
    fn a_heartbeat_folds_identical_events() {
        let reported = [
            info("Failed", "port in use", "warn"),
            info("Failed", "port in use", "warn"),
            info("Started", "ok", "info"),
            info("Failed", "port in use", "warn"),
        ];
        let folded = EventOccurrence::from_heartbeat("ns", "dev", &reported);
        let summary: Vec<_> = folded
            .iter()
            .map(|(o, n)| (o.reason.as_str(), *n))
            .collect();
        assert_eq!(summary, [("Failed", 3), ("Started", 1)]);
    }

    #[test]
    fn missing_and_oversized_fields_are_bounded() {
        let occurrence = EventOccurrence::from_device(
            "ns",
            "dev",
            &EventInfo {
                message: Some("x".repeat(5000)),
                ..Default::default()
            },
        );
        assert_eq!(occurrence.reason, "Unknown");
        assert_eq!(occurrence.message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(occurrence.message.ends_with("..."));
        assert_eq!(occurrence.event_type, EventType::Normal);
    }

    #[test]
    fn server_events_say_who_and_what() {
        let request = InvolvedObject::new(ResourceKind::EdgeDeviceSignedRequest, "req", "dev");
        let denied = ServerEvent::EnrolmentDenied {
            request,
            by: "token t1",
        }
        .occurrence();
        assert_eq!(denied.reason, "EnrolmentDenied");
        assert_eq!(denied.event_type, EventType::Warning);
        assert_eq!(denied.component, SERVER_COMPONENT);
        assert!(denied.message.contains("token t1"), "{}", denied.message);
        assert_eq!(denied.namespace(), "req");
    }

    #[test]
    fn retention_drops_the_old_then_the_least_recent() {
        let retention = EventRetention {
            max_events: 3,
            max_age: Duration::from_secs(100),
        };
        let events = [
            ("a", at(0)),
            ("b", at(150)),
            ("c", at(190)),
            ("d", at(180)),
            ("e", at(170)),
            ("f", at(195)),
        ];
        // At 200: "a" is older than 100 s; of the rest, the three most recent
        // (f, c, d) stay.
        let expired = retention.expired(&events, at(200));
        assert_eq!(expired, [&"a", &"b", &"e"]);
        let generous = EventRetention {
            max_events: 100,
            max_age: Duration::from_secs(1000),
        };
        assert!(generous.expired(&events, at(200)).is_empty());
    }
}
