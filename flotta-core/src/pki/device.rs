//! A device's name in the fleet's PKI: its id (certificate CN) and namespace (OU),
//! and the DNS rules both follow.

use super::defaults::REGISTRATION_COMMON_NAME;
use super::error::PkiError;

/// A device as named in its certificate: CN = device id, OU = namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    id: String,
    namespace: String,
}

impl DeviceIdentity {
    /// Checks and pairs a device id (a DNS subdomain, not `register`) and a namespace
    /// (a DNS label).
    pub fn new(id: impl Into<String>, namespace: impl Into<String>) -> Result<Self, PkiError> {
        let id = id.into();
        let namespace = namespace.into();
        if let Some(reason) = dns_subdomain_problem(&id) {
            return Err(PkiError::InvalidDeviceId { id, reason });
        }
        if id == REGISTRATION_COMMON_NAME {
            return Err(PkiError::InvalidDeviceId {
                id,
                reason: "reserved for the registration certificate",
            });
        }
        if let Some(reason) = dns_label_problem(&namespace) {
            return Err(PkiError::InvalidNamespace { namespace, reason });
        }
        Ok(Self { id, namespace })
    }

    /// The device id (certificate CN).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespace (certificate OU).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Why `name` is not a DNS-1123 subdomain, if it is not one.
pub(crate) fn dns_subdomain_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("must not be empty");
    }
    if name.len() > 253 {
        return Some("must be at most 253 characters");
    }
    for label in name.split('.') {
        if let Some(problem) = dns_label_problem(label) {
            return Some(problem);
        }
    }
    None
}

/// Why `label` is not a DNS-1123 label, if it is not one.
pub(crate) fn dns_label_problem(label: &str) -> Option<&'static str> {
    if label.is_empty() {
        return Some("labels must not be empty");
    }
    if label.len() > 63 {
        return Some("labels must be at most 63 characters");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("only lowercase letters, digits, '-' and '.' are allowed");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some("labels must start and end with a letter or digit");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_identity_rules() {
        assert!(DeviceIdentity::new("edge-01.site-a", "fleet").is_ok());
        assert!(matches!(
            DeviceIdentity::new("register", "fleet"),
            Err(PkiError::InvalidDeviceId { .. })
        ));
        assert!(matches!(
            DeviceIdentity::new("Edge", "fleet"),
            Err(PkiError::InvalidDeviceId { .. })
        ));
        assert!(matches!(
            DeviceIdentity::new("edge", "a.b"),
            Err(PkiError::InvalidNamespace { .. })
        ));
        assert!(matches!(
            DeviceIdentity::new("", "fleet"),
            Err(PkiError::InvalidDeviceId { .. })
        ));
    }
}
