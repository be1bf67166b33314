//! The enrolment and registration protocol, as pure decisions.
//!
//! Two halves, one per side of the wire:
//!
//! - [`EnrolmentMachine`], the agent's side: enrol with the fleet-wide registration
//!   certificate, wait for approval, register a CSR, run, renew. It takes responses
//!   (status and body) and the time, and says which request to send next and when.
//!   Retries back off exponentially with jitter drawn from a caller-supplied random
//!   number, capped.
//! - [`decide`], the server's side: from who the peer is, the directive, the device in
//!   the path and the device's record, the status code to answer and the effect to
//!   carry out.
//!
//! | peer | directive | record | answer |
//! |---|---|---|---|
//! | any, certificate refused | any | any | 401 |
//! | any | unknown or malformed | any | 400 |
//! | registration certificate | `enrolment` | unknown, deleted | 200, create signed request |
//! | registration certificate | `enrolment` | pending | 200 |
//! | registration certificate | `enrolment` | approved | 208 |
//! | registration certificate | `registration` | approved | 200, sign CSR |
//! | registration certificate | `registration` | other | 404 |
//! | registration certificate | anything else | any | 403 |
//! | device certificate, CN ≠ path device | any | any | 403 |
//! | device certificate | `enrolment` | approved / pending / other | 208 / 200 / 404 |
//! | device certificate | `registration` | approved | 200, sign CSR |
//! | device certificate | `heartbeat` | approved | 200, record heartbeat |
//! | device certificate | `device`, control | approved | 200 |
//! | device certificate | any but `enrolment` | not approved | 404 |
//!
//! An expired device certificate reaches this table only for `registration`: the
//! caller authenticates with [`authenticate`], which picks the
//! [`Purpose`] from the directive.

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::pki::{
    CertificateError, IdentityError, PeerCertificate, PeerIdentity, PeerVerifier, Purpose,
    RenewalAction, RenewalPolicy, RevocationList,
};

/// What an Edge API call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Directive {
    /// `POST /data/{id}/out`, directive `enrolment`: ask to join the fleet.
    Enrolment,
    /// `POST /data/{id}/out`, directive `registration`: send a CSR, get a certificate.
    Registration,
    /// `POST /data/{id}/out`, directive `heartbeat`.
    Heartbeat,
    /// `GET /data/{id}/in`, directive `device`: fetch the configuration.
    Device,
    /// `GET|POST /control/{id}/in|out`.
    Control,
}

impl Directive {
    /// The directive as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolment => "enrolment",
            Self::Registration => "registration",
            Self::Heartbeat => "heartbeat",
            Self::Device => "device",
            Self::Control => "control",
        }
    }

    /// Reads a wire directive; `None` for one we do not serve.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "enrolment" => Self::Enrolment,
            "registration" => Self::Registration,
            "heartbeat" => Self::Heartbeat,
            "device" => Self::Device,
            "control" => Self::Control,
            _ => return None,
        })
    }

    /// What the client certificate is used for with this directive: only
    /// `registration` forgives an expired device certificate.
    pub fn purpose(self) -> Purpose {
        match self {
            Self::Registration => Purpose::Registration,
            _ => Purpose::Request,
        }
    }
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------

/// What the server knows about the device named in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceRecord {
    /// No such device and no signed request.
    Unknown,
    /// A signed request exists and is not approved yet.
    Pending,
    /// The device is approved (an `EdgeDevice` exists).
    Approved,
    /// The device was deleted.
    Deleted,
}

/// The status codes of the Edge API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EdgeStatus {
    /// 200.
    Ok,
    /// 208: enrolment of an already approved device.
    AlreadyReported,
    /// 400: bad input.
    BadRequest,
    /// 401: bad, expired, revoked or unknown certificate.
    Unauthorized,
    /// 403: the certificate may not act on this device or directive.
    Forbidden,
    /// 404: unknown or unapproved device.
    NotFound,
}

impl EdgeStatus {
    /// The numeric HTTP status.
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::AlreadyReported => 208,
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
        }
    }
}

/// What the server does besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Create an `EdgeDeviceSignedRequest` for the device (enrolment).
    CreateSignedRequest,
    /// Verify the CSR in the body and sign it (registration or renewal).
    SignCsr,
    /// Record the heartbeat and stamp last-seen.
    RecordHeartbeat,
    /// Nothing beyond the answer (which may carry data, e.g. the configuration).
    None,
}

/// The server's answer to one Edge API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Status to answer with.
    pub status: EdgeStatus,
    /// What to do.
    pub effect: Effect,
}

impl Decision {
    const fn answer(status: EdgeStatus) -> Self {
        Self {
            status,
            effect: Effect::None,
        }
    }

