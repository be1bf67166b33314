//! The server's side of the protocol: every status code of the Edge API, decided in
//! one place.
//!
//! A request is answered in two steps. [`authorise`] looks only at who the peer is,
//! the directive and the device in the path, so a request that may not go further is
//! refused before the server reads anything about the device. [`answer`] then looks
//! at what the server knows about the device ([`DeviceRecord`]) and says the status
//! and the [`Effect`] the server carries out. [`decide`] is both steps at once. When
//! carrying out the effect fails, [`Failure::status`] says the status. The expected
//! answers, for every kind of peer, are data in [`table::EDGE_TABLE`], which core's
//! unit test checks against [`decide`] and the server's integration test checks
//! against the real server over mTLS.

pub mod table;

use std::fmt;

use time::OffsetDateTime;

use super::Directive;
use crate::pki::{IdentityError, PeerIdentity, PeerVerifier, RevocationList, VerifiedPeer};

/// What the server knows about the device named in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceRecord {
    /// No such device and no signed request.
    Unknown,
    /// A signed request exists and is not approved yet.
    Pending,
    /// The signed request is approved and no `EdgeDevice` exists yet: the first
    /// registration (with the registration certificate) will create it.
    Approved,
    /// The signed request was denied by an operator (condition `declined`) and no
    /// `EdgeDevice` exists: enrolment and registration get 403 `EnrolmentDenied`.
    Denied,
    /// The `EdgeDevice` exists: the device registered. Only its own certificate
    /// may register it again (renewal); the registration certificate may not.
    Registered,
    /// The device is being deleted (its `EdgeDevice` has a deletion timestamp and
    /// finalizers pending).
    Deleted,
}

impl DeviceRecord {
    /// Every record, in the order of the table.
    pub const ALL: [Self; 6] = [
        Self::Unknown,
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::Registered,
        Self::Deleted,
    ];

    /// A short name for tables and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Registered => "registered",
            Self::Deleted => "deleted",
        }
    }
}

/// Whether enrolment requests are approved as they are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Approval {
    /// An operator approves each request (`EdgeDeviceSignedRequest.spec.approved`).
    #[default]
    Manual,
    /// The server approves every request it creates.
    Automatic,
}

/// The status codes of the Edge API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EdgeStatus {
    /// 200.
    Ok,
    /// 208: enrolment of an already approved device.
    AlreadyReported,
    /// 304: the configuration the device holds is the current one.
    NotModified,
    /// 400: bad input.
    BadRequest,
    /// 401: bad, expired, revoked or unknown certificate.
    Unauthorized,
    /// 403: the certificate may not act on this device or directive.
    Forbidden,
    /// 404: unknown or unapproved device.
    NotFound,
    /// 408: the request body did not arrive in time.
    RequestTimeout,
    /// 413: the request body is larger than the server accepts.
    PayloadTooLarge,
    /// 500: the server failed.
    InternalError,
    /// 503: the server failed in a way that retrying may cure.
    Unavailable,
}

impl EdgeStatus {
    /// The numeric HTTP status.
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::AlreadyReported => 208,
            Self::NotModified => 304,
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::RequestTimeout => 408,
            Self::PayloadTooLarge => 413,
            Self::InternalError => 500,
            Self::Unavailable => 503,
        }
    }

    /// Whether the status is a refusal or failure (4xx or 5xx).
    pub fn is_error(self) -> bool {
        self.code() >= 400
    }
}

/// What the server does besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Effect {
    /// Create an `EdgeDeviceSignedRequest` for the device (enrolment), approved at
    /// once when `approved`.
    CreateSignedRequest {
        /// Whether the request is created approved.
        approved: bool,
    },
    /// Verify the CSR in the body and sign it (registration or renewal).
    SignCsr,
    /// Record the heartbeat and stamp last-seen.
    RecordHeartbeat,
    /// Answer with the device's unfinished playbook executions (`ansible`).
    ServePlaybooks,
    /// Answer with the device's configuration, stamping last-seen when the poll
    /// arrives and again when a long-poll is answered ([`Effect::stamps_last_seen`]).
    ServeConfig,
    /// Answer with the device's pending control command.
    ServeControl,
    /// Answer with the `disconnect` command: the device no longer exists.
    Disconnect,
    /// Accept the device's reply to a control command.
    AcceptControlReply,
    /// Nothing beyond the status.
    None,
}

