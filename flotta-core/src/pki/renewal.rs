//! When a device renews its certificate.

use time::{Duration, OffsetDateTime};

use super::identity::{CertificateError, PeerCertificate};

/// What a device should do about its certificate at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalAction {
    /// The certificate is good; renew at `renew_at`.
    Valid {
        /// When renewal becomes due.
        renew_at: OffsetDateTime,
    },
    /// Renewal is due: send `registration` with a new CSR and the current certificate.
    RenewNow,
    /// The certificate expired: send `registration` with the expired certificate, which
    /// the server accepts for that directive only.
    ExpiredReRegister,
}

/// When renewal falls due, as a fraction of the certificate's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPolicy {
    numerator: u32,
    denominator: u32,
}

impl Default for RenewalPolicy {
    /// Renew at two thirds of the lifetime.
    fn default() -> Self {
        Self {
            numerator: 2,
            denominator: 3,
        }
    }
}

impl RenewalPolicy {
    /// Renew at `numerator / denominator` of the lifetime. Fractions above one are
    /// clamped to one (renew at expiry); a zero denominator means "renew at once".
    pub fn at_fraction(numerator: u32, denominator: u32) -> Self {
        if denominator == 0 {
            return Self {
                numerator: 0,
                denominator: 1,
            };
        }
        Self {
            numerator: numerator.min(denominator),
            denominator,
        }
    }

    /// The time renewal falls due for a certificate valid from `not_before` to
    /// `not_after`.
    pub fn renew_at(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> OffsetDateTime {
        let lifetime = (not_after - not_before).whole_seconds().max(0);
        let due = i128::from(lifetime) * i128::from(self.numerator) / i128::from(self.denominator);
        let due = i64::try_from(due).unwrap_or(i64::MAX);
        not_before
            .checked_add(Duration::seconds(due))
            .unwrap_or(not_after)
    }

    /// Decides for a validity window at time `now`.
    pub fn decide_for(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> RenewalAction {
        if now >= not_after {
            return RenewalAction::ExpiredReRegister;
        }
        let renew_at = self.renew_at(not_before, not_after);
        if now >= renew_at {
            RenewalAction::RenewNow
        } else {
            RenewalAction::Valid { renew_at }
        }
    }

    /// Decides for a certificate (PEM or DER) at time `now`.
    pub fn decide(
        &self,
        certificate: &[u8],
        now: OffsetDateTime,
    ) -> Result<RenewalAction, CertificateError> {
        let facts = PeerCertificate::parse(certificate)?;
        Ok(self.decide_for(facts.not_before, facts.not_after, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn renews_at_two_thirds_by_default() {
        let start = datetime!(2026-01-01 00:00 UTC);
        let end = start + Duration::days(90);
        let policy = RenewalPolicy::default();
        assert_eq!(policy.renew_at(start, end), start + Duration::days(60));
        assert_eq!(
            policy.decide_for(start, end, start + Duration::days(59)),
            RenewalAction::Valid {
                renew_at: start + Duration::days(60)
            }
        );
        assert_eq!(
            policy.decide_for(start, end, start + Duration::days(60)),
            RenewalAction::RenewNow
        );
        assert_eq!(
            policy.decide_for(start, end, end - Duration::seconds(1)),
            RenewalAction::RenewNow
        );
        assert_eq!(
            policy.decide_for(start, end, end),
            RenewalAction::ExpiredReRegister
        );
    }

    #[test]
    fn configurable_fraction() {
        let start = datetime!(2026-01-01 00:00 UTC);
        let end = start + Duration::days(100);
        assert_eq!(
            RenewalPolicy::at_fraction(1, 2).renew_at(start, end),
            start + Duration::days(50)
        );
        assert_eq!(RenewalPolicy::at_fraction(5, 4).renew_at(start, end), end);
        assert_eq!(RenewalPolicy::at_fraction(1, 0).renew_at(start, end), start);
    }

    #[test]
    fn reversed_window_renews_at_once() {
        let start = datetime!(2026-01-01 00:00 UTC);
        let policy = RenewalPolicy::default();
        assert_eq!(
            policy.decide_for(start, start - Duration::days(1), start),
            RenewalAction::ExpiredReRegister
        );
    }
}
