//! The Edge API's answers as data: for every call, every state of the device and
//! every kind of client certificate, the status and the effect.
//!
//! Core's unit test checks [`decide`](super::decide) against [`EDGE_TABLE`] with
//! real certificates; the server's integration test sends the same calls with the
//! same kinds of certificates over mTLS to a real server and checks the same rows.
//! `docs/security.md` shows [`markdown`]'s rendering of it.

use super::{Approval, DeviceRecord, EdgeStatus, Effect};
use crate::enrolment::Directive;

/// The kinds of client certificate a request can come with, as the tables list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerKind {
    /// No client certificate.
    NoCertificate,
    /// A device certificate signed by a CA the server does not trust.
    ForeignCa,
    /// The fleet-wide registration certificate (CN `register`).
    RegistrationCertificate,
    /// The path device's certificate, signed by the fleet CA, expired.
    ExpiredDevice,
    /// The path device's certificate, signed by the fleet CA, revoked.
    RevokedDevice,
    /// A valid certificate of another device.
    OtherDevice,
    /// The path device's valid certificate.
    Device,
}

impl PeerKind {
    /// Every kind, in the order of [`EdgeRow::answers`].
    pub const ALL: [Self; 7] = [
        Self::NoCertificate,
        Self::ForeignCa,
        Self::RegistrationCertificate,
        Self::ExpiredDevice,
        Self::RevokedDevice,
        Self::OtherDevice,
        Self::Device,
    ];

    /// The column heading.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCertificate => "no certificate",
            Self::ForeignCa => "foreign CA",
            Self::RegistrationCertificate => "registration certificate",
            Self::ExpiredDevice => "expired device certificate",
            Self::RevokedDevice => "revoked device certificate",
            Self::OtherDevice => "another device's certificate",
            Self::Device => "valid device certificate",
        }
    }
}

/// The HTTP method and path (under the Edge API base path, `{id}` for the device)
/// a directive is sent with; `None` is an unknown directive, posted to
/// `/data/{id}/out`.
pub fn endpoint(directive: Option<Directive>) -> (&'static str, &'static str) {
    match directive {
        Some(Directive::Device) => ("GET", "/data/{id}/in"),
        Some(Directive::Control) => ("GET", "/control/{id}/in"),
        Some(Directive::ControlReply) => ("POST", "/control/{id}/out"),
        _ => ("POST", "/data/{id}/out"),
    }
}

/// A directive as the tables name it: `(unknown)` for `None`, `-` for the control
/// endpoints, which carry none.
pub fn directive_label(directive: Option<Directive>) -> &'static str {
    match directive {
        None => "(unknown)",
        Some(Directive::Control | Directive::ControlReply) => "-",
        Some(directive) => directive.as_str(),
    }
}

/// An expected answer: the status and the effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expected {
    /// The status.
    pub status: EdgeStatus,
    /// The effect.
    pub effect: Effect,
}

impl Expected {
    const fn new(status: EdgeStatus, effect: Effect) -> Self {
        Self { status, effect }
    }
}

/// One row: a call on a device in one state, answered for each [`PeerKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeRow {
    /// The directive; `None` for one the server does not serve.
    pub directive: Option<Directive>,
    /// What the server knows about the path's device.
    pub record: DeviceRecord,
    /// The approval policy the row holds under; `None`: under either.
    pub approval: Option<Approval>,
    /// The answers, in the order of [`PeerKind::ALL`].
    pub answers: [Expected; 7],
}

impl EdgeRow {
    /// The answer to `peer`.
    pub fn answer(&self, peer: PeerKind) -> Expected {
        let index = PeerKind::ALL
            .iter()
            .position(|p| *p == peer)
            .unwrap_or_default();
        self.answers[index]
    }

    /// Whether the row holds under `approval`.
    pub fn holds_under(&self, approval: Approval) -> bool {
        self.approval.is_none_or(|a| a == approval)
    }
}