impl Effect {
    /// Whether carrying out this effect proves the device is alive, so the server
    /// stamps its last-seen time: a heartbeat, and a configuration poll (when it
    /// arrives, and when a long-poll is answered). A flotta-rs agent's pending
    /// long-poll thus carries its liveness between the heartbeats it sends only
    /// on change or after its longest silence; Flotta's agents, which heartbeat
    /// every period, are seen as before.
    pub fn stamps_last_seen(self) -> bool {
        matches!(self, Self::RecordHeartbeat | Self::ServeConfig)
    }
}

/// Why the answer is what it is; [`Decision::message`] turns it into the text sent
/// with a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The call is allowed.
    Allowed,
    /// The device is approved already: enrolment has nothing more to do.
    AlreadyApproved,
    /// The enrolment is recorded and waits for approval.
    AwaitingApproval,
    /// The certificate was refused (no certificate, unknown issuer, malformed,
    /// expired, not yet valid).
    CertificateRefused,
    /// The certificate is revoked: a renewal superseded it (a deleted device's
    /// revoked certificate is told the device does not exist instead).
    CertificateRevoked,
    /// The registration certificate may only enrol and register.
    RegistrationCertificateScope,
    /// The device certificate names another device than the path.
    OtherDevice,
    /// The path's device id is not a valid device id.
    InvalidDeviceId,
    /// The directive is missing, malformed or not one the endpoint serves.
    UnknownDirective,
    /// The device has neither enrolled nor been created.
    NotEnrolled,
    /// The device a device certificate names does not exist (any more).
    NoSuchDevice,
    /// The device's enrolment is not approved yet.
    NotApproved,
    /// The device is being deleted.
    DeviceDeleted,
    /// An operator denied the device's enrolment.
    EnrolmentDenied,
    /// The device registered already: only its own certificate may register it
    /// again. A device that lost its identity is deleted (or its old record
    /// removed) by an operator and enrols anew.
    AlreadyRegistered,
    /// The CSR was refused by the policy ([`Failure::CsrRefused`]).
    CsrRefused,
}

/// The server's answer to one Edge API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Status to answer with.
    pub status: EdgeStatus,
    /// What to do.
    pub effect: Effect,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    const fn new(status: EdgeStatus, effect: Effect, reason: Reason) -> Self {
        Self {
            status,
            effect,
            reason,
        }
    }

    const fn allow(effect: Effect) -> Self {
        Self::new(EdgeStatus::Ok, effect, Reason::Allowed)
    }

    const fn refuse(status: EdgeStatus, reason: Reason) -> Self {
        Self::new(status, Effect::None, reason)
    }

    /// The answer when [`Effect::SignCsr`] finds the CSR refused by the policy
    /// (the status of [`Failure::CsrRefused`]).
    pub const CSR_REFUSED: Self = Self::refuse(EdgeStatus::BadRequest, Reason::CsrRefused);

    /// The text sent with a refusal, saying why; `peer` and `path_device_id` are
    /// what [`decide`] was given.
    pub fn message(
        &self,
        peer: Result<&PeerIdentity, &IdentityError>,
        path_device_id: &str,
    ) -> String {
        match (self.reason, peer) {
            (Reason::CertificateRefused | Reason::CertificateRevoked, Err(error)) => {
                format!("certificate refused: {error}")
            }
            (Reason::OtherDevice, Ok(PeerIdentity::Device { id, .. })) => {
                format!("the certificate is for device {id:?}, not {path_device_id:?}")
            }
            (Reason::InvalidDeviceId, _) => {
                let problem = crate::pki::dns_subdomain_problem(path_device_id)
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                format!("device id {path_device_id:?} is not valid: {problem}")
            }
            (Reason::NotEnrolled, _) => format!("device {path_device_id} has not enrolled"),
            (Reason::NoSuchDevice, Ok(PeerIdentity::Device { namespace, .. })) => {
                format!("device {namespace}/{path_device_id} does not exist")
            }
            (Reason::NotApproved, _) => {
                format!("the enrolment of device {path_device_id} is not approved")
            }
            (Reason::DeviceDeleted, _) => format!("device {path_device_id} is being deleted"),
            (Reason::EnrolmentDenied, _) => format!(
                "an operator denied the enrolment of device {path_device_id}; it may ask \
                 again later, and is let in only once an operator approves it"
            ),
            (Reason::AlreadyRegistered, _) => format!(
                "device {path_device_id} is registered already: it renews with its own \
                 certificate; a device that lost its identity is deleted by an operator \
                 and enrols again"
            ),
            (reason, _) => reason.to_string(),
        }
    }
}