    /// The answer when [`Effect::SignCsr`] finds the CSR refused by the policy.
    pub const CSR_REFUSED: Self = Self::answer(EdgeStatus::BadRequest);
}

/// Authenticates the peer for `directive`: expired device certificates pass for
/// `registration` only.
pub fn authenticate<C: AsRef<[u8]>>(
    verifier: &PeerVerifier,
    chain: &[C],
    revoked: &RevocationList,
    now: OffsetDateTime,
    directive: Directive,
) -> Result<PeerIdentity, IdentityError> {
    verifier.identify(chain, revoked, now, directive.purpose())
}

/// Decides the answer to an Edge API call.
///
/// `peer` is the outcome of [`authenticate`]; `directive` is `None` when the request
/// names a directive we do not serve or its envelope is malformed; `path_device_id`
/// is the `{device_id}` of the URL; `record` is what the store says about that device.
pub fn decide(
    peer: Result<&PeerIdentity, &IdentityError>,
    directive: Option<Directive>,
    path_device_id: &str,
    record: DeviceRecord,
) -> Decision {
    let Ok(peer) = peer else {
        return Decision::answer(EdgeStatus::Unauthorized);
    };
    let Some(directive) = directive else {
        return Decision::answer(EdgeStatus::BadRequest);
    };
    if crate::pki::dns_subdomain_problem(path_device_id).is_some() {
        return Decision::answer(EdgeStatus::BadRequest);
    }
    match peer {
        PeerIdentity::Register => match (directive, record) {
            (Directive::Enrolment, DeviceRecord::Unknown | DeviceRecord::Deleted) => Decision {
                status: EdgeStatus::Ok,
                effect: Effect::CreateSignedRequest,
            },
            (Directive::Enrolment, DeviceRecord::Pending) => Decision::answer(EdgeStatus::Ok),
            (Directive::Enrolment, DeviceRecord::Approved) => {
                Decision::answer(EdgeStatus::AlreadyReported)
            }
            (Directive::Registration, DeviceRecord::Approved) => Decision {
                status: EdgeStatus::Ok,
                effect: Effect::SignCsr,
            },
            (Directive::Registration, _) => Decision::answer(EdgeStatus::NotFound),
            _ => Decision::answer(EdgeStatus::Forbidden),
        },
        PeerIdentity::Device { id, .. } if id != path_device_id => {
            Decision::answer(EdgeStatus::Forbidden)
        }
        PeerIdentity::Device { .. } => match (directive, record) {
            (Directive::Enrolment, DeviceRecord::Approved) => {
                Decision::answer(EdgeStatus::AlreadyReported)
            }
            (Directive::Enrolment, DeviceRecord::Pending) => Decision::answer(EdgeStatus::Ok),
            (_, DeviceRecord::Unknown | DeviceRecord::Pending | DeviceRecord::Deleted) => {
                Decision::answer(EdgeStatus::NotFound)
            }
            (Directive::Registration, DeviceRecord::Approved) => Decision {
                status: EdgeStatus::Ok,
                effect: Effect::SignCsr,
            },
            (Directive::Heartbeat, DeviceRecord::Approved) => Decision {
                status: EdgeStatus::Ok,
                effect: Effect::RecordHeartbeat,
            },
            (_, DeviceRecord::Approved) => Decision::answer(EdgeStatus::Ok),
        },
    }
}

// ---------------------------------------------------------------------------
// Agent side
// ---------------------------------------------------------------------------

/// Exponential backoff with jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry, before jitter.
    pub initial: Duration,
    /// Largest delay, before jitter.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::seconds(1),
            max: Duration::minutes(5),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (0 for the first retry): `initial · 2^attempt`
    /// capped at `max`, then jittered into its upper half by `random` (uniform over
    /// `u32`), so a fleet coming back from an outage spreads out.
    pub fn delay(&self, attempt: u32, random: u32) -> Duration {
        let initial = self.initial.whole_milliseconds().max(1);
        let max = self.max.whole_milliseconds().max(initial);
        let base = initial
            .checked_mul(1i128 << attempt.min(64))
            .map_or(max, |d| d.min(max));
        let half = base / 2;
        let jitter = (base - half) * i128::from(random) / i128::from(u32::MAX);
        Duration::milliseconds(i64::try_from(half + jitter).unwrap_or(i64::MAX))
    }
}

/// Tunables of the agent's enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentConfig {
    /// Retry backoff.
    pub backoff: Backoff,
    /// After registration answered 404 (not approved) for this long, enrol again, in
    /// case the signed request was deleted.
    pub reenrol_after: Duration,
    /// When to renew the device certificate.
    pub renewal: RenewalPolicy,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            reenrol_after: Duration::hours(1),
            renewal: RenewalPolicy::default(),
        }
    }
}

