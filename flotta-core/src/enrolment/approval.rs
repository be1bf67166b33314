//! An operator's decision on an enrolment request (`EdgeDeviceSignedRequest`):
//! what a request says was decided, and how a decision is written on it. The
//! server's `.../approval` operation, the Edge API and the clients all read and
//! write decisions through these two functions.

use time::OffsetDateTime;

use crate::model::{EdgeDeviceSignedRequest, EdgeDeviceSignedRequestStatus, EnrolmentCondition};

/// The `type` of the condition an approval writes (Flotta's).
pub const APPROVED_CONDITION: &str = "approved";
/// The `type` of the condition a denial writes (Flotta's word).
pub const DECLINED_CONDITION: &str = "declined";
/// The `type` of the condition of a request nobody decided yet.
pub const PENDING_CONDITION: &str = "pending";

/// What an operator decided about an enrolment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrolmentDecision {
    /// The device may register.
    Approve,
    /// The device may not: its enrolment and registration get 403 `EnrolmentDenied`
    /// until an approval.
    Deny,
}

impl EnrolmentDecision {
    /// The condition type recording the decision.
    pub fn condition_type(self) -> &'static str {
        match self {
            Self::Approve => APPROVED_CONDITION,
            Self::Deny => DECLINED_CONDITION,
        }
    }

    /// The verb, for messages: `approved` or `denied`.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Approve => "approved",
            Self::Deny => "denied",
        }
    }
}

/// What `request` says was decided: approved while `spec.approved` is true (the
/// field Flotta's operator sets), denied while a `declined` condition has status
/// `True` and `spec.approved` is not true, undecided otherwise.
pub fn decision_of(request: &EdgeDeviceSignedRequest) -> Option<EnrolmentDecision> {
    if request.spec.approved == Some(true) {
        return Some(EnrolmentDecision::Approve);
    }
    let declined = request.status.as_ref().is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == DECLINED_CONDITION && c.status == "True")
    });
    declined.then_some(EnrolmentDecision::Deny)
}

/// Writes `decision` on `request`: `spec.approved`, and one condition of the
/// decision's type (status `True`, `now`, `message`) in place of every earlier
/// decision or pending condition; other conditions are kept.
pub fn record_decision(
    request: &mut EdgeDeviceSignedRequest,
    decision: EnrolmentDecision,
    message: String,
    now: OffsetDateTime,
) {
    request.spec.approved = Some(decision == EnrolmentDecision::Approve);
    let status = request
        .status
        .get_or_insert_with(EdgeDeviceSignedRequestStatus::default);
    status.conditions.retain(|c| {
        ![APPROVED_CONDITION, DECLINED_CONDITION, PENDING_CONDITION].contains(&c.type_.as_str())
    });
    status.conditions.push(EnrolmentCondition {
        last_transition_time: serde_json::from_value(serde_json::Value::String(
            crate::timestamp::rfc3339_seconds(now),
        ))
        .ok(),
        message: Some(message),
        status: "True".to_owned(),
        type_: decision.condition_type().to_owned(),
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> EdgeDeviceSignedRequest {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDeviceSignedRequest",
            "metadata": {"name": "edge-1", "namespace": "default"},
            "spec": {"targetNamespace": "default", "approved": false},
            "status": {"conditions": [
                {"type": "pending", "status": "True"},
                {"type": "custom", "status": "False"}
            ]}
        }))
        .expect("request")
    }

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-03 08:00 UTC);

    #[test]
    fn a_decision_replaces_the_earlier_one_and_reads_back() {
        let mut r = request();
        assert_eq!(decision_of(&r), None);
        record_decision(&mut r, EnrolmentDecision::Deny, "no".into(), NOW);
        assert_eq!(decision_of(&r), Some(EnrolmentDecision::Deny));
        assert_eq!(r.spec.approved, Some(false));
        record_decision(&mut r, EnrolmentDecision::Approve, "yes".into(), NOW);
        assert_eq!(decision_of(&r), Some(EnrolmentDecision::Approve));
        let conditions = &r.status.as_ref().expect("status").conditions;
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["custom", "approved"]);
        let decided = conditions.last().expect("condition");
        assert_eq!(decided.message.as_deref(), Some("yes"));
        let written = serde_json::to_value(decided).expect("json");
        assert_eq!(written["lastTransitionTime"], "2026-12-03T08:00:00Z");
    }

    #[test]
    fn approval_wins_over_a_stale_declined_condition() {
        let mut r = request();
        record_decision(&mut r, EnrolmentDecision::Deny, "no".into(), NOW);
        r.spec.approved = Some(true);
        assert_eq!(decision_of(&r), Some(EnrolmentDecision::Approve));
    }
}
