//! Kubernetes label key and value rules.

use super::SelectorErrorKind;

/// Longest label value and longest name part of a key.
pub const MAX_LABEL_NAME_LEN: usize = 63;
/// Longest DNS-subdomain prefix of a key.
pub const MAX_LABEL_PREFIX_LEN: usize = 253;

/// Checks a label key: an optional DNS-subdomain prefix (≤ 253 characters) and `/`,
/// then a name of 1 to 63 characters from `[A-Za-z0-9_.-]` that starts and ends
/// alphanumeric.
///
/// ```
/// use flotta_core::selector::validate_label_key;
/// assert!(validate_label_key("example.com/tier").is_ok());
/// assert!(validate_label_key("-tier").is_err());
/// ```
pub fn validate_label_key(key: &str) -> Result<(), SelectorErrorKind> {
    let invalid = |reason| SelectorErrorKind::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(invalid("prefix before '/' must not be empty"));
        }
        if prefix.len() > MAX_LABEL_PREFIX_LEN {
            return Err(invalid("prefix must be 253 characters or fewer"));
        }
        if !is_dns_subdomain(prefix) {
            return Err(invalid(
                "prefix must be a DNS subdomain: lowercase alphanumeric labels joined by '.', '-' only inside a label",
            ));
        }
        if name.contains('/') {
            return Err(invalid("a key has at most one '/'"));
        }
    }
    if name.is_empty() {
        return Err(invalid("name part must not be empty"));
    }
    if name.len() > MAX_LABEL_NAME_LEN {
        return Err(invalid("name part must be 63 characters or fewer"));
    }
    if !is_label_token(name) {
        return Err(invalid(
            "name part must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric",
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or 1 to 63 characters from `[A-Za-z0-9_.-]` that start
/// and end alphanumeric.
///
/// ```
/// use flotta_core::selector::validate_label_value;
/// assert!(validate_label_value("").is_ok());
/// assert!(validate_label_value("v1.2_rc-3").is_ok());
/// assert!(validate_label_value("a b").is_err());
/// ```
pub fn validate_label_value(value: &str) -> Result<(), SelectorErrorKind> {
    let invalid = |reason| SelectorErrorKind::InvalidValue {
        value: value.to_owned(),
        reason,
    };
    if value.len() > MAX_LABEL_NAME_LEN {
        return Err(invalid("must be 63 characters or fewer"));
    }
    if !value.is_empty() && !is_label_token(value) {
        return Err(invalid(
            "must be empty or consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric",
        ));
    }
    Ok(())
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_label_token(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// RFC 1123 subdomain: `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns_subdomain(text: &str) -> bool {
    text.split('.').all(|label| {
        let bytes = label.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits() {
        assert!(validate_label_key(&"a".repeat(63)).is_ok());
        assert!(validate_label_key(&"a".repeat(64)).is_err());
        let prefix_253 = format!("{}.{}", "a".repeat(63), "b".repeat(189));
        assert_eq!(prefix_253.len(), 253);
        assert!(validate_label_key(&format!("{prefix_253}/x")).is_ok());
        assert!(validate_label_key(&format!("{prefix_253}c/x")).is_err());
        assert!(validate_label_key("Example.com/x").is_err());
        assert!(validate_label_key("example..com/x").is_err());
        assert!(validate_label_key("/x").is_err());
        assert!(validate_label_key("a/b/c").is_err());
        assert!(validate_label_key("a/").is_err());
        assert!(validate_label_key("").is_err());
        assert!(validate_label_key("A_b.c-D").is_ok());
        assert!(validate_label_key("a_").is_err());
    }

    #[test]
    fn value_limits() {
        assert!(validate_label_value(&"v".repeat(63)).is_ok());
        assert!(validate_label_value(&"v".repeat(64)).is_err());
        assert!(validate_label_value("_v").is_err());
        assert!(validate_label_value("v.").is_err());
        assert!(validate_label_value("é").is_err());
    }
}