/// Which client certificate a request is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The fleet-wide registration certificate.
    RegistrationCertificate,
    /// The device's own certificate (possibly expired, for `registration`).
    DeviceCertificate,
}

/// A request the agent should send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRequest {
    /// The directive (`enrolment` or `registration`; the latter carries a new CSR).
    pub directive: Directive,
    /// The client certificate to present.
    pub credential: Credential,
}

/// What the agent does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAction {
    /// Send `request` at `at`.
    Send {
        /// The request.
        request: AgentRequest,
        /// When to send it.
        at: OffsetDateTime,
    },
    /// Enrolled: run normally, and call [`EnrolmentMachine::tick`] at `renew_at`.
    Run {
        /// When certificate renewal falls due.
        renew_at: OffsetDateTime,
    },
}

/// Where the agent is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentPhase {
    /// Sending `enrolment` with the registration certificate.
    Enrolling,
    /// Enrolled; sending `registration` with the registration certificate.
    Registering,
    /// Registration answered 404 since `since`: waiting for approval.
    AwaitingApproval {
        /// First 404 of this wait.
        since: OffsetDateTime,
    },
    /// Holding a device certificate.
    Running,
    /// Sending `registration` with the device certificate (renewal, or re-registration
    /// with an expired certificate).
    Renewing,
}

/// An HTTP response as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentResponse<'a> {
    /// HTTP status code.
    pub status: u16,
    /// Response body.
    pub body: &'a [u8],
}

/// Why the last exchange did not move the agent forward.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolmentError {
    /// The server could not be reached.
    #[error("the server could not be reached for {directive}")]
    Unreachable {
        /// The directive that was being sent.
        directive: Directive,
    },
    /// The server answered with a status the protocol does not expect here.
    #[error("unexpected status {status} for {directive}")]
    UnexpectedStatus {
        /// The directive that was sent.
        directive: Directive,
        /// The status received.
        status: u16,
    },
    /// The registration answer carried no usable certificate.
    #[error("the registration response is unusable: {reason}")]
    MalformedRegistrationResponse {
        /// What is wrong.
        reason: &'static str,
        /// The certificate parser's error, when the certificate was unreadable.
        #[source]
        source: Option<CertificateError>,
    },
    /// The device certificate was refused (401) or the device is unknown (404)
    /// while renewing: the agent starts over with the registration certificate.
    #[error("the device certificate was refused with status {status}; enrolling again")]
    DeviceCertificateRefused {
        /// The status received.
        status: u16,
    },
    /// Approval did not arrive within the configured wait; the agent enrols again.
    #[error("approval did not arrive since {since}; enrolling again")]
    ApprovalTimedOut {
        /// When the wait began.
        since: OffsetDateTime,
    },
}

/// The device certificate the agent holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldCertificate {
    pem: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// The agent's enrolment, registration and renewal, as a pure state machine.
///
/// ```
/// use flotta_core::enrolment::{AgentConfig, AgentResponse, Credential, Directive,
///     EnrolmentMachine, NextAction};
/// use time::OffsetDateTime;
///
/// let now = OffsetDateTime::now_utc();
/// let mut agent = EnrolmentMachine::new(AgentConfig::default());
/// let NextAction::Send { request, .. } = agent.start(now) else { unreachable!() };
/// assert_eq!(request.directive, Directive::Enrolment);
/// assert_eq!(request.credential, Credential::RegistrationCertificate);
///
/// // 200: enrolment is pending; register at once.
/// let next = agent.on_response(AgentResponse { status: 200, body: b"{}" }, now, 0);
/// assert!(matches!(next, NextAction::Send { request, at }
///     if request.directive == Directive::Registration && at == now));
/// ```
#[derive(Debug)]
pub struct EnrolmentMachine {
    config: AgentConfig,
    phase: AgentPhase,
    attempt: u32,
    certificate: Option<HeldCertificate>,
    last_error: Option<EnrolmentError>,
}

impl EnrolmentMachine {
    /// A device with no certificate: it starts by enrolling.
    pub fn new(config: AgentConfig) -> Self {
        Self {
            config,
            phase: AgentPhase::Enrolling,
            attempt: 0,
            certificate: None,
            last_error: None,
        }
    }

    /// A device that already holds a certificate (PEM, as persisted): it starts
    /// running, renewing or re-registering according to the time.
    pub fn with_certificate(
        config: AgentConfig,
        certificate_pem: &str,
    ) -> Result<Self, CertificateError> {
        let facts = PeerCertificate::parse(certificate_pem.as_bytes())?;
        Ok(Self {
            config,
            phase: AgentPhase::Running,
            attempt: 0,
            certificate: Some(HeldCertificate {
                pem: certificate_pem.to_owned(),
                not_before: facts.not_before,
                not_after: facts.not_after,
            }),
            last_error: None,
        })
    }

