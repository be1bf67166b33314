//! The Edge API routes and their handlers.
//!
//! Every handler follows the same steps: authenticate the client certificate for
//! the directive, let [`flotta_core::enrolment::authorise`] refuse what the peer may
//! not ask, read what the store knows about the device, let
//! [`flotta_core::enrolment::answer`] pick the status and the effect, and carry the
//! effect out. No status code is chosen here: refusals come from core's
//! [`Decision`], failures while carrying out an effect from [`Failure::status`].
//!
//! One room per effect: [`enrolment`] (create the signed request),
//! [`registration`] (sign the CSR, create or update the device), [`heartbeat`]
//! (record status and last-seen), [`playbooks`] (the `ansible` directive), [`config`] (serve the configuration with ETags and
//! long-poll) and [`control`] (the control channel).

mod config;
mod control;
mod enrolment;
mod hardware_labels;
mod heartbeat;
mod playbooks;
mod registration;

pub(crate) use enrolment::enrolment_decision;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotta_core::enrolment::{
    Approval, Caller, Decision, DeviceRecord, Directive, EdgeStatus, Failure,
    authenticate_verified, authorise,
};
use flotta_core::pki::{IdentityError, PeerIdentity};
use flotta_core::wire::Message;
use serde_json::json;
use time::OffsetDateTime;

use super::message::{self, BadMessage};
use super::{BASE_PATH, EdgeState, MAX_BODY_BYTES, PeerCertificates};
use crate::store::{ResourceKind, StoreError, StoredObject};