impl Reason {
    /// The machine-readable name sent as `reason` in an error body, e.g.
    /// `CertificateRevoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "Allowed",
            Self::AlreadyApproved => "AlreadyApproved",
            Self::AwaitingApproval => "AwaitingApproval",
            Self::CertificateRefused => "CertificateRefused",
            Self::CertificateRevoked => "CertificateRevoked",
            Self::RegistrationCertificateScope => "RegistrationCertificateScope",
            Self::OtherDevice => "OtherDevice",
            Self::InvalidDeviceId => "InvalidDeviceId",
            Self::UnknownDirective => "UnknownDirective",
            Self::NotEnrolled => "NotEnrolled",
            Self::NoSuchDevice => "NoSuchDevice",
            Self::NotApproved => "NotApproved",
            Self::DeviceDeleted => "DeviceDeleted",
            Self::AlreadyRegistered => "AlreadyRegistered",
            Self::EnrolmentDenied => "EnrolmentDenied",
            Self::CsrRefused => "CsrRefused",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allowed => "allowed",
            Self::AlreadyApproved => "the device is already approved",
            Self::AwaitingApproval => "the enrolment waits for approval",
            Self::CertificateRefused => "certificate refused",
            Self::CertificateRevoked => {
                "certificate revoked: a newer certificate of the device replaced it"
            }
            Self::RegistrationCertificateScope => {
                "the registration certificate may only be used for enrolment and registration"
            }
            Self::OtherDevice => "the certificate is for another device",
            Self::InvalidDeviceId => "the device id is not valid",
            Self::UnknownDirective => {
                "the directive is missing or not one this endpoint serves \
                 (enrolment, registration, heartbeat)"
            }
            Self::NotEnrolled => "the device has not enrolled",
            Self::NoSuchDevice => "the device does not exist",
            Self::NotApproved => "the enrolment is not approved",
            Self::DeviceDeleted => "the device is being deleted",
            Self::EnrolmentDenied => "an operator denied the enrolment",
            Self::AlreadyRegistered => {
                "the device is registered already: only its own certificate may register it again"
            }
            Self::CsrRefused => "the certificate signing request was refused",
        })
    }
}

/// Why carrying out a decision's effect failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// The request body is larger than the server accepts.
    BodyTooLarge,
    /// The request body did not arrive in time.
    BodyTooSlow,
    /// The message content is not what the directive calls for.
    BadContent,
    /// The CSR was refused by the policy.
    CsrRefused,
    /// The device disappeared while the effect was carried out.
    DeviceGone,
    /// Storage failed in a way that retrying may cure.
    Busy,
    /// Storage or signing failed.
    Internal,
}

