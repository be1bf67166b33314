//! Reading request messages and writing replies with [`flotta_core::wire`]'s types,
//! with error texts that say which field is wrong.

use flotta_core::model::Hardware;
use flotta_core::strict_json;
use flotta_core::wire::{self, HardwareInfo, Message, MessageResponse, MessageType, WireError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;

/// Why a request body is not a usable message. The text is sent back with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct BadMessage(pub String);

/// Parses a request body as a message envelope.
pub(super) fn parse_envelope(body: &[u8]) -> Result<Message, BadMessage> {
    // Duplicate keys, deep nesting and out-of-range numbers are refused before the
    // typed parse, which would otherwise pick one of two equal keys silently.
    strict_json::check(body).map_err(|e| BadMessage(e.to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let message: Message = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            BadMessage(format!("malformed JSON: {inner}"))
        } else if path == "." {
            BadMessage(format!("the message is not a message envelope: {inner}"))
        } else {
            BadMessage(format!("{path}: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| BadMessage(format!("malformed JSON: {e}")))?;
    Ok(message)
}

/// The content of `message` as `T`; an absent or `null` content is `T::default()`.
pub(super) fn content<T: DeserializeOwned + Default>(message: &Message) -> Result<T, BadMessage> {
    match &message.content {
        None | Some(Value::Null) => Ok(T::default()),
        Some(_) => message.content_as::<T>().map_err(|e| match e {
            WireError::InvalidContent { path, source } => {
                BadMessage(format!("content.{path}: {source}"))
            }
            other => BadMessage(format!("content: {other}")),
        }),
    }
}

/// Converts a reported hardware inventory into the resource shape.
pub(super) fn hardware(info: HardwareInfo, path: &str) -> Result<Hardware, BadMessage> {
    Hardware::try_from(info).map_err(|e| BadMessage(format!("{path}.{e}")))
}

/// A message from the server (`GET .../in` answers).
pub(super) fn reply(message_type: MessageType, directive: &str, content: Value) -> Message {
    Message {
        type_: Some(message_type),
        message_id: Some(uuid::Uuid::new_v4().hyphenated().to_string()),
        response_to: None,
        version: Some(wire::MESSAGE_VERSION),
        sent: Some(flotta_core::timestamp::rfc3339(OffsetDateTime::now_utc())),
        directive: Some(directive.to_owned()),
        metadata: None,
        content: (!content.is_null()).then_some(content),
        extra: Default::default(),
    }
}

/// The answer to a posted message.
pub(super) fn response(request: &Message, content: Value) -> MessageResponse {
    MessageResponse {
        message_id: request.message_id.clone(),
        directive: request.directive.clone(),
        content: (!content.is_null()).then_some(content),
        metadata: None,
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_errors_name_the_problem() {
        assert!(parse_envelope(b"{").is_err_and(|e| e.0.starts_with("malformed JSON")));
        assert!(parse_envelope(b"{} x").is_err_and(|e| e.0.starts_with("malformed JSON")));
        assert!(
            parse_envelope(br#"{"directive": 3}"#).is_err_and(|e| e.0.starts_with("directive:"))
        );
        assert!(parse_envelope(b"[]").is_err());
        assert!(
            parse_envelope(br#"{"directive": "heartbeat", "directive": "enrolment"}"#)
                .is_err_and(|e| e.0.contains("duplicate key \"directive\""))
        );
        let ok = parse_envelope(
            br#"{"directive": "heartbeat", "message_id": "m", "content": {"status": "up"}}"#,
        )
        .expect("valid");
        assert_eq!(ok.directive.as_deref(), Some("heartbeat"));
        let heartbeat: wire::Heartbeat = content(&ok).expect("heartbeat");
        assert_eq!(heartbeat.status.as_deref(), Some("up"));
    }

    #[test]
    fn content_errors_carry_the_field_path() {
        let message = parse_envelope(br#"{"content": {"workloads": "x"}}"#).expect("envelope");
        let error = content::<wire::Heartbeat>(&message).expect_err("bad workloads");
        assert!(error.0.starts_with("content.workloads"), "{}", error.0);
        let empty = parse_envelope(br#"{"content": null}"#).expect("envelope");
        assert_eq!(
            content::<wire::Heartbeat>(&empty).ok(),
            Some(wire::Heartbeat::default())
        );
    }
}