const U: Expected = Expected::new(EdgeStatus::Unauthorized, Effect::None);
const F: Expected = Expected::new(EdgeStatus::Forbidden, Effect::None);
const NF: Expected = Expected::new(EdgeStatus::NotFound, Effect::None);
const BAD: Expected = Expected::new(EdgeStatus::BadRequest, Effect::None);
const WAIT: Expected = Expected::new(EdgeStatus::Ok, Effect::None);
const DONE: Expected = Expected::new(EdgeStatus::AlreadyReported, Effect::None);
const DENY: Expected = Expected::new(EdgeStatus::Forbidden, Effect::None);
const ENROL: Expected = Expected::new(
    EdgeStatus::Ok,
    Effect::CreateSignedRequest { approved: false },
);
const ENROL_APPROVED: Expected = Expected::new(
    EdgeStatus::AlreadyReported,
    Effect::CreateSignedRequest { approved: true },
);
const SIGN: Expected = Expected::new(EdgeStatus::Ok, Effect::SignCsr);
const BEAT: Expected = Expected::new(EdgeStatus::Ok, Effect::RecordHeartbeat);
const CONFIG: Expected = Expected::new(EdgeStatus::Ok, Effect::ServeConfig);
const PLAYBOOKS: Expected = Expected::new(EdgeStatus::Ok, Effect::ServePlaybooks);
const CONTROL: Expected = Expected::new(EdgeStatus::Ok, Effect::ServeControl);
const GONE: Expected = Expected::new(EdgeStatus::Ok, Effect::Disconnect);
const ACK: Expected = Expected::new(EdgeStatus::Ok, Effect::AcceptControlReply);

const fn row(
    directive: Option<Directive>,
    record: DeviceRecord,
    approval: Option<Approval>,
    answers: [Expected; 7],
) -> EdgeRow {
    EdgeRow {
        directive,
        record,
        approval,
        answers,
    }
}

use Approval::{Automatic, Manual};
use DeviceRecord::{Approved, Deleted, Denied, Pending, Registered, Unknown};
const ENROLMENT: Option<Directive> = Some(Directive::Enrolment);
const REGISTRATION: Option<Directive> = Some(Directive::Registration);
const HEARTBEAT: Option<Directive> = Some(Directive::Heartbeat);
const ANSIBLE: Option<Directive> = Some(Directive::Ansible);
const DEVICE: Option<Directive> = Some(Directive::Device);
const CONTROL_IN: Option<Directive> = Some(Directive::Control);
const CONTROL_OUT: Option<Directive> = Some(Directive::ControlReply);

