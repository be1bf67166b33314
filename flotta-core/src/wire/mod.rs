//! Messages of Flotta's agent-facing Edge API, in its own wire shape (snake_case
//! keys and a few kebab-case ones such as `log-collection`, `ansible-manager`,
//! `data-transfer`), as `api/swagger.yaml` of Flotta defines them.
//!
//! These are separate types from [`crate::model`]'s camelCase resources, with
//! explicit conversions where both describe the same thing (see [`convert`]).
//! Like the model, every message struct keeps unknown fields in `extra` so a round
//! trip loses nothing; absent optional fields stay absent. Times are kept as the
//! sender wrote them (`String`), because agents send local offsets such as
//! `+02:00` that a round trip must not rewrite.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::UnknownFields;

mod config;
pub mod convert;
mod hardware;
mod heartbeat;

pub use config::*;
pub use convert::ConversionError;
pub use hardware::*;
pub use heartbeat::*;

/// Version of the message envelope; Flotta only knows 1.
pub const MESSAGE_VERSION: i64 = 1;

/// Directive names used in the envelope's `directive`.
pub mod directive {
    /// A device asks to enrol (`POST /data/{id}/out`).
    pub const ENROLMENT: &str = "enrolment";
    /// A device registers its CSR (`POST /data/{id}/out`).
    pub const REGISTRATION: &str = "registration";
    /// A device reports its state (`POST /data/{id}/out`).
    pub const HEARTBEAT: &str = "heartbeat";
    /// A device asks for the playbook executions it should run
    /// (`POST /data/{id}/out`; the answer's `content` is a JSON text of a list of
    /// [`PlaybookExecution`](super::PlaybookExecution)s).
    pub const ANSIBLE: &str = "ansible";
    /// The server sends a device its configuration (`GET /data/{id}/in`).
    pub const DEVICE: &str = "device";
    /// The server tells a deleted device to remove itself (`GET /control/{id}/in`).
    pub const DISCONNECT: &str = "disconnect";
    /// flotta-rs addition: the server tells a device to renew its certificate now
    /// (`GET /control/{id}/in`), during a CA rotation.
    pub const RENEW_CERTIFICATE: &str = "renew-certificate";
}

/// Header carrying a refusal's machine-readable reason where the answer has no body
/// (`GET /data/{id}/in`, whose error bodies Flotta's agent would read as messages).
pub const REASON_HEADER: &str = "flotta-reason";
/// Header carrying a refusal's message, printable ASCII, beside [`REASON_HEADER`].
pub const MESSAGE_HEADER: &str = "flotta-message";

/// Failure to read a message's content as the type its directive calls for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message carries no `content`.
    #[error("message has no content")]
    MissingContent,
    /// The content does not have the expected shape.
    #[error("message content at {path}: {source}")]
    InvalidContent {
        /// Path of the offending field inside `content`, e.g. `hardware.cpu.count`.
        path: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
}

/// Kind of an envelope (`type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MessageType {
    /// Connection status.
    ConnectionStatus,
    /// Command.
    Command,
    /// Event.
    Event,
    /// Data (every directive flotta uses).
    Data,
}

/// The envelope of every Edge API message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    /// Kind of message.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<MessageType>,
    /// Unique id of this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Id of the message this one answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_to: Option<String>,
    /// Envelope version ([`MESSAGE_VERSION`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// When the sender sent it (RFC 3339, as written by the sender).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    /// What the content is, e.g. [`directive::HEARTBEAT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directive: Option<String>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// The payload; its type depends on `directive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl Message {
    /// A `data` message with the given directive and content, version 1.
    pub fn data(
        message_id: impl Into<String>,
        directive: impl Into<String>,
        content: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            type_: Some(MessageType::Data),
            message_id: Some(message_id.into()),
            response_to: None,
            version: Some(MESSAGE_VERSION),
            sent: None,
            directive: Some(directive.into()),
            metadata: None,
            content: Some(serde_json::to_value(content)?),
            extra: UnknownFields::new(),
        })
    }

    /// The `disconnect` command (directive and `content.command` `disconnect`, no
    /// arguments), which tells a device that no longer exists to remove itself.
    pub fn disconnect(message_id: impl Into<String>) -> Self {
        Self::command(directive::DISCONNECT, message_id)
    }

    /// The `renew-certificate` command: renew the device certificate now, the
    /// same way as when renewal falls due.
    pub fn renew_certificate(message_id: impl Into<String>) -> Self {
        Self::command(directive::RENEW_CERTIFICATE, message_id)
    }

    /// A control command without arguments: directive and `content.command` both
    /// `command`.
    fn command(command: &str, message_id: impl Into<String>) -> Self {
        Self {
            type_: Some(MessageType::Command),
            message_id: Some(message_id.into()),
            response_to: None,
            version: Some(MESSAGE_VERSION),
            sent: None,
            directive: Some(command.to_owned()),
            metadata: None,
            content: Some(serde_json::json!({
                "command": command,
                "arguments": {},
            })),
            extra: UnknownFields::new(),
        }
    }

    /// The content read as `T` (e.g. [`Heartbeat`] for a heartbeat directive).
    pub fn content_as<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        let content = self.content.as_ref().ok_or(WireError::MissingContent)?;
        serde_path_to_error::deserialize(content).map_err(|e| WireError::InvalidContent {
            path: e.path().to_string(),
            source: e.into_inner(),
        })
    }
}

/// The server's answer to a posted message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageResponse {
    /// Id of the message answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Directive of the message answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directive: Option<String>,
    /// The payload, e.g. a [`RegistrationResponse`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl MessageResponse {
    /// Reads the content as `T` (e.g. [`RegistrationResponse`]), naming the field
    /// path on failure.
    pub fn content_as<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        let content = self.content.as_ref().ok_or(WireError::MissingContent)?;
        serde_path_to_error::deserialize(content).map_err(|e| WireError::InvalidContent {
            path: e.path().to_string(),
            source: e.into_inner(),
        })
    }
}

/// Content of an `enrolment` message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnrolmentInfo {
    /// What the device reports about itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<EnrolmentInfoFeatures>,
    /// Namespace the device asks to land in (server default: `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Labels the device asks for (a flotta-rs extension, as in Flight Control's
    /// enrolment requests; Flotta's agent omits it). The server keeps them in the
    /// signed request, where an approver may edit them, and gives them to the device
    /// it creates at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Features part of [`EnrolmentInfo`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnrolmentInfoFeatures {
    /// Model name from the OS (camelCase on the wire too, as Flotta has it).
    #[serde(rename = "modelName", skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Hardware inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareInfo>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Content of a `registration` message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegistrationInfo {
    /// Hardware inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareInfo>,
    /// PEM certificate signing request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_request: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Content of the answer to a `registration` message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegistrationResponse {
    /// PEM client certificate for later calls, followed by the intermediate CA
    /// certificates between it and the root, if any (the device sends them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// flotta-rs addition: the CA certificates (PEM) the device should trust for the
    /// server from now on, so that devices move with a CA rotation. Flotta's agent
    /// ignores it.
    #[serde(rename = "caBundle", skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}