impl Failure {
    /// The machine-readable name sent as `reason` in an error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "BodyTooLarge",
            Self::BodyTooSlow => "BodyTooSlow",
            Self::BadContent => "BadContent",
            Self::CsrRefused => "CsrRefused",
            Self::DeviceGone => "NoSuchDevice",
            Self::Busy => "Busy",
            Self::Internal => "Internal",
        }
    }

    /// The status to answer with.
    pub fn status(self) -> EdgeStatus {
        match self {
            Self::BodyTooLarge => EdgeStatus::PayloadTooLarge,
            Self::BodyTooSlow => EdgeStatus::RequestTimeout,
            Self::BadContent | Self::CsrRefused => EdgeStatus::BadRequest,
            Self::DeviceGone => EdgeStatus::NotFound,
            Self::Busy => EdgeStatus::Unavailable,
            Self::Internal => EdgeStatus::InternalError,
        }
    }
}

/// The status of a configuration answer: 304 when the device holds the current
/// version, else 200.
pub fn config_status(device_holds_current: bool) -> EdgeStatus {
    if device_holds_current {
        EdgeStatus::NotModified
    } else {
        EdgeStatus::Ok
    }
}

/// Authenticates the peer for `directive`: expired device certificates pass for
/// `registration` only. `None` (an unknown directive) authenticates as strictly as
/// any request.
pub fn authenticate<C: AsRef<[u8]>>(
    verifier: &PeerVerifier,
    chain: &[C],
    revoked: &RevocationList,
    now: OffsetDateTime,
    directive: Option<Directive>,
) -> Result<PeerIdentity, IdentityError> {
    verifier
        .verify_peer(chain)
        .and_then(|peer| authenticate_verified(&peer, revoked, now, directive))
}

/// [`authenticate`] for a peer whose chain was verified already (once per
/// connection): checks revocation and time for `directive`.
pub fn authenticate_verified(
    peer: &VerifiedPeer,
    revoked: &RevocationList,
    now: OffsetDateTime,
    directive: Option<Directive>,
) -> Result<PeerIdentity, IdentityError> {
    peer.check(
        revoked,
        now,
        directive.map_or(crate::pki::Purpose::Request, Directive::purpose),
    )
}

/// Who may go on to [`answer`], as [`authorise`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller<'a> {
    /// The fleet-wide registration certificate, enrolling or registering.
    Register {
        /// What it asks for: [`Directive::Enrolment`] or [`Directive::Registration`].
        directive: Directive,
    },
    /// The device of the path, with its own certificate.
    Device {
        /// What it asks for.
        directive: Directive,
        /// The namespace its certificate names.
        namespace: &'a str,
    },
    /// The device of the path, with one of its certificates that is revoked: the
    /// answer depends on whether the device still exists (a renewal superseded
    /// the certificate) or not (the device was deleted).
    Revoked {
        /// What it asks for.
        directive: Directive,
        /// The namespace its certificate names.
        namespace: &'a str,
    },
}

impl Caller<'_> {
    /// What the caller asks for.
    pub fn directive(&self) -> Directive {
        match self {
            Self::Register { directive }
            | Self::Device { directive, .. }
            | Self::Revoked { directive, .. } => *directive,
        }
    }
}