    /// The current phase.
    pub fn phase(&self) -> AgentPhase {
        self.phase
    }

    /// The device certificate, PEM, once registered (persist it with the key).
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate.as_ref().map(|c| c.pem.as_str())
    }

    /// Why the last exchange did not move the agent forward, if it did not.
    pub fn last_error(&self) -> Option<&EnrolmentError> {
        self.last_error.as_ref()
    }

    /// Number of consecutive failed attempts of the current request.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The first action: what to send now, or run.
    pub fn start(&mut self, now: OffsetDateTime) -> NextAction {
        self.tick(now)
    }

    /// Re-evaluates at time `now`: in [`AgentPhase::Running`], starts renewal when it
    /// falls due; in other phases, repeats the pending request now.
    pub fn tick(&mut self, now: OffsetDateTime) -> NextAction {
        if self.phase == AgentPhase::Running {
            let Some(cert) = &self.certificate else {
                self.phase = AgentPhase::Enrolling;
                return self.send_now(now);
            };
            match self
                .config
                .renewal
                .decide_for(cert.not_before, cert.not_after, now)
            {
                RenewalAction::Valid { renew_at } => return NextAction::Run { renew_at },
                RenewalAction::RenewNow | RenewalAction::ExpiredReRegister => {
                    self.phase = AgentPhase::Renewing;
                    self.attempt = 0;
                }
            }
        }
        self.send_now(now)
    }

    /// A call of the run loop (heartbeat, configuration) was answered 401: the
    /// certificate is no longer accepted for ordinary calls, so renew (the server
    /// accepts an expired certificate for `registration`).
    pub fn on_unauthorized(&mut self, now: OffsetDateTime) -> NextAction {
        if self.phase == AgentPhase::Running {
            self.phase = AgentPhase::Renewing;
            self.attempt = 0;
        }
        self.send_now(now)
    }

    /// The pending request could not reach the server: retry it after a backoff.
    pub fn on_unreachable(&mut self, now: OffsetDateTime, random: u32) -> NextAction {
        if self.phase == AgentPhase::Running {
            return self.tick(now);
        }
        self.last_error = Some(EnrolmentError::Unreachable {
            directive: self.request().directive,
        });
        self.retry_later(now, random)
    }

    /// The server answered the pending request.
    pub fn on_response(
        &mut self,
        response: AgentResponse<'_>,
        now: OffsetDateTime,
        random: u32,
    ) -> NextAction {
        let directive = match self.phase {
            AgentPhase::Running => return self.tick(now),
            _ => self.request().directive,
        };
        match (self.phase, response.status) {
            (AgentPhase::Enrolling, 200 | 208) => self.advance(AgentPhase::Registering, now),
            (
                AgentPhase::Registering
                | AgentPhase::AwaitingApproval { .. }
                | AgentPhase::Renewing,
                200,
            ) => match parse_registration(response.body) {
                Ok(cert) => {
                    self.certificate = Some(cert);
                    self.phase = AgentPhase::Running;
                    self.attempt = 0;
                    self.last_error = None;
                    self.tick(now)
                }
                Err(e) => {
                    self.last_error = Some(e);
                    self.retry_later(now, random)
                }
            },
            (AgentPhase::Registering, 404) => {
                self.phase = AgentPhase::AwaitingApproval { since: now };
                self.last_error = None;
                self.retry_later(now, random)
            }
            (AgentPhase::AwaitingApproval { since }, 404) => {
                if now - since >= self.config.reenrol_after {
                    self.last_error = Some(EnrolmentError::ApprovalTimedOut { since });
                    self.phase = AgentPhase::Enrolling;
                    self.attempt = 0;
                    self.send_now(now)
                } else {
                    self.retry_later(now, random)
                }
            }
            (AgentPhase::Registering | AgentPhase::AwaitingApproval { .. }, 401) => {
                self.last_error = Some(EnrolmentError::UnexpectedStatus {
                    directive,
                    status: 401,
                });
                self.phase = AgentPhase::Enrolling;
                self.retry_later(now, random)
            }
            (AgentPhase::Renewing, status @ (401 | 404)) => {
                self.last_error = Some(EnrolmentError::DeviceCertificateRefused { status });
                self.certificate = None;
                self.phase = AgentPhase::Enrolling;
                self.attempt = 0;
                self.send_now(now)
            }
            (_, status) => {
                self.last_error = Some(EnrolmentError::UnexpectedStatus { directive, status });
                self.retry_later(now, random)
            }
        }
    }

    fn request(&self) -> AgentRequest {
        match self.phase {
            AgentPhase::Enrolling => AgentRequest {
                directive: Directive::Enrolment,
                credential: Credential::RegistrationCertificate,
            },
            AgentPhase::Registering | AgentPhase::AwaitingApproval { .. } => AgentRequest {
                directive: Directive::Registration,
                credential: Credential::RegistrationCertificate,
            },
            AgentPhase::Running | AgentPhase::Renewing => AgentRequest {
                directive: Directive::Registration,
                credential: Credential::DeviceCertificate,
            },
        }
    }

    fn advance(&mut self, phase: AgentPhase, now: OffsetDateTime) -> NextAction {
        self.phase = phase;
        self.attempt = 0;
        self.last_error = None;
        self.send_now(now)
    }

    fn send_now(&self, now: OffsetDateTime) -> NextAction {
        NextAction::Send {
            request: self.request(),
            at: now,
        }
    }

    fn retry_later(&mut self, now: OffsetDateTime, random: u32) -> NextAction {
        let delay = self.config.backoff.delay(self.attempt, random);
        self.attempt = self.attempt.saturating_add(1);
        NextAction::Send {
            request: self.request(),
            at: now.saturating_add(delay),
        }
    }
}

