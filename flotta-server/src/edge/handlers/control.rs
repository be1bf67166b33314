//! The control channel: the effect is serving the pending command (none yet, or
//! `disconnect` for a device that no longer exists) and accepting the device's
//! replies.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use flotta_core::enrolment::{ControlCommand, Directive, Effect, Failure};
use flotta_core::events::{InvolvedObject, ServerEvent};
use flotta_core::pki::PeerIdentity;
use flotta_core::wire::Message;
use serde_json::Value;
use time::OffsetDateTime;

use super::{
    ApiError, ApiResult, Authorised, Peer, device_record, empty_response, get_object, json_response,
};
use crate::edge::EdgeState;
use crate::edge::message;
use crate::store::ResourceKind;

/// The namespace of an authorised device caller.
fn device_namespace(who: &Authorised) -> Result<&str, ApiError> {
    match &who.identity {
        PeerIdentity::Device { namespace, .. } => Ok(namespace),
        _ => Err(ApiError::failed(
            Failure::Internal,
            "a control call was authorised without a device certificate",
        )),
    }
}

/// `GET /control/{device_id}/in`: the pending command.
pub(super) async fn get_control(
    State(state): State<EdgeState>,
    Path(device_id): Path<String>,
    Peer(peer): Peer,
) -> ApiResult {
    let who = state.authorise(&peer, Some(Directive::Control), &device_id, None)?;
    let namespace = device_namespace(&who)?;
    let device = get_object(&state, ResourceKind::EdgeDevice, namespace, &device_id).await?;
    let decision = who.answer(&state, Directive::Control, device_record(device.as_ref()))?;
    if decision.effect == Effect::Disconnect {
        state
            .events()
            .spawn_server_event(ServerEvent::Disconnected {
                device: InvolvedObject::new(
                    ResourceKind::EdgeDevice,
                    namespace,
                    device_id.as_str(),
                ),
            });
    }
    let command_id = || uuid::Uuid::new_v4().hyphenated().to_string();
    let sent = Some(flotta_core::timestamp::rfc3339(OffsetDateTime::now_utc()));
    let reply = match (decision.effect, who.command) {
        (Effect::Disconnect, _) => Message {
            sent,
            ..Message::disconnect(command_id())
        },
        (Effect::ServeControl, Some(ControlCommand::RenewCertificate)) => Message {
            sent,
            ..Message::renew_certificate(command_id())
        },
        // Nothing to do: an empty 200, as Flotta answers (yggdrasil cannot parse
        // a command message without content).
        _ => return Ok(empty_response(decision.status)),
    };
    Ok(json_response(decision.status, &reply))
}

/// `POST /control/{device_id}/out`: the device's reply to a command.
pub(super) async fn post_control(
    State(state): State<EdgeState>,
    Path(device_id): Path<String>,
    Peer(peer): Peer,
    body: Bytes,
) -> ApiResult {
    let who = state.authorise(&peer, Some(Directive::ControlReply), &device_id, None)?;
    let namespace = device_namespace(&who)?;
    let envelope = message::parse_envelope(&body)?;
    let device = get_object(&state, ResourceKind::EdgeDevice, namespace, &device_id).await?;
    let decision = who.answer(
        &state,
        Directive::ControlReply,
        device_record(device.as_ref()),
    )?;
    Ok(control_reply(decision.status, &envelope))
}

fn control_reply(status: flotta_core::enrolment::EdgeStatus, envelope: &Message) -> Response {
    json_response(status, &message::response(envelope, Value::Null))
}
