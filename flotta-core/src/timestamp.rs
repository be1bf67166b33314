//! RFC 3339 text of a time, as the APIs write it. A leaf module.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 text of `at` with its full precision, e.g.
/// `2026-01-02T03:04:05.123456789Z`.
///
/// ```
/// let at = time::macros::datetime!(2026-01-02 03:04:05.5 UTC);
/// assert_eq!(flotta_core::timestamp::rfc3339(at), "2026-01-02T03:04:05.5Z");
/// ```
pub fn rfc3339(at: OffsetDateTime) -> String {
    // Formatting fails only for years outside 0..=9999; fall back to Unix seconds
    // rather than an empty string.
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// RFC 3339 text of `at` truncated to whole seconds, as Kubernetes writes
/// metadata timestamps, e.g. `2026-01-02T03:04:05Z`.
///
/// ```
/// let at = time::macros::datetime!(2026-01-02 03:04:05.5 UTC);
/// assert_eq!(flotta_core::timestamp::rfc3339_seconds(at), "2026-01-02T03:04:05Z");
/// ```
pub fn rfc3339_seconds(at: OffsetDateTime) -> String {
    rfc3339(at.replace_nanosecond(0).unwrap_or(at))
}

/// Parses RFC 3339 text; `None` when it is not.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_truncates() {
        let at =
            OffsetDateTime::from_unix_timestamp_nanos(1_767_322_800_250_000_000).expect("in range");
        assert_eq!(rfc3339(at), "2026-01-02T03:00:00.25Z");
        assert_eq!(rfc3339_seconds(at), "2026-01-02T03:00:00Z");
        assert_eq!(parse_rfc3339(&rfc3339(at)), Some(at));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