/// Every answer of the Edge API. Columns: no certificate, foreign CA, registration
/// certificate, expired device certificate, revoked device certificate, another
/// device's certificate, valid device certificate (the path's device).
///
/// An approved device has an approved signed request and no `EdgeDevice` yet; a
/// registered one has its `EdgeDevice`. Only the registration certificate registers
/// an approved device (the first time); only the device's own certificate registers
/// a registered one (renewal).
///
/// A deleted device is one whose `EdgeDevice` is being deleted (finalizers
/// pending): it keeps reporting and reading its configuration, is told to
/// `disconnect` and may reply, but gets no new certificate, and its id cannot be
/// enrolled again until it is gone.
///
/// A revoked certificate of the path's device is refused (401) while the device
/// exists: a renewal superseded it, or the device is being deleted. The control
/// channel tells it `disconnect` as soon as the device is going; once the device
/// is gone the data routes answer 404, as Flotta answers a device it does not
/// know, so that Flotta's agent, which takes a 401 as "register again", removes
/// itself instead.
#[rustfmt::skip]
pub const EDGE_TABLE: &[EdgeRow] = &[
    //                                        none foreign register expired revoked other device
    row(ENROLMENT, Unknown, Some(Manual),    [U, U, ENROL,          U,    NF, F, NF]),
    row(ENROLMENT, Unknown, Some(Automatic), [U, U, ENROL_APPROVED, U,    NF, F, NF]),
    row(ENROLMENT, Pending, None,            [U, U, WAIT,           U,    NF, F, WAIT]),
    row(ENROLMENT, Approved, None,           [U, U, DONE,           U,    NF, F, DONE]),
    row(ENROLMENT, Denied, None,             [U, U, DENY,           U,    NF, F, NF]),
    row(ENROLMENT, Registered, None,         [U, U, DONE,           U,    U, F, DONE]),
    row(ENROLMENT, Deleted, None,            [U, U, NF,             U,    U , F, NF]),
    row(REGISTRATION, Unknown, None,         [U, U, NF,             NF,   NF, F, NF]),
    row(REGISTRATION, Pending, None,         [U, U, NF,             NF,   NF, F, NF]),
    row(REGISTRATION, Approved, None,        [U, U, SIGN,           NF,   NF, F, NF]),
    row(REGISTRATION, Denied, None,          [U, U, DENY,           NF,   NF, F, NF]),
    row(REGISTRATION, Registered, None,      [U, U, F,              SIGN, U, F, SIGN]),
    row(REGISTRATION, Deleted, None,         [U, U, NF,             NF,   U , F, NF]),
    row(HEARTBEAT, Unknown, None,            [U, U, F,              U,    NF, F, NF]),
    row(HEARTBEAT, Pending, None,            [U, U, F,              U,    NF, F, NF]),
    row(HEARTBEAT, Approved, None,           [U, U, F,              U,    NF, F, NF]),
    row(HEARTBEAT, Denied, None,             [U, U, F,              U,    NF, F, NF]),
    row(HEARTBEAT, Registered, None,         [U, U, F,              U,    U, F, BEAT]),
    row(HEARTBEAT, Deleted, None,            [U, U, F,              U,    U , F, BEAT]),
    row(ANSIBLE, Unknown, None,              [U, U, F,              U,    NF, F, NF]),
    row(ANSIBLE, Pending, None,              [U, U, F,              U,    NF, F, NF]),
    row(ANSIBLE, Approved, None,             [U, U, F,              U,    NF, F, NF]),
    row(ANSIBLE, Denied, None,               [U, U, F,              U,    NF, F, NF]),
    row(ANSIBLE, Registered, None,           [U, U, F,              U,    U, F, PLAYBOOKS]),
    row(ANSIBLE, Deleted, None,              [U, U, F,              U,    U , F, PLAYBOOKS]),
    row(None, Unknown, None,                 [U, U, F,              U,    U, F, BAD]),
    row(None, Pending, None,                 [U, U, F,              U,    U, F, BAD]),
    row(None, Approved, None,                [U, U, F,              U,    U, F, BAD]),
    row(None, Denied, None,                  [U, U, F,              U,    U, F, BAD]),
    row(None, Registered, None,              [U, U, F,              U,    U, F, BAD]),
    row(None, Deleted, None,                 [U, U, F,              U,    U, F, BAD]),
    row(DEVICE, Unknown, None,               [U, U, F,              U,    NF, F, NF]),
    row(DEVICE, Pending, None,               [U, U, F,              U,    NF, F, NF]),
    row(DEVICE, Approved, None,              [U, U, F,              U,    NF, F, NF]),
    row(DEVICE, Denied, None,                [U, U, F,              U,    NF, F, NF]),
    row(DEVICE, Registered, None,            [U, U, F,              U,    U, F, CONFIG]),
    row(DEVICE, Deleted, None,               [U, U, F,              U,    U , F, CONFIG]),
    row(CONTROL_IN, Unknown, None,           [U, U, F,              U,    GONE, F, GONE]),
    row(CONTROL_IN, Pending, None,           [U, U, F,              U,    GONE, F, GONE]),
    row(CONTROL_IN, Approved, None,          [U, U, F,              U,    GONE, F, GONE]),
    row(CONTROL_IN, Denied, None,            [U, U, F,              U,    GONE, F, GONE]),
    row(CONTROL_IN, Registered, None,        [U, U, F,              U,    U, F, CONTROL]),
    row(CONTROL_IN, Deleted, None,           [U, U, F,              U,    GONE, F, GONE]),
    row(CONTROL_OUT, Unknown, None,          [U, U, F,              U,    NF, F, NF]),
    row(CONTROL_OUT, Pending, None,          [U, U, F,              U,    NF, F, NF]),
    row(CONTROL_OUT, Approved, None,         [U, U, F,              U,    NF, F, NF]),
    row(CONTROL_OUT, Denied, None,           [U, U, F,              U,    NF, F, NF]),
    row(CONTROL_OUT, Registered, None,       [U, U, F,              U,    U, F, ACK]),
    row(CONTROL_OUT, Deleted, None,          [U, U, F,              U,    U , F, ACK]),
];

/// The rows that hold under `approval`.
pub fn rows(approval: Approval) -> impl Iterator<Item = &'static EdgeRow> {
    EDGE_TABLE
        .iter()
        .filter(move |row| row.holds_under(approval))
}

