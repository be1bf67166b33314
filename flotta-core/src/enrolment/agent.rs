//! The agent's side of the protocol: enrol, wait for approval, register, renew.

use time::{Duration, OffsetDateTime};

use super::Directive;
use crate::backoff::Backoff;
use crate::pki::{CertificateError, PeerCertificate, RenewalAction, RenewalPolicy};

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
    /// After an operator denied the enrolment, how long to wait before asking
    /// again (a denial is a decision: the agent does not insist).
    pub denied_wait: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            reenrol_after: Duration::hours(1),
            renewal: RenewalPolicy::default(),
            denied_wait: Duration::hours(1),
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
    /// An operator denied the enrolment (403 `EnrolmentDenied`) at `since`: the
    /// agent asks again only after [`AgentConfig::denied_wait`].
    Denied {
        /// First denial of this wait.
        since: OffsetDateTime,
    },
    /// Holding a device certificate.
    Running,
    /// Sending `registration` with the device certificate (renewal, or re-registration
    /// with an expired certificate).
    Renewing,
}

impl AgentPhase {
    /// The phase's name, as status and events show it (`Enrolling`, `Registering`,
    /// `AwaitingApproval`, `Denied`, `Running`, `Renewing`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolling => "Enrolling",
            Self::Registering => "Registering",
            Self::AwaitingApproval { .. } => "AwaitingApproval",
            Self::Denied { .. } => "Denied",
            Self::Running => "Running",
            Self::Renewing => "Renewing",
        }
    }
}

impl std::fmt::Display for AgentPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the pending request ended, as the client read the answer: what the state
/// machine is fed after each request it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeOutcome {
    /// `enrolment` was accepted: pending approval (200) or already approved (208).
    Enrolled {
        /// Whether the server answered 208 (approved).
        already_approved: bool,
    },
    /// `registration` answered with the device certificate.
    Registered {
        /// The certificate, PEM.
        certificate_pem: String,
    },
    /// 404: the device is not approved (or, to the device certificate, unknown).
    NotApproved,
    /// 401: the client certificate was refused.
    Unauthorized,
    /// 403 with reason `EnrolmentDenied`: an operator denied the enrolment.
    Denied,
    /// Any other status, which the protocol does not expect (400, 403, 5xx).
    Failed {
        /// The status received.
        status: u16,
    },
    /// No answer: the server could not be reached.
    Unreachable,
}

impl ExchangeOutcome {
    /// The outcome of a request answered with an error `status`.
    pub fn from_status(status: u16) -> Self {
        match status {
            404 => Self::NotApproved,
            401 => Self::Unauthorized,
            status => Self::Failed { status },
        }
    }

    /// The outcome of a request answered with an error `status` and the error
    /// body's `reason` (core's [`Reason::as_str`](crate::enrolment::Reason::as_str)).
    pub fn from_refusal(status: u16, reason: Option<&str>) -> Self {
        match (status, reason) {
            (403, Some(reason)) if reason == crate::enrolment::Reason::EnrolmentDenied.as_str() => {
                Self::Denied
            }
            (status, _) => Self::from_status(status),
        }
    }

    /// The HTTP status this outcome stands for; `None` for [`Unreachable`].
    ///
    /// [`Unreachable`]: Self::Unreachable
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Enrolled {
                already_approved: true,
            } => Some(208),
            Self::Enrolled { .. } | Self::Registered { .. } => Some(200),
            Self::NotApproved => Some(404),
            Self::Unauthorized => Some(401),
            Self::Denied => Some(403),
            Self::Failed { status } => Some(*status),
            Self::Unreachable => None,
        }
    }
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
    /// The server answered with a status the protocol does not expect here (an
    /// outcome of another directive counts as its success status, 200).
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
    /// An operator denied the enrolment; the agent asks again after
    /// [`AgentConfig::denied_wait`].
    #[error("the enrolment was denied by an operator (since {since}); asking again later")]
    Denied {
        /// When the first denial of this wait came.
        since: OffsetDateTime,
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
    /// When this machine received it; `None` for one it was given.
    received_at: Option<OffsetDateTime>,
}