/// The Edge API router over `state`. Serve it with [`serve`](super::serve) so that
/// requests carry the client's certificate chain; without it every request is
/// treated as carrying no certificate.
pub fn router(state: EdgeState) -> Router {
    Router::new()
        .route(
            &format!("{BASE_PATH}/data/{{device_id}}/out"),
            post(post_data),
        )
        .route(
            &format!("{BASE_PATH}/data/{{device_id}}/in"),
            get(config::get_data),
        )
        .route(
            &format!("{BASE_PATH}/control/{{device_id}}/in"),
            get(control::get_control),
        )
        .route(
            &format!("{BASE_PATH}/control/{{device_id}}/out"),
            post(control::post_control),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An error answer: a status from core and a JSON body with core's machine-readable
/// reason and a message.
#[derive(Debug)]
struct ApiError {
    status: EdgeStatus,
    reason: &'static str,
    message: String,
}

impl ApiError {
    /// A failure while carrying out an effect.
    fn failed(failure: Failure, message: impl Into<String>) -> Self {
        Self {
            status: failure.status(),
            reason: failure.as_str(),
            message: message.into(),
        }
    }

    /// Core's refusal, with its reason in words.
    fn refused(
        decision: Decision,
        peer: Result<&PeerIdentity, &IdentityError>,
        device_id: &str,
    ) -> Self {
        Self {
            status: decision.status,
            reason: decision.reason.as_str(),
            message: decision.message(peer, device_id),
        }
    }

    fn store(operation: &str, error: &StoreError) -> Self {
        Self::failed(
            Failure::Internal,
            format!("storage failed during {operation}: {error}"),
        )
    }

    /// The heartbeat's time could not be committed: 503 when trying again may work,
    /// so the device resends the heartbeat, 500 otherwise.
    fn last_seen(namespace: &str, device_id: &str, error: &StoreError) -> Self {
        let (failure, advice) = if error.is_retryable() {
            (Failure::Busy, "retry the heartbeat")
        } else {
            (Failure::Internal, "heartbeat not recorded")
        };
        Self::failed(
            failure,
            format!(
                "last-seen time of device {namespace}/{device_id} was not stored ({advice}): {}",
                crate::api::error_chain(error)
            ),
        )
    }

    fn no_such_device(namespace: &str, device_id: &str) -> Self {
        Self::failed(
            Failure::DeviceGone,
            format!("device {namespace}/{device_id} does not exist"),
        )
    }
}

impl ApiError {
    /// The answer without a body, the reason and message in headers: for
    /// `GET /data/{id}/in`, where Flotta's agent reads any body as a message, and
    /// Flotta's own refusals have none.
    fn without_body(self) -> Response {
        let mut response = http_status(self.status).into_response();
        let message: String = self
            .message
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(MAX_HEADER_MESSAGE)
            .collect();
        let headers = response.headers_mut();
        if let Ok(reason) = axum::http::HeaderValue::from_str(self.reason) {
            headers.insert(flotta_core::wire::REASON_HEADER, reason);
        }
        if let Ok(message) = axum::http::HeaderValue::from_str(&message) {
            headers.insert(flotta_core::wire::MESSAGE_HEADER, message);
        }
        response
    }
}

/// Longest message carried in a header by [`ApiError::without_body`].
const MAX_HEADER_MESSAGE: usize = 512;

impl From<BadMessage> for ApiError {
    fn from(error: BadMessage) -> Self {
        Self::failed(Failure::BadContent, error.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status.code();
        let body = json!({"code": code, "reason": self.reason, "message": self.message});
        (http_status(self.status), axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The HTTP status of core's [`EdgeStatus`].
fn http_status(status: EdgeStatus) -> StatusCode {
    StatusCode::from_u16(status.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn json_response(status: EdgeStatus, body: &impl serde::Serialize) -> Response {
    (http_status(status), axum::Json(body)).into_response()
}

/// An answer with no body (Flotta's idle control answer).
fn empty_response(status: EdgeStatus) -> Response {
    http_status(status).into_response()
}

/// The client certificate chain of the request's connection.
struct Peer(PeerCertificates);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<PeerCertificates>()
                .cloned()
                .unwrap_or_default(),
        ))
    }
}

/// Who a request comes from, as far as authentication and authorisation went.
struct Authorised {
    /// Whom the certificate names, as [`authenticate_verified`] found.
    identity: PeerIdentity,
    /// Whether the certificate is revoked (core let it on to learn whether its
    /// device still exists: [`Caller::Revoked`]).
    revoked: bool,
    /// The path's device id.
    device_id: String,
    /// What core has pending for this peer on the control channel.
    command: Option<flotta_core::enrolment::ControlCommand>,
}

impl Authorised {
    /// The caller as core's [`authorise`] sees it (it was authorised already).
    fn caller(&self, directive: Directive) -> Caller<'_> {
        match &self.identity {
            PeerIdentity::Device { namespace, .. } if self.revoked => Caller::Revoked {
                directive,
                namespace,
            },
            PeerIdentity::Device { namespace, .. } => Caller::Device {
                directive,
                namespace,
            },
            _ => Caller::Register { directive },
        }
    }

    /// The answer to this caller for `record`, as core decides: the decision when
    /// it allows, its refusal otherwise.
    fn answer(
        &self,
        state: &EdgeState,
        directive: Directive,
        record: DeviceRecord,
    ) -> Result<Decision, ApiError> {
        let decision =
            flotta_core::enrolment::answer(self.caller(directive), record, state.approval());
        if decision.status.is_error() {
            Err(ApiError::refused(
                decision,
                Ok(&self.identity),
                &self.device_id,
            ))
        } else {
            Ok(decision)
        }
    }
}

impl EdgeState {
    fn approval(&self) -> Approval {
        if self.options().auto_approve {
            Approval::Automatic
        } else {
            Approval::Manual
        }
    }

    /// Authenticates and authorises a request for `directive` on `device_id`: the
    /// refusal (401, 403, 400) comes from core, with its reason; `bad` is why the
    /// directive is unknown, when the message said so.
    fn authorise(
        &self,
        peer: &PeerCertificates,
        directive: Option<Directive>,
        device_id: &str,
        bad: Option<BadMessage>,
    ) -> Result<Authorised, ApiError> {
        let mut command = None;
        let identity = peer.verified(&self.inner.verifier).and_then(|verified| {
            let revoked = self.revocation_snapshot();
            command = flotta_core::enrolment::pending_command(&verified);
            authenticate_verified(&verified, &revoked, OffsetDateTime::now_utc(), directive)
        });
        if let Err(decision) = authorise(identity.as_ref(), directive, device_id) {
            return Err(match bad {
                // The directive is unknown because the message is bad: say what.
                Some(bad) if decision.status == EdgeStatus::BadRequest => bad.into(),
                _ => ApiError::refused(decision, identity.as_ref(), device_id),
            });
        }
        // `authorise` refuses every failed authentication but a revoked
        // certificate of the path's device, so this is an identity.
        let (identity, revoked) = match identity {
            Ok(identity) => (identity, false),
            Err(IdentityError::Revoked { identity, .. }) => (identity, true),
            Err(error) => return Err(ApiError::failed(Failure::Internal, error.to_string())),
        };
        Ok(Authorised {
            identity,
            revoked,
            device_id: device_id.to_owned(),
            command: command.filter(|_| !revoked),
        })
    }
}

/// `POST /data/{device_id}/out`: enrolment, registration and heartbeats.
async fn post_data(
    State(state): State<EdgeState>,
    Path(device_id): Path<String>,
    Peer(peer): Peer,
    body: Bytes,
) -> ApiResult {
    // A chain the fleet CA did not sign is refused before the body is read.
    if let Err(error) = peer.verified(&state.inner.verifier) {
        let decision = flotta_core::enrolment::decide(
            Err(&error),
            None,
            &device_id,
            DeviceRecord::Unknown,
            state.approval(),
        );
        return Err(ApiError::refused(decision, Err(&error), &device_id));
    }
    let (directive, envelope) = match message::parse_envelope(&body) {
        Ok(envelope) => match envelope.directive.as_deref() {
            None => (None, Err(BadMessage("directive: missing".into()))),
            Some(name) => match Directive::posted(name) {
                Some(directive) => (Some(directive), Ok(envelope)),
                None => (
                    None,
                    Err(BadMessage(format!(
                        "directive: {name:?} is not one of enrolment, registration, heartbeat, ansible"
                    ))),
                ),
            },
        },
        Err(bad) => (None, Err(bad)),
    };
    let who = state.authorise(
        &peer,
        directive,
        &device_id,
        envelope.as_ref().err().cloned(),
    )?;
    // Authorised with a directive, so the envelope was read.
    let (Some(directive), Ok(envelope)) = (directive, envelope) else {
        return Err(BadMessage("directive: missing".into()).into());
    };
    match directive {
        Directive::Enrolment => enrolment::enrol(&state, &who, &envelope).await,
        Directive::Registration => registration::register(&state, &who, &envelope).await,
        Directive::Ansible => playbooks::serve(&state, &who, &envelope).await,
        _ => heartbeat::record(&state, &who, &envelope).await,
    }
}

/// The answer to a posted message, with `status`.
fn posted_reply(status: EdgeStatus, request: &Message, content: serde_json::Value) -> Response {
    json_response(status, &message::response(request, content))
}

async fn get_object(
    state: &EdgeState,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
) -> Result<Option<StoredObject>, ApiError> {
    state
        .store()
        .get(kind, namespace, name)
        .await
        .map_err(|e| ApiError::store("get", &e))
}

/// What a stored `EdgeDevice` (or its absence) says about the device.
fn device_record(device: Option<&StoredObject>) -> DeviceRecord {
    match device {
        None => DeviceRecord::Unknown,
        Some(device) if device.deletion_timestamp.is_some() => DeviceRecord::Deleted,
        Some(_) => DeviceRecord::Registered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstored_last_seen_asks_for_a_retry_only_when_it_may_work() {
        let transient = StoreError::backend("record_last_seen", true, "database is locked");
        let answer = ApiError::last_seen("ns", "dev", &transient);
        assert_eq!(answer.status, EdgeStatus::Unavailable);
        assert!(answer.message.contains("ns/dev"), "{}", answer.message);
        assert!(answer.message.contains("retry"), "{}", answer.message);
        let permanent = StoreError::backend("record_last_seen", false, "recorder stopped");
        let answer = ApiError::last_seen("ns", "dev", &permanent);
        assert_eq!(answer.status, EdgeStatus::InternalError);
        assert!(
            answer.message.contains("recorder stopped"),
            "{}",
            answer.message
        );
    }

    #[test]
    fn every_core_status_is_an_http_status() {
        for status in [
            EdgeStatus::Ok,
            EdgeStatus::AlreadyReported,
            EdgeStatus::NotModified,
            EdgeStatus::BadRequest,
            EdgeStatus::Unauthorized,
            EdgeStatus::Forbidden,
            EdgeStatus::NotFound,
            EdgeStatus::RequestTimeout,
            EdgeStatus::PayloadTooLarge,
            EdgeStatus::InternalError,
            EdgeStatus::Unavailable,
        ] {
            assert_eq!(http_status(status).as_u16(), status.code());
        }
    }
}