/// A Markdown table of the statuses of the rows that hold under `approval`, one
/// line per call and device state, one column per [`PeerKind`].
pub fn markdown(approval: Approval) -> String {
    let mut header = vec!["method", "path", "directive", "device"];
    header.extend(PeerKind::ALL.iter().map(|p| p.as_str()));
    let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
    let header: Vec<String> = header.into_iter().map(str::to_owned).collect();
    let mut lines = vec![line(&header), line(&vec!["---".to_owned(); header.len()])];
    for row in rows(approval) {
        let (method, path) = endpoint(row.directive);
        let mut cells = vec![
            method.to_owned(),
            format!("`{path}`"),
            directive_label(row.directive).to_owned(),
            row.record.as_str().to_owned(),
        ];
        cells.extend(row.answers.iter().map(|a| a.status.code().to_string()));
        lines.push(line(&cells));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrolment::{authenticate, decide};
    use crate::pki::{
        BuiltinCa, CertificateProfile, DeviceIdentity, DeviceKey, PeerCertificate, PeerVerifier,
        RevocationList, issue_registration_certificate,
    };
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
    const PATH_DEVICE: &str = "edge-1";

    fn device_certificate(
        ca: &BuiltinCa,
        id: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Vec<u8> {
        let key = DeviceKey::generate().expect("key");
        let device = DeviceIdentity::new(id, "default").expect("device");
        let profile = CertificateProfile::device(&device, not_before, not_after).expect("profile");
        ca.issue_now(&key.public_key_der(), &profile)
            .expect("issue")
            .der()
            .to_vec()
    }

    /// A certificate chain (DER, end entity first) of each kind.
    type Chains = Vec<(PeerKind, Vec<Vec<u8>>)>;

    /// A certificate chain of each kind, and the revocation list revoking one.
    fn peers() -> (PeerVerifier, RevocationList, Chains) {
        let ca = BuiltinCa::generate("fleet CA", NOW - Duration::days(10)).expect("ca");
        let foreign = BuiltinCa::generate("foreign CA", NOW - Duration::days(10)).expect("ca");
        let verifier = PeerVerifier::from_authority(&ca).expect("verifier");
        let valid = |ca: &BuiltinCa, id: &str| {
            device_certificate(ca, id, NOW - Duration::hours(1), NOW + Duration::days(1))
        };
        let registration = futures::executor::block_on(issue_registration_certificate(
            &ca,
            NOW,
            Duration::days(365),
        ))
        .expect("registration certificate")
        .certificate
        .der()
        .to_vec();
        let revoked = valid(&ca, PATH_DEVICE);
        let mut list = RevocationList::new();
        list.revoke(PeerCertificate::parse(&revoked).expect("parse").serial);
        let chains = vec![
            (PeerKind::NoCertificate, vec![]),
            (PeerKind::ForeignCa, vec![valid(&foreign, PATH_DEVICE)]),
            (PeerKind::RegistrationCertificate, vec![registration]),
            (
                PeerKind::ExpiredDevice,
                vec![device_certificate(
                    &ca,
                    PATH_DEVICE,
                    NOW - Duration::days(3),
                    NOW - Duration::days(1),
                )],
            ),
            (PeerKind::RevokedDevice, vec![revoked]),
            (PeerKind::OtherDevice, vec![valid(&ca, "edge-2")]),
            (PeerKind::Device, vec![valid(&ca, PATH_DEVICE)]),
        ];
        (verifier, list, chains)
    }

    /// The authoritative table test: every row, every kind of certificate, through
    /// the same `authenticate` and `decide` the server calls.
    #[test]
    fn decide_answers_as_the_edge_table_says() {
        let (verifier, revoked, chains) = peers();
        assert_eq!(
            chains.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            PeerKind::ALL
        );
        let mut mismatches = Vec::new();
        for approval in [Approval::Manual, Approval::Automatic] {
            for row in rows(approval) {
                for (kind, chain) in &chains {
                    let peer = authenticate(&verifier, chain, &revoked, NOW, row.directive);
                    let decision = decide(
                        peer.as_ref(),
                        row.directive,
                        PATH_DEVICE,
                        row.record,
                        approval,
                    );
                    let got = Expected::new(decision.status, decision.effect);
                    if got != row.answer(*kind) {
                        mismatches.push(format!(
                            "{:?} {:?} {:?} as {}: expected {:?}, got {got:?}",
                            row.directive,
                            row.record,
                            approval,
                            kind.as_str(),
                            row.answer(*kind)
                        ));
                    }
                    if decision.status.is_error() {
                        let message = decision.message(peer.as_ref(), PATH_DEVICE);
                        assert!(!message.is_empty(), "{row:?} {kind:?}");
                    }
                }
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    #[test]
    fn the_table_covers_every_call_state_and_policy_once() {
        let directives = [
            None,
            ENROLMENT,
            REGISTRATION,
            HEARTBEAT,
            DEVICE,
            CONTROL_IN,
            CONTROL_OUT,
        ];
        for approval in [Approval::Manual, Approval::Automatic] {
            for directive in directives {
                for record in DeviceRecord::ALL {
                    let count = rows(approval)
                        .filter(|r| r.directive == directive && r.record == record)
                        .count();
                    assert_eq!(count, 1, "{directive:?} {record:?} {approval:?}");
                }
            }
        }
    }

    #[test]
    fn refusals_say_why() {
        let (verifier, revoked, chains) = peers();
        let message = |kind: PeerKind, directive: Option<Directive>, path: &str| {
            let chain = &chains.iter().find(|(k, _)| *k == kind).expect("kind").1;
            let peer = authenticate(&verifier, chain, &revoked, NOW, directive);
            decide(
                peer.as_ref(),
                directive,
                path,
                DeviceRecord::Pending,
                Approval::Manual,
            )
            .message(peer.as_ref(), path)
        };
        assert!(message(PeerKind::RevokedDevice, None, PATH_DEVICE).contains("revoked"));
        // A revoked certificate of a device that lives on was superseded: 401 with
        // why; one of a deleted device is told it does not exist.
        let chain = &chains[4].1;
        let revoked_decision = |directive: Option<Directive>, record: DeviceRecord| {
            let peer = authenticate(&verifier, chain, &revoked, NOW, directive);
            decide(
                peer.as_ref(),
                directive,
                PATH_DEVICE,
                record,
                Approval::Manual,
            )
        };
        assert_eq!(
            revoked_decision(HEARTBEAT, DeviceRecord::Registered).reason,
            super::super::Reason::CertificateRevoked
        );
        assert_eq!(
            revoked_decision(HEARTBEAT, DeviceRecord::Unknown).reason,
            super::super::Reason::NoSuchDevice
        );
        assert_eq!(
            revoked_decision(CONTROL_IN, DeviceRecord::Deleted).effect,
            Effect::Disconnect
        );
        assert!(message(PeerKind::ExpiredDevice, HEARTBEAT, PATH_DEVICE).contains("expired"));
        assert!(
            message(PeerKind::OtherDevice, HEARTBEAT, PATH_DEVICE)
                .contains("\"edge-2\", not \"edge-1\"")
        );
        assert!(
            message(PeerKind::RegistrationCertificate, None, PATH_DEVICE)
                .contains("only be used for enrolment and registration")
        );
        assert!(message(PeerKind::Device, HEARTBEAT, PATH_DEVICE).contains("not approved"));
        assert!(message(PeerKind::Device, DEVICE, PATH_DEVICE).contains("not approved"));
        let bad = message(PeerKind::RegistrationCertificate, ENROLMENT, "Not A Device");
        assert!(bad.contains("\"Not A Device\" is not valid"), "{bad}");
    }

    #[test]
    fn an_invalid_path_device_is_bad_input_once_authorised() {
        let (verifier, revoked, chains) = peers();
        for (kind, status) in [
            (PeerKind::RegistrationCertificate, 400),
            (PeerKind::NoCertificate, 401),
            (PeerKind::Device, 403),
        ] {
            let chain = &chains.iter().find(|(k, _)| *k == kind).expect("kind").1;
            let peer = authenticate(&verifier, chain, &revoked, NOW, ENROLMENT);
            let decision = decide(
                peer.as_ref(),
                ENROLMENT,
                "Not A Device",
                DeviceRecord::Unknown,
                Approval::Manual,
            );
            assert_eq!(decision.status.code(), status, "{kind:?}");
            assert_eq!(decision.effect, Effect::None);
        }
    }

    #[test]
    fn effect_failures_and_config_answers_have_their_statuses() {
        use super::super::{Decision, Failure, config_status};
        assert_eq!(Decision::CSR_REFUSED.status.code(), 400);
        assert_eq!(Failure::BadContent.status().code(), 400);
        assert_eq!(Failure::CsrRefused.status().code(), 400);
        assert_eq!(Failure::DeviceGone.status().code(), 404);
        assert_eq!(Failure::Busy.status().code(), 503);
        assert_eq!(Failure::Internal.status().code(), 500);
        assert_eq!(Failure::BodyTooLarge.status().code(), 413);
        assert_eq!(Failure::BodyTooSlow.status().code(), 408);
        assert_eq!(config_status(true).code(), 304);
        assert_eq!(config_status(false).code(), 200);
    }

    #[test]
    fn markdown_has_a_line_per_row() {
        let text = markdown(Approval::Automatic);
        assert_eq!(text.lines().count(), 2 + rows(Approval::Automatic).count());
        assert!(text.contains(
            "| GET | `/control/{id}/in` | - | approved | 401 | 401 | 403 | 401 | 200 | 403 | 200 |"
        ));
    }
}
