//! `Event` (Kubernetes core `v1`): something that happened to an object, as the
//! server records it. Device events (a failed apply, a rollback, dropped events)
//! and the server's own (an enrolment approved, a device registered) are both
//! stored in this shape, so kubectl and every Kubernetes tool read them as they
//! read a cluster's events. [`crate::events`] decides how they are built,
//! deduplicated and retained.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::api::core::v1::{EventSource, ObjectReference};

use super::{ObjectMeta, Resource, Time, UnknownFields};
use crate::kind::ResourceKind;

/// A Kubernetes `v1` `Event`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Always `v1`.
    pub api_version: String,
    /// Always `Event`.
    pub kind: String,
    /// Object metadata; the name is derived from what the event says, so that a
    /// repetition finds the same object (see [`crate::events::EventOccurrence::object_name`]).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The object the event is about.
    #[serde(default)]
    pub involved_object: ObjectReference,
    /// A short, CamelCase reason, e.g. `ApplyFailed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Normal` or `Warning` (see [`crate::events::EventType`]).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// How many times it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// When it first happened (server time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<Time>,
    /// When it last happened (server time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<Time>,
    /// Who reported it: `flotta-server`, or `flotta-agent` with the device as host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
    /// The reporting component, as `source.component` (newer Kubernetes field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting_component: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl Resource for Event {
    const RESOURCE_KIND: ResourceKind = ResourceKind::Event;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