/// The first step of [`decide`]: who the peer is, for which directive, on which
/// device. Refuses (401, 403, 400, in this order) without looking at any stored
/// record, so that nothing about a device is read for a caller that may not ask.
///
/// `peer` is the outcome of [`authenticate`]; `directive` is `None` when the request
/// names a directive we do not serve or its envelope is malformed; `path_device_id`
/// is the `{device_id}` of the URL.
pub fn authorise<'a>(
    peer: Result<&'a PeerIdentity, &'a IdentityError>,
    directive: Option<Directive>,
    path_device_id: &str,
) -> Result<Caller<'a>, Decision> {
    let peer = match peer {
        Ok(peer) => peer,
        Err(error) => {
            // The path's device with a revoked certificate of its own, asking for
            // a directive we serve: whether it still exists says the answer.
            if let IdentityError::Revoked {
                identity: PeerIdentity::Device { id, namespace },
                ..
            } = error
                && id == path_device_id
                && let Some(directive) = directive
            {
                return Ok(Caller::Revoked {
                    directive,
                    namespace,
                });
            }
            let reason = match error {
                IdentityError::Revoked { .. } => Reason::CertificateRevoked,
                _ => Reason::CertificateRefused,
            };
            return Err(Decision::refuse(EdgeStatus::Unauthorized, reason));
        }
    };
    let caller = match peer {
        // Authorisation comes before parsing: whatever a registration certificate
        // sends that is not an enrolment or a registration is forbidden, whether
        // or not it is a directive we know.
        PeerIdentity::Register => match directive {
            Some(directive @ (Directive::Enrolment | Directive::Registration)) => {
                Caller::Register { directive }
            }
            _ => {
                return Err(Decision::refuse(
                    EdgeStatus::Forbidden,
                    Reason::RegistrationCertificateScope,
                ));
            }
        },
        PeerIdentity::Device { id, .. } if id != path_device_id => {
            return Err(Decision::refuse(EdgeStatus::Forbidden, Reason::OtherDevice));
        }
        PeerIdentity::Device { namespace, .. } => match directive {
            Some(directive) => Caller::Device {
                directive,
                namespace,
            },
            None => {
                return Err(Decision::refuse(
                    EdgeStatus::BadRequest,
                    Reason::UnknownDirective,
                ));
            }
        },
    };
    // A device certificate's id is valid (it was checked when it was read), so this
    // can only refuse what a registration certificate asks for.
    if crate::pki::dns_subdomain_problem(path_device_id).is_some() {
        return Err(Decision::refuse(
            EdgeStatus::BadRequest,
            Reason::InvalidDeviceId,
        ));
    }
    Ok(caller)
}

/// The second step of [`decide`]: the answer to an authorised `caller`, given what
/// the server knows about the device and how it approves enrolments.
pub fn answer(caller: Caller<'_>, record: DeviceRecord, approval: Approval) -> Decision {
    use DeviceRecord as R;
    use Directive as D;
    let device_caller = matches!(caller, Caller::Device { .. });
    let not_there = |record: DeviceRecord| {
        let reason = match record {
            R::Pending => Reason::NotApproved,
            R::Deleted => Reason::DeviceDeleted,
            _ if device_caller => Reason::NoSuchDevice,
            _ => Reason::NotEnrolled,
        };
        Decision::refuse(EdgeStatus::NotFound, reason)
    };
    let already = Decision::new(
        EdgeStatus::AlreadyReported,
        Effect::None,
        Reason::AlreadyApproved,
    );
    let awaiting = Decision::new(EdgeStatus::Ok, Effect::None, Reason::AwaitingApproval);
    match caller {
        Caller::Register { directive } => match (directive, record) {
            (D::Enrolment, R::Unknown) => match approval {
                Approval::Manual => Decision::new(
                    EdgeStatus::Ok,
                    Effect::CreateSignedRequest { approved: false },
                    Reason::AwaitingApproval,
                ),
                Approval::Automatic => Decision::new(
                    EdgeStatus::AlreadyReported,
                    Effect::CreateSignedRequest { approved: true },
                    Reason::AlreadyApproved,
                ),
            },
            (D::Enrolment, R::Pending) => awaiting,
            (D::Enrolment, R::Approved | R::Registered) => already,
            (D::Enrolment | D::Registration, R::Denied) => {
                Decision::refuse(EdgeStatus::Forbidden, Reason::EnrolmentDenied)
            }
            (D::Registration, R::Approved) => Decision::allow(Effect::SignCsr),
            // The fleet-wide certificate is on every device image: were it to
            // register a device that exists, one extracted key would impersonate
            // the whole fleet.
            (D::Registration, R::Registered) => {
                Decision::refuse(EdgeStatus::Forbidden, Reason::AlreadyRegistered)
            }
            (_, record) => not_there(record),
        },
        Caller::Device { directive, .. } => match (directive, record) {
            (D::Enrolment, R::Approved | R::Registered) => already,
            (D::Enrolment, R::Pending) => awaiting,
            // Renewal: only a registered device, with its own certificate (expired
            // ones included, so a device that was offline past its expiry comes
            // back).
            (D::Registration, R::Registered) => Decision::allow(Effect::SignCsr),
            // A device being deleted still exists until its finalizers are done:
            // it keeps reporting, reading its configuration and replying to the
            // `disconnect` it is told, but gets no new certificate.
            (D::Heartbeat, R::Registered | R::Deleted) => Decision::allow(Effect::RecordHeartbeat),
            (D::Device, R::Registered | R::Deleted) => Decision::allow(Effect::ServeConfig),
            // A device being deleted is sent none (see `crate::ansible`).
            (D::Ansible, R::Registered | R::Deleted) => Decision::allow(Effect::ServePlaybooks),
            (D::Control, R::Registered) => Decision::allow(Effect::ServeControl),
            // The device is gone or going, and its certificate not revoked yet: tell
            // it to remove itself. Once revoked, it gets 401 like everywhere else.
            (D::Control, _) => Decision::allow(Effect::Disconnect),
            (D::ControlReply, R::Registered | R::Deleted) => {
                Decision::allow(Effect::AcceptControlReply)
            }
            (_, record) => not_there(record),
        },
        Caller::Revoked { directive, .. } => match (directive, record) {
            // The device lives on with a newer certificate: this one was
            // superseded by a renewal and is refused like any revoked one.
            (D::Control, R::Registered) => {
                Decision::refuse(EdgeStatus::Unauthorized, Reason::CertificateRevoked)
            }
            // The device is gone or going: keep telling it to remove itself (our
            // agent and Flotta's both act on `disconnect`; Flotta's takes a 401
            // as "register again").
            (D::Control, _) => Decision::allow(Effect::Disconnect),
            // The device still exists (being deleted included): nothing is
            // recorded or served for a revoked certificate.
            (_, R::Registered | R::Deleted) => {
                Decision::refuse(EdgeStatus::Unauthorized, Reason::CertificateRevoked)
            }
            // The device was deleted: answer as Flotta does for a device it does
            // not know.
            _ => Decision::refuse(EdgeStatus::NotFound, Reason::NoSuchDevice),
        },
    }
}

