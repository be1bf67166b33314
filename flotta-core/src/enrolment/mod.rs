//! The enrolment and registration protocol, as pure decisions.
//!
//! Two halves, one per side of the wire:
//!
//! - [`EnrolmentMachine`], the agent's side: enrol with the fleet-wide registration
//!   certificate, wait for approval, register a CSR, run, renew. It takes typed
//!   outcomes ([`ExchangeOutcome`]) and the time, and says which request to send next and when.
//!   Retries back off exponentially with jitter drawn from a caller-supplied random
//!   number, capped.
//! - [`decide`], the server's side: from who the peer is, the directive, the device in
//!   the path, the device's record and the approval policy, the status code to answer
//!   and the effect to carry out. Every status code of the Edge API comes from it (or
//!   from [`Failure::status`] when carrying out the effect fails), and
//!   [`table::EDGE_TABLE`] lists its answers as data for the tests on both sides.
//!
//! In order: a refused certificate (none, unknown issuer, malformed, revoked,
//! expired) gets 401; the registration certificate asking for anything but
//! `enrolment` or `registration`, or a device certificate naming another device than
//! the path, gets 403 (before the body's directive is looked at); an unknown
//! directive or an invalid device id in the path gets 400; then the device's record
//! decides (404 for a device that is not there, 208 for enrolling an approved one).
//! An expired device certificate passes [`authenticate`] only for `registration`.
//! `docs/security.md` shows the whole table.

mod agent;
mod approval;
mod server;

pub use server::table;

use std::fmt;

use crate::pki::Purpose;

/// The retry schedule of enrolment; it lives in [`crate::backoff`].
pub use crate::backoff::Backoff;
pub use agent::{
    AgentConfig, AgentPhase, AgentRequest, Credential, EnrolmentError, EnrolmentMachine,
    ExchangeOutcome, NextAction,
};
pub use approval::{
    APPROVED_CONDITION, DECLINED_CONDITION, EnrolmentDecision, PENDING_CONDITION, decision_of,
    record_decision,
};
pub use server::{
    Approval, CONTROL_PENDING_HEADER, Caller, ControlCommand, Decision, DeviceRecord, EdgeStatus,
    Effect, Failure, REPORT_WANTED_HEADER, Reason, answer, authenticate, authenticate_verified,
    authorise, config_status, decide, pending_command,
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
    /// `POST /data/{id}/out`, directive `ansible`: fetch the playbook executions.
    Ansible,
    /// `GET /data/{id}/in`, directive `device`: fetch the configuration.
    Device,
    /// `GET /control/{id}/in`: read the pending control command.
    Control,
    /// `POST /control/{id}/out`: reply to a control command.
    ControlReply,
}

impl Directive {
    /// The directive as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolment => "enrolment",
            Self::Registration => "registration",
            Self::Heartbeat => "heartbeat",
            Self::Ansible => "ansible",
            Self::Device => "device",
            Self::Control => "control",
            Self::ControlReply => "control-reply",
        }
    }

    /// Reads a wire directive; `None` for one we do not serve.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "enrolment" => Self::Enrolment,
            "registration" => Self::Registration,
            "heartbeat" => Self::Heartbeat,
            "ansible" => Self::Ansible,
            "device" => Self::Device,
            "control" => Self::Control,
            "control-reply" => Self::ControlReply,
            _ => return None,
        })
    }

    /// Reads the directive of a message posted to `/data/{id}/out`: `None` for any
    /// but `enrolment`, `registration`, `heartbeat` and `ansible`, the ones that
    /// endpoint serves.
    pub fn posted(s: &str) -> Option<Self> {
        Self::parse(s).filter(|d| {
            matches!(
                d,
                Self::Enrolment | Self::Registration | Self::Heartbeat | Self::Ansible
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_names_round_trip_and_only_registration_forgives_expiry() {
        for d in [
            Directive::Enrolment,
            Directive::Registration,
            Directive::Heartbeat,
            Directive::Ansible,
            Directive::Device,
            Directive::Control,
            Directive::ControlReply,
        ] {
            assert_eq!(Directive::parse(d.as_str()), Some(d));
            assert_eq!(
                d.purpose() == Purpose::Registration,
                d == Directive::Registration
            );
        }
        assert_eq!(Directive::parse("Enrolment"), None);
        assert_eq!(Directive::posted("heartbeat"), Some(Directive::Heartbeat));
        assert_eq!(Directive::posted("device"), None);
        assert_eq!(Directive::posted("reboot-now"), None);
    }
}