/// Reads the certificate out of a registration answer: a `message-response` whose
/// `content.certificate` is PEM.
fn parse_registration(body: &[u8]) -> Result<HeldCertificate, EnrolmentError> {
    let malformed = |reason| EnrolmentError::MalformedRegistrationResponse {
        reason,
        source: None,
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| malformed("body is not JSON"))?;
    let pem = value
        .get("content")
        .and_then(|c| c.get("certificate"))
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| malformed("no content.certificate string"))?;
    let facts = PeerCertificate::parse(pem.as_bytes()).map_err(|e| {
        EnrolmentError::MalformedRegistrationResponse {
            reason: "content.certificate is not a certificate",
            source: Some(e),
        }
    })?;
    Ok(HeldCertificate {
        pem: pem.to_owned(),
        not_before: facts.not_before,
        not_after: facts.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{BuiltinCa, CsrPolicy, DeviceIdentity, DeviceKey};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn registration_body(now: OffsetDateTime, lifetime: Duration) -> (Vec<u8>, String) {
        let ca = BuiltinCa::generate("test CA", now).expect("ca");
        let key = DeviceKey::generate().expect("key");
        let csr = key.csr("edge-1").expect("csr");
        let policy = CsrPolicy {
            device_lifetime: lifetime,
            ..CsrPolicy::default()
        };
        let device = DeviceIdentity::new("edge-1", "default").expect("id");
        let issued = policy
            .issue(&ca, csr.pem().as_bytes(), &device, now)
            .expect("issue");
        let body = serde_json::json!({
            "message_id": "m1",
            "directive": "registration",
            "content": { "certificate": issued.pem() }
        });
        (serde_json::to_vec(&body).expect("json"), issued.pem())
    }

    fn send(
        request_directive: Directive,
        credential: Credential,
        at: OffsetDateTime,
    ) -> NextAction {
        NextAction::Send {
            request: AgentRequest {
                directive: request_directive,
                credential,
            },
            at,
        }
    }

    fn resp(status: u16, body: &[u8]) -> AgentResponse<'_> {
        AgentResponse { status, body }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_into_upper_half() {
        let b = Backoff {
            initial: Duration::seconds(1),
            max: Duration::seconds(60),
        };
        assert_eq!(b.delay(0, u32::MAX), Duration::seconds(1));
        assert_eq!(b.delay(0, 0), Duration::milliseconds(500));
        assert_eq!(b.delay(3, u32::MAX), Duration::seconds(8));
        assert_eq!(b.delay(3, 0), Duration::seconds(4));
        assert_eq!(b.delay(10, u32::MAX), Duration::seconds(60));
        assert_eq!(b.delay(u32::MAX, u32::MAX), Duration::seconds(60));
        let mid = b.delay(3, u32::MAX / 2);
        assert!(
            mid > Duration::seconds(5) && mid < Duration::seconds(7),
            "{mid}"
        );
    }

    #[test]
    fn happy_path_enrol_pending_register_approved_run() {
        let mut m = EnrolmentMachine::new(AgentConfig::default());
        assert_eq!(
            m.start(T0),
            send(
                Directive::Enrolment,
                Credential::RegistrationCertificate,
                T0
            )
        );
        assert_eq!(
            m.on_response(resp(200, b"{}"), T0, 7),
            send(
                Directive::Registration,
                Credential::RegistrationCertificate,
                T0
            )
        );
        // Not approved yet: retry with backoff.
        let next = m.on_response(resp(404, b""), T0, u32::MAX);
        assert_eq!(
            next,
            send(
                Directive::Registration,
                Credential::RegistrationCertificate,
                T0 + Duration::seconds(1)
            )
        );
        assert_eq!(m.phase(), AgentPhase::AwaitingApproval { since: T0 });
        let (body, pem) = registration_body(T0, Duration::days(90));
        let t1 = T0 + Duration::seconds(1);
        let next = m.on_response(resp(200, &body), t1, 0);
        let renew_at = T0 - Duration::hours(1) + (Duration::days(90) + Duration::hours(1)) * 2 / 3;
        assert_eq!(next, NextAction::Run { renew_at });
        assert_eq!(m.phase(), AgentPhase::Running);
        assert_eq!(m.certificate_pem(), Some(pem.as_str()));
        assert!(m.last_error().is_none());
    }

    #[test]
    fn already_approved_enrolment_registers_at_once() {
        let mut m = EnrolmentMachine::new(AgentConfig::default());
        m.start(T0);
        assert_eq!(
            m.on_response(resp(208, b""), T0, 0),
            send(
                Directive::Registration,
                Credential::RegistrationCertificate,
                T0
            )
        );
        assert_eq!(m.phase(), AgentPhase::Registering);
    }

    #[test]
    fn unreachable_server_backs_off_to_the_cap_and_keeps_the_request() {
        let config = AgentConfig::default();
        let mut m = EnrolmentMachine::new(config);
        m.start(T0);
        let mut now = T0;
        let mut last_delay = Duration::ZERO;
        for _ in 0..20 {
            let NextAction::Send { request, at } = m.on_unreachable(now, u32::MAX) else {
                panic!("expected a retry");
            };
            assert_eq!(request.directive, Directive::Enrolment);
            let delay = at - now;
            assert!(delay >= last_delay);
            assert!(delay <= config.backoff.max);
            last_delay = delay;
            now = at;
        }
        assert_eq!(last_delay, config.backoff.max);
        assert!(matches!(
            m.last_error(),
            Some(EnrolmentError::Unreachable {
                directive: Directive::Enrolment
            })
        ));
        // Recovery resets the backoff.
        m.on_response(resp(200, b""), now, 0);
        assert_eq!(m.attempt(), 0);
    }

    #[test]
    fn server_errors_during_enrolment_retry_with_backoff() {
        let mut m = EnrolmentMachine::new(AgentConfig::default());
        m.start(T0);
        let next = m.on_response(resp(500, b""), T0, u32::MAX);
        assert_eq!(
            next,
            send(
                Directive::Enrolment,
                Credential::RegistrationCertificate,
                T0 + Duration::seconds(1)
            )
        );
        assert!(matches!(
            m.last_error(),
            Some(EnrolmentError::UnexpectedStatus { status: 500, .. })
        ));
    }

    #[test]
    fn approval_never_arriving_re_enrols_after_the_wait() {
        let config = AgentConfig {
            reenrol_after: Duration::minutes(30),
            ..AgentConfig::default()
        };
        let mut m = EnrolmentMachine::new(config);
        m.start(T0);
        m.on_response(resp(200, b""), T0, 0);
        let mut now = T0;
        loop {
            let next = m.on_response(resp(404, b""), now, u32::MAX);
            let NextAction::Send { request, at } = next else {
                panic!("expected a request");
            };
            if request.directive == Directive::Enrolment {
                assert!(now - T0 >= Duration::minutes(30));
                assert_eq!(at, now);
                break;
            }
            assert!(now - T0 < Duration::minutes(30));
            assert!(at - now <= config.backoff.max);
            now = at;
        }
        assert_eq!(m.phase(), AgentPhase::Enrolling);
        assert!(matches!(
            m.last_error(),
            Some(EnrolmentError::ApprovalTimedOut { since }) if *since == T0
        ));
    }

    #[test]
    fn malformed_registration_answer_is_retried() {
        let mut m = EnrolmentMachine::new(AgentConfig::default());
        m.start(T0);
        m.on_response(resp(208, b""), T0, 0);
        for body in [
            &b"not json"[..],
            br#"{"content":{}}"#,
            br#"{"content":{"certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}"#,
        ] {
            let next = m.on_response(resp(200, body), T0, 0);
            assert!(matches!(next, NextAction::Send { request, at }
                if request.directive == Directive::Registration && at > T0));
            assert!(matches!(
                m.last_error(),
                Some(EnrolmentError::MalformedRegistrationResponse { .. })
            ));
            assert_eq!(m.phase(), AgentPhase::Registering);
        }
    }

    #[test]
    fn registration_certificate_refused_goes_back_to_enrolment() {
        let mut m = EnrolmentMachine::new(AgentConfig::default());
        m.start(T0);
        m.on_response(resp(200, b""), T0, 0);
        let next = m.on_response(resp(401, b""), T0, u32::MAX);
        assert_eq!(
            next,
            send(
                Directive::Enrolment,
                Credential::RegistrationCertificate,
                T0 + Duration::seconds(1)
            )
        );
    }

    #[test]
    fn renews_at_two_thirds_with_the_device_certificate() {
        let (_, pem) = registration_body(T0, Duration::days(90));
        let mut m = EnrolmentMachine::with_certificate(AgentConfig::default(), &pem).expect("cert");
        let NextAction::Run { renew_at } = m.start(T0) else {
            panic!("expected run");
        };
        assert_eq!(
            m.tick(renew_at - Duration::seconds(1)),
            NextAction::Run { renew_at }
        );
        assert_eq!(
            m.tick(renew_at),
            send(
                Directive::Registration,
                Credential::DeviceCertificate,
                renew_at
            )
        );
        assert_eq!(m.phase(), AgentPhase::Renewing);
        // Offline during renewal: back off, keep the device certificate.
        let next = m.on_unreachable(renew_at, u32::MAX);
        assert_eq!(
            next,
            send(
                Directive::Registration,
                Credential::DeviceCertificate,
                renew_at + Duration::seconds(1)
            )
        );
        let later = renew_at + Duration::seconds(1);
        let (body, new_pem) = registration_body(later, Duration::days(90));
        assert!(matches!(
            m.on_response(resp(200, &body), later, 0),
            NextAction::Run { renew_at: next } if next > later + Duration::days(59)
        ));
        assert_eq!(m.phase(), AgentPhase::Running);
        assert_eq!(m.certificate_pem(), Some(new_pem.as_str()));
    }

    #[test]
    fn expired_while_offline_re_registers_with_the_expired_certificate() {
        let (_, pem) = registration_body(T0, Duration::days(1));
        let mut m = EnrolmentMachine::with_certificate(AgentConfig::default(), &pem).expect("cert");
        let much_later = T0 + Duration::days(30);
        assert_eq!(
            m.start(much_later),
            send(
                Directive::Registration,
                Credential::DeviceCertificate,
                much_later
            )
        );
    }

    #[test]
    fn unauthorized_during_run_renews_then_falls_back_to_enrolment() {
        let (_, pem) = registration_body(T0, Duration::days(90));
        let mut m = EnrolmentMachine::with_certificate(AgentConfig::default(), &pem).expect("cert");
        assert!(matches!(m.start(T0), NextAction::Run { .. }));
        assert_eq!(
            m.on_unauthorized(T0),
            send(Directive::Registration, Credential::DeviceCertificate, T0)
        );
        // The server refuses the device certificate too (revoked): start over.
        assert_eq!(
            m.on_response(resp(401, b""), T0, 0),
            send(
                Directive::Enrolment,
                Credential::RegistrationCertificate,
                T0
            )
        );
        assert!(m.certificate_pem().is_none());
        assert!(matches!(
            m.last_error(),
            Some(EnrolmentError::DeviceCertificateRefused { status: 401 })
        ));
    }

    #[test]
    fn renewal_for_an_unknown_device_falls_back_to_enrolment() {
        let (_, pem) = registration_body(T0, Duration::days(90));
        let mut m = EnrolmentMachine::with_certificate(AgentConfig::default(), &pem).expect("cert");
        m.on_unauthorized(T0);
        assert_eq!(
            m.on_response(resp(404, b""), T0, 0),
            send(
                Directive::Enrolment,
                Credential::RegistrationCertificate,
                T0
            )
        );
    }

    #[test]
    fn responses_while_running_do_not_change_state() {
        let (_, pem) = registration_body(T0, Duration::days(90));
        let mut m = EnrolmentMachine::with_certificate(AgentConfig::default(), &pem).expect("cert");
        let run = m.start(T0);
        assert_eq!(m.on_response(resp(500, b""), T0, 0), run);
        assert_eq!(m.on_unreachable(T0, 0), run);
        assert_eq!(m.phase(), AgentPhase::Running);
    }

    fn device(id: &str) -> PeerIdentity {
        PeerIdentity::Device {
            id: id.into(),
            namespace: "default".into(),
        }
    }

    fn check(
        peer: Result<&PeerIdentity, &IdentityError>,
        directive: Option<Directive>,
        path: &str,
        record: DeviceRecord,
    ) -> (u16, Effect) {
        let d = decide(peer, directive, path, record);
        (d.status.code(), d.effect)
    }

    #[test]
    fn server_decision_table() {
        use DeviceRecord::*;
        use Directive::*;
        let reg = PeerIdentity::Register;
        let dev = device("edge-1");
        let refused = IdentityError::UnknownIssuer;
        let expired = IdentityError::Expired {
            not_after: T0,
            now: T0,
        };
        type Case<'a> = (
            Result<&'a PeerIdentity, &'a IdentityError>,
            Option<Directive>,
            &'a str,
            DeviceRecord,
            u16,
            Effect,
        );
        let cases: &[Case<'_>] = &[
            (
                Err(&refused),
                Some(Enrolment),
                "edge-1",
                Unknown,
                401,
                Effect::None,
            ),
            (
                Err(&expired),
                Some(Heartbeat),
                "edge-1",
                Approved,
                401,
                Effect::None,
            ),
            (Ok(&reg), None, "edge-1", Unknown, 400, Effect::None),
            (
                Ok(&reg),
                Some(Enrolment),
                "Not A Device",
                Unknown,
                400,
                Effect::None,
            ),
            (
                Ok(&reg),
                Some(Enrolment),
                "edge-1",
                Unknown,
                200,
                Effect::CreateSignedRequest,
            ),
            (
                Ok(&reg),
                Some(Enrolment),
                "edge-1",
                Deleted,
                200,
                Effect::CreateSignedRequest,
            ),
            (
                Ok(&reg),
                Some(Enrolment),
                "edge-1",
                Pending,
                200,
                Effect::None,
            ),
            (
                Ok(&reg),
                Some(Enrolment),
                "edge-1",
                Approved,
                208,
                Effect::None,
            ),
            (
                Ok(&reg),
                Some(Registration),
                "edge-1",
                Approved,
                200,
                Effect::SignCsr,
            ),
            (
                Ok(&reg),
                Some(Registration),
                "edge-1",
                Pending,
                404,
                Effect::None,
            ),
            (
                Ok(&reg),
                Some(Registration),
                "edge-1",
                Unknown,
                404,
                Effect::None,
            ),
            (
                Ok(&reg),
                Some(Registration),
                "edge-1",
                Deleted,
                404,
                Effect::None,
            ),
            (
                Ok(&reg),
                Some(Heartbeat),
                "edge-1",
                Approved,
                403,
                Effect::None,
            ),
            (
                Ok(&reg),
                Some(Device),
                "edge-1",
                Approved,
                403,
                Effect::None,
            ),
            (
                Ok(&reg),
                Some(Control),
                "edge-1",
                Approved,
                403,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Heartbeat),
                "edge-2",
                Approved,
                403,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Registration),
                "edge-2",
                Approved,
                403,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Heartbeat),
                "edge-1",
                Approved,
                200,
                Effect::RecordHeartbeat,
            ),
            (
                Ok(&dev),
                Some(Heartbeat),
                "edge-1",
                Pending,
                404,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Heartbeat),
                "edge-1",
                Unknown,
                404,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Heartbeat),
                "edge-1",
                Deleted,
                404,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Registration),
                "edge-1",
                Approved,
                200,
                Effect::SignCsr,
            ),
            (
                Ok(&dev),
                Some(Registration),
                "edge-1",
                Deleted,
                404,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Device),
                "edge-1",
                Approved,
                200,
                Effect::None,
            ),
            (Ok(&dev), Some(Device), "edge-1", Unknown, 404, Effect::None),
            (
                Ok(&dev),
                Some(Control),
                "edge-1",
                Approved,
                200,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Enrolment),
                "edge-1",
                Approved,
                208,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Enrolment),
                "edge-1",
                Pending,
                200,
                Effect::None,
            ),
            (
                Ok(&dev),
                Some(Enrolment),
                "edge-1",
                Unknown,
                404,
                Effect::None,
            ),
        ];
        for (i, (peer, directive, path, record, status, effect)) in cases.iter().enumerate() {
            assert_eq!(
                check(*peer, *directive, path, *record),
                (*status, *effect),
                "case {i}: {peer:?} {directive:?} {path} {record:?}"
            );
        }
        assert_eq!(Decision::CSR_REFUSED.status.code(), 400);
    }

    #[test]
    fn directive_names_round_trip_and_only_registration_forgives_expiry() {
        for d in [
            Directive::Enrolment,
            Directive::Registration,
            Directive::Heartbeat,
            Directive::Device,
            Directive::Control,
        ] {
            assert_eq!(Directive::parse(d.as_str()), Some(d));
            assert_eq!(
                d.purpose() == Purpose::Registration,
                d == Directive::Registration
            );
        }
        assert_eq!(Directive::parse("Enrolment"), None);
    }
}
