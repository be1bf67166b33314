//! Certificate times: whole seconds, and conversion from X.509's ASN.1 time.

use time::OffsetDateTime;

/// Certificates carry whole seconds; dropping the fraction keeps what we record equal
/// to what the certificate says.
pub(crate) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Converts a certificate time into an `OffsetDateTime`.
pub(crate) fn asn1_time(t: x509_parser::time::ASN1Time) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}
