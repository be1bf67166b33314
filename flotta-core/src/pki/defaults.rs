//! Fixed names, sizes and lifetimes of the fleet's PKI.

/// Common name of the fleet-wide registration certificate.
pub const REGISTRATION_COMMON_NAME: &str = "register";

/// Largest CSR the server reads, in bytes, PEM or DER.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// Largest certificate the identity and renewal functions read, in bytes.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// How far back a device certificate's NotBefore is set, to absorb device clock skew.
pub const NOT_BEFORE_SKEW: time::Duration = time::Duration::hours(1);

/// Default lifetime of a device certificate.
pub const DEFAULT_DEVICE_LIFETIME: time::Duration = time::Duration::days(90);

/// Lifetime of the built-in CA certificate.
pub const CA_LIFETIME: time::Duration = time::Duration::days(3650);

/// Most intermediate CA certificates a peer's chain may carry between its own
/// certificate and a trusted CA, and most certificates a CA chain file may hold.
pub const MAX_CHAIN_INTERMEDIATES: usize = 4;