/// A command the server serves a registered device on the control channel
/// ([`Effect::ServeControl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ControlCommand {
    /// Renew the device certificate now (`renew-certificate`).
    RenewCertificate,
}

/// The command pending for a registered device that called with `peer`: while a
/// CA rotation retires the CA its certificate chains to, renew at once (the new
/// certificate comes from the new CA); otherwise none.
pub fn pending_command(peer: &VerifiedPeer) -> Option<ControlCommand> {
    peer.issued_by_retiring_ca()
        .then_some(ControlCommand::RenewCertificate)
}

/// Response header by which a configuration poll tells a flotta-rs agent that a
/// control command waits ([`pending_command`]), so that the agent reads the control
/// channel when told rather than on a timer. Its value is `pending`.
pub const CONTROL_PENDING_HEADER: &str = "flotta-control";

/// Response header by which a configuration poll asks a flotta-rs agent for a
/// heartbeat now, whatever its report
/// ([`ServedConfig::wants_report`](crate::reconcile::ServedConfig::wants_report)).
/// Its value is `wanted`.
pub const REPORT_WANTED_HEADER: &str = "flotta-report";

/// Decides the answer to an Edge API call: [`authorise`], then [`answer`].
///
/// `peer` is the outcome of [`authenticate`]; `directive` is `None` when the request
/// names a directive we do not serve or its envelope is malformed; `path_device_id`
/// is the `{device_id}` of the URL; `record` is what the store says about that
/// device; `approval` is how the server approves enrolments.
pub fn decide(
    peer: Result<&PeerIdentity, &IdentityError>,
    directive: Option<Directive>,
    path_device_id: &str,
    record: DeviceRecord,
    approval: Approval,
) -> Decision {
    match authorise(peer, directive, path_device_id) {
        Ok(caller) => answer(caller, record, approval),
        Err(refusal) => refusal,
    }
}