impl HeldCertificate {
    fn parse(pem: &str, received_at: Option<OffsetDateTime>) -> Result<Self, CertificateError> {
        let facts = PeerCertificate::parse(pem.as_bytes())?;
        Ok(Self {
            pem: pem.to_owned(),
            not_before: facts.not_before,
            not_after: facts.not_after,
            received_at,
        })
    }

    /// Where its lifetime starts for renewal: when it was received, if known. The
    /// server back-dates NotBefore for clock skew (an hour), which would make a
    /// short-lived certificate due for renewal the moment it arrives.
    fn lifetime_start(&self) -> OffsetDateTime {
        self.received_at.map_or(self.not_before, |at| {
            at.clamp(self.not_before, self.not_after)
        })
    }
}

/// The agent's enrolment, registration and renewal, as a pure state machine.
///
/// ```
/// use flotta_core::enrolment::{AgentConfig, Credential, Directive, EnrolmentMachine,
///     ExchangeOutcome, NextAction};
/// use time::OffsetDateTime;
///
/// let now = OffsetDateTime::now_utc();
/// let mut agent = EnrolmentMachine::new(AgentConfig::default());
/// let NextAction::Send { request, .. } = agent.start(now) else { unreachable!() };
/// assert_eq!(request.directive, Directive::Enrolment);
/// assert_eq!(request.credential, Credential::RegistrationCertificate);
///
/// // Enrolment is pending: register at once.
/// let next = agent.on_outcome(ExchangeOutcome::Enrolled { already_approved: false }, now, 0);
/// assert!(matches!(next, NextAction::Send { request, at }
///     if request.directive == Directive::Registration && at == now));
///
/// // Not approved yet: ask again after a backoff.
/// let next = agent.on_outcome(ExchangeOutcome::NotApproved, now, 0);
/// assert!(matches!(next, NextAction::Send { at, .. } if at > now));
/// ```
///
/// A device certificate's renewal falls due by the [`RenewalPolicy`] of
/// [`AgentConfig::renewal`], counted from when the machine received the certificate
/// (from NotBefore for one it was given): [`NextAction::Run`] says when, and the
/// agent only carries it out.
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
        Ok(Self {
            config,
            phase: AgentPhase::Running,
            attempt: 0,
            certificate: Some(HeldCertificate::parse(certificate_pem, None)?),
            last_error: None,
        })
    }

    /// Counts the held certificate's lifetime, for renewal, from `at`, when the
    /// device received it (by default from its NotBefore, which the server
    /// back-dates for clock skew).
    pub fn received_at(mut self, at: OffsetDateTime) -> Self {
        if let Some(certificate) = &mut self.certificate {
            certificate.received_at = Some(at);
        }
        self
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
                .decide_for(cert.lifetime_start(), cert.not_after, now)
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

    /// The pending request ended with `outcome` at `now`: what to do next. Retries
    /// back off by [`AgentConfig::backoff`], jittered by `random` (uniform over
    /// `u32`). In [`AgentPhase::Running`] nothing is pending and this is
    /// [`tick`](Self::tick).
    pub fn on_outcome(
        &mut self,
        outcome: ExchangeOutcome,
        now: OffsetDateTime,
        random: u32,
    ) -> NextAction {
        if self.phase == AgentPhase::Running {
            return self.tick(now);
        }
        let directive = self.request().directive;
        match (self.phase, outcome) {
            (_, ExchangeOutcome::Unreachable) => {
                self.last_error = Some(EnrolmentError::Unreachable { directive });
                self.retry_later(now, random)
            }
            (
                AgentPhase::Enrolling | AgentPhase::Denied { .. },
                ExchangeOutcome::Enrolled { .. },
            ) => self.advance(AgentPhase::Registering, now),
            (
                AgentPhase::Enrolling
                | AgentPhase::Registering
                | AgentPhase::AwaitingApproval { .. }
                | AgentPhase::Denied { .. },
                ExchangeOutcome::Denied,
            ) => {
                let since = match self.phase {
                    AgentPhase::Denied { since } => since,
                    _ => now,
                };
                self.phase = AgentPhase::Denied { since };
                self.attempt = 0;
                self.last_error = Some(EnrolmentError::Denied { since });
                NextAction::Send {
                    request: self.request(),
                    at: now + self.config.denied_wait,
                }
            }
            (
                AgentPhase::Registering
                | AgentPhase::AwaitingApproval { .. }
                | AgentPhase::Renewing,
                ExchangeOutcome::Registered { certificate_pem },
            ) => match HeldCertificate::parse(&certificate_pem, Some(now)) {
                Ok(certificate) => {
                    self.certificate = Some(certificate);
                    self.phase = AgentPhase::Running;
                    self.attempt = 0;
                    self.last_error = None;
                    self.tick(now)
                }
                Err(source) => {
                    self.last_error = Some(EnrolmentError::MalformedRegistrationResponse {
                        reason: "the certificate is unreadable",
                        source: Some(source),
                    });
                    self.retry_later(now, random)
                }
            },
            (AgentPhase::Registering, ExchangeOutcome::NotApproved) => {
                self.phase = AgentPhase::AwaitingApproval { since: now };
                self.last_error = None;
                self.retry_later(now, random)
            }
            (AgentPhase::AwaitingApproval { since }, ExchangeOutcome::NotApproved) => {
                if now - since >= self.config.reenrol_after {
                    self.last_error = Some(EnrolmentError::ApprovalTimedOut { since });
                    self.phase = AgentPhase::Enrolling;
                    self.attempt = 0;
                    self.send_now(now)
                } else {
                    self.retry_later(now, random)
                }
            }
            (
                AgentPhase::Registering | AgentPhase::AwaitingApproval { .. },
                ExchangeOutcome::Unauthorized,
            ) => {
                self.last_error = Some(EnrolmentError::UnexpectedStatus {
                    directive,
                    status: 401,
                });
                self.phase = AgentPhase::Enrolling;
                self.retry_later(now, random)
            }
            (
                AgentPhase::Renewing,
                refusal @ (ExchangeOutcome::Unauthorized | ExchangeOutcome::NotApproved),
            ) => {
                self.last_error = Some(EnrolmentError::DeviceCertificateRefused {
                    status: refusal.status().unwrap_or(401),
                });
                self.certificate = None;
                self.phase = AgentPhase::Enrolling;
                self.attempt = 0;
                self.send_now(now)
            }
            (_, outcome) => {
                self.last_error = Some(EnrolmentError::UnexpectedStatus {
                    directive,
                    status: outcome.status().unwrap_or_default(),
                });
                self.retry_later(now, random)
            }
        }
    }

    fn request(&self) -> AgentRequest {
        match self.phase {
            AgentPhase::Enrolling | AgentPhase::Denied { .. } => AgentRequest {
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
            at: now.saturating_add(Duration::try_from(delay).unwrap_or(Duration::MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{BuiltinCa, CsrPolicy, DeviceIdentity, DeviceKey};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
    const SECOND: Duration = Duration::SECOND;

    /// A device certificate issued at `now` for `lifetime` (NotBefore back-dated
    /// an hour by the policy), PEM.
    fn certificate(now: OffsetDateTime, lifetime: Duration) -> String {
        let ca = BuiltinCa::generate("test CA", now).expect("ca");
        let key = DeviceKey::generate().expect("key");
        let csr = key.csr("edge-1").expect("csr");
        let policy = CsrPolicy {
            device_lifetime: lifetime,
            ..CsrPolicy::default()
        };
        let device = DeviceIdentity::new("edge-1", "default").expect("id");
        futures::executor::block_on(policy.issue(&ca, csr.pem().as_bytes(), &device, now))
            .expect("issue")
            .pem()
    }

    fn send(directive: Directive, credential: Credential, at: OffsetDateTime) -> NextAction {
        NextAction::Send {
            request: AgentRequest {
                directive,
                credential,
            },
            at,
        }
    }

    fn registered(pem: &str) -> ExchangeOutcome {
        ExchangeOutcome::Registered {
            certificate_pem: pem.to_owned(),
        }
    }

    const PENDING: ExchangeOutcome = ExchangeOutcome::Enrolled {
        already_approved: false,
    };

    /// The last error, short: variant and status.
    fn error_of(m: &EnrolmentMachine) -> Option<String> {
        m.last_error().map(|e| match e {
            EnrolmentError::Unreachable { .. } => "Unreachable".to_owned(),
            EnrolmentError::UnexpectedStatus { status, .. } => format!("UnexpectedStatus {status}"),
            EnrolmentError::MalformedRegistrationResponse { .. } => "Malformed".to_owned(),
            EnrolmentError::DeviceCertificateRefused { status } => format!("Refused {status}"),
            EnrolmentError::ApprovalTimedOut { .. } => "ApprovalTimedOut".to_owned(),
            EnrolmentError::Denied { .. } => "Denied".to_owned(),
        })
    }

    #[derive(Debug, Clone, Copy)]
    enum From {
        Enrolling,
        Registering,
        AwaitingApproval,
        Denied,
        Renewing,
        Running,
    }

    fn machine_in(from: From, held: &str) -> EnrolmentMachine {
        let config = AgentConfig::default();
        let mut m = EnrolmentMachine::new(config);
        m.start(T0);
        match from {
            From::Enrolling => {}
            From::Registering => {
                m.on_outcome(PENDING, T0, 0);
            }
            From::AwaitingApproval => {
                m.on_outcome(PENDING, T0, 0);
                m.on_outcome(ExchangeOutcome::NotApproved, T0, 0);
                // A fresh backoff for the row under test.
                m.attempt = 0;
            }
            From::Denied => {
                m.on_outcome(ExchangeOutcome::Denied, T0, 0);
            }
            From::Renewing | From::Running => {
                m = EnrolmentMachine::with_certificate(config, held)
                    .expect("cert")
                    .received_at(T0);
                if matches!(from, From::Renewing) {
                    m.on_unauthorized(T0);
                }
            }
        }
        m
    }

    #[test]
    fn each_phase_and_outcome_leads_to_one_next_step() {
        use Credential::{DeviceCertificate as Dev, RegistrationCertificate as Reg};
        use Directive::{Enrolment, Registration};
        use ExchangeOutcome as O;
        let held = certificate(T0, Duration::days(90));
        let run = NextAction::Run {
            renew_at: T0 + Duration::days(60),
        };
        let later = T0 + SECOND;
        let awaiting = AgentPhase::AwaitingApproval { since: T0 };
        let denied = AgentPhase::Denied { since: T0 };
        let after_denial = T0 + AgentConfig::default().denied_wait;
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        // (from, outcome, next, phase after, error); `random` is u32::MAX, so a
        // first retry waits the whole initial second.
        let table: Vec<(From, ExchangeOutcome, NextAction, AgentPhase, Option<&str>)> = vec![
            // A denial: ask again (enrol) only after the long wait, whatever the phase.
            (
                From::Enrolling,
                O::Denied,
                send(Enrolment, Reg, after_denial),
                denied,
                Some("Denied"),
            ),
            (
                From::Registering,
                O::Denied,
                send(Enrolment, Reg, after_denial),
                denied,
                Some("Denied"),
            ),
            (
                From::AwaitingApproval,
                O::Denied,
                send(Enrolment, Reg, after_denial),
                denied,
                Some("Denied"),
            ),
            (
                From::Denied,
                O::Denied,
                send(Enrolment, Reg, after_denial),
                denied,
                Some("Denied"),
            ),
            // Approved meanwhile: register at once.
            (
                From::Denied,
                PENDING,
                send(Registration, Reg, T0),
                AgentPhase::Registering,
                None,
            ),
            (
                From::Enrolling,
                PENDING,
                send(Registration, Reg, T0),
                AgentPhase::Registering,
                None,
            ),
            (
                From::Enrolling,
                O::Enrolled {
                    already_approved: true,
                },
                send(Registration, Reg, T0),
                AgentPhase::Registering,
                None,
            ),
            (
                From::Enrolling,
                O::Unreachable,
                send(Enrolment, Reg, later),
                AgentPhase::Enrolling,
                Some("Unreachable"),
            ),
            (
                From::Enrolling,
                O::Failed { status: 500 },
                send(Enrolment, Reg, later),
                AgentPhase::Enrolling,
                Some("UnexpectedStatus 500"),
            ),
            (
                From::Enrolling,
                O::Unauthorized,
                send(Enrolment, Reg, later),
                AgentPhase::Enrolling,
                Some("UnexpectedStatus 401"),
            ),
            (
                From::Registering,
                O::NotApproved,
                send(Registration, Reg, later),
                awaiting,
                None,
            ),
            (
                From::Registering,
                O::Unauthorized,
                send(Enrolment, Reg, later),
                AgentPhase::Enrolling,
                Some("UnexpectedStatus 401"),
            ),
            (
                From::Registering,
                registered(garbage),
                send(Registration, Reg, later),
                AgentPhase::Registering,
                Some("Malformed"),
            ),
            (
                From::Registering,
                PENDING,
                send(Registration, Reg, later),
                AgentPhase::Registering,
                Some("UnexpectedStatus 200"),
            ),
            (
                From::AwaitingApproval,
                O::NotApproved,
                send(Registration, Reg, later),
                awaiting,
                None,
            ),
            (
                From::AwaitingApproval,
                O::Failed { status: 503 },
                send(Registration, Reg, later),
                awaiting,
                Some("UnexpectedStatus 503"),
            ),
            (
                From::Renewing,
                O::Unauthorized,
                send(Enrolment, Reg, T0),
                AgentPhase::Enrolling,
                Some("Refused 401"),
            ),
            (
                From::Renewing,
                O::NotApproved,
                send(Enrolment, Reg, T0),
                AgentPhase::Enrolling,
                Some("Refused 404"),
            ),
            (
                From::Renewing,
                O::Unreachable,
                send(Registration, Dev, later),
                AgentPhase::Renewing,
                Some("Unreachable"),
            ),
            (
                From::Running,
                O::Failed { status: 500 },
                run,
                AgentPhase::Running,
                None,
            ),
            (
                From::Running,
                O::Unreachable,
                run,
                AgentPhase::Running,
                None,
            ),
            (
                From::Running,
                registered(garbage),
                run,
                AgentPhase::Running,
                None,
            ),
        ];
        for (from, outcome, next, phase, error) in table {
            let row = format!("{from:?} + {outcome:?}");
            let mut m = machine_in(from, &held);
            assert_eq!(m.on_outcome(outcome, T0, u32::MAX), next, "{row}");
            assert_eq!(m.phase(), phase, "{row}");
            assert_eq!(error_of(&m).as_deref(), error, "{row}");
        }
    }

    #[test]
    fn outcomes_map_to_and_from_statuses() {
        use ExchangeOutcome as O;
        for (status, outcome) in [
            (404, O::NotApproved),
            (401, O::Unauthorized),
            (403, O::Failed { status: 403 }),
            (500, O::Failed { status: 500 }),
        ] {
            assert_eq!(O::from_status(status), outcome);
            assert_eq!(outcome.status(), Some(status));
        }
        assert_eq!(PENDING.status(), Some(200));
        assert_eq!(
            O::Enrolled {
                already_approved: true
            }
            .status(),
            Some(208)
        );
        assert_eq!(O::Unreachable.status(), None);
    }

    #[test]
    fn phases_have_one_name_each() {
        let phases = [
            (AgentPhase::Enrolling, "Enrolling"),
            (AgentPhase::Registering, "Registering"),
            (
                AgentPhase::AwaitingApproval { since: T0 },
                "AwaitingApproval",
            ),
            (AgentPhase::Running, "Running"),
            (AgentPhase::Renewing, "Renewing"),
        ];
        for (phase, name) in phases {
            assert_eq!(phase.as_str(), name);
            assert_eq!(phase.to_string(), name);
        }
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
        m.on_outcome(PENDING, T0, 7);
        m.on_outcome(ExchangeOutcome::NotApproved, T0, u32::MAX);
        assert_eq!(m.phase(), AgentPhase::AwaitingApproval { since: T0 });
        let pem = certificate(T0, Duration::days(90));
        let t1 = T0 + 3 * SECOND;
        // Renewal counts from receipt, not from the back-dated NotBefore.
        let renew_at = t1 + (Duration::days(90) - 3 * SECOND) * 2 / 3;
        assert_eq!(
            m.on_outcome(registered(&pem), t1, 0),
            NextAction::Run { renew_at }
        );
        assert_eq!(m.phase(), AgentPhase::Running);
        assert_eq!(m.certificate_pem(), Some(pem.as_str()));
        assert!(m.last_error().is_none());
    }

    #[test]
    fn a_short_lived_certificate_is_renewed_by_its_receipt_not_its_back_dated_start() {
        let pem = certificate(T0, 30 * SECOND);
        // Received now: due at two thirds of the thirty seconds left.
        let mut m = EnrolmentMachine::new(AgentConfig::default());
        m.start(T0);
        m.on_outcome(PENDING, T0, 0);
        assert_eq!(
            m.on_outcome(registered(&pem), T0, 0),
            NextAction::Run {
                renew_at: T0 + 20 * SECOND
            }
        );
        // The same certificate read back with its time of receipt.
        let mut resumed = EnrolmentMachine::with_certificate(AgentConfig::default(), &pem)
            .expect("cert")
            .received_at(T0);
        assert_eq!(
            resumed.start(T0 + 19 * SECOND),
            NextAction::Run {
                renew_at: T0 + 20 * SECOND
            }
        );
        // Without it, NotBefore (an hour back) counts: due at once.
        let mut unknown =
            EnrolmentMachine::with_certificate(AgentConfig::default(), &pem).expect("cert");
        assert_eq!(
            unknown.start(T0),
            send(Directive::Registration, Credential::DeviceCertificate, T0)
        );
    }

    #[test]
    fn unreachable_server_backs_off_to_the_cap_and_keeps_the_request() {
        let config = AgentConfig::default();
        let mut m = EnrolmentMachine::new(config);
        m.start(T0);
        let mut now = T0;
        let mut last_delay = Duration::ZERO;
        for _ in 0..20 {
            let NextAction::Send { request, at } =
                m.on_outcome(ExchangeOutcome::Unreachable, now, u32::MAX)
            else {
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
        // Recovery resets the backoff.
        m.on_outcome(PENDING, now, 0);
        assert_eq!(m.attempt(), 0);
    }

    #[test]
    fn approval_never_arriving_re_enrols_after_the_wait() {
        let config = AgentConfig {
            reenrol_after: Duration::minutes(30),
            ..AgentConfig::default()
        };
        let mut m = EnrolmentMachine::new(config);
        m.start(T0);
        m.on_outcome(PENDING, T0, 0);
        let mut now = T0;
        loop {
            let next = m.on_outcome(ExchangeOutcome::NotApproved, now, u32::MAX);
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
    fn renews_at_two_thirds_with_the_device_certificate() {
        let pem = certificate(T0, Duration::days(90));
        let mut m = EnrolmentMachine::with_certificate(AgentConfig::default(), &pem).expect("cert");
        let NextAction::Run { renew_at } = m.start(T0) else {
            panic!("expected run");
        };
        // Counted from NotBefore, an hour before issue.
        let expected = T0 - Duration::hours(1) + (Duration::days(90) + Duration::hours(1)) * 2 / 3;
        assert_eq!(renew_at, expected);
        assert_eq!(m.tick(renew_at - SECOND), NextAction::Run { renew_at });
        assert_eq!(
            m.tick(renew_at),
            send(
                Directive::Registration,
                Credential::DeviceCertificate,
                renew_at
            )
        );
        assert_eq!(m.phase(), AgentPhase::Renewing);
        let later = renew_at + SECOND;
        let new_pem = certificate(later, Duration::days(90));
        assert_eq!(
            m.on_outcome(registered(&new_pem), later, 0),
            NextAction::Run {
                renew_at: later + Duration::days(60)
            }
        );
        assert_eq!(m.phase(), AgentPhase::Running);
        assert_eq!(m.certificate_pem(), Some(new_pem.as_str()));
    }

    #[test]
    fn expired_while_offline_re_registers_with_the_expired_certificate() {
        let pem = certificate(T0, Duration::days(1));
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
    fn a_refused_renewal_forgets_the_certificate_and_enrols_again() {
        let pem = certificate(T0, Duration::days(90));
        let mut m = EnrolmentMachine::with_certificate(AgentConfig::default(), &pem).expect("cert");
        assert!(matches!(m.start(T0), NextAction::Run { .. }));
        assert_eq!(
            m.on_unauthorized(T0),
            send(Directive::Registration, Credential::DeviceCertificate, T0)
        );
        m.on_outcome(ExchangeOutcome::Unauthorized, T0, 0);
        assert!(m.certificate_pem().is_none());
        assert_eq!(m.phase(), AgentPhase::Enrolling);
    }
}
