//! Fuzzes the server's CSR policy: no input may panic, and every accepted request
//! must be signable by the built-in CA into a certificate that names the device.
#![no_main]

use std::sync::OnceLock;

use flotta_core::pki::{BuiltinCa, CertificateProfile, CsrPolicy, DeviceIdentity, PeerCertificate};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fn ca() -> &'static BuiltinCa {
    static CA: OnceLock<BuiltinCa> = OnceLock::new();
    CA.get_or_init(|| {
        BuiltinCa::generate("fuzz CA", OffsetDateTime::UNIX_EPOCH).expect("CA generation")
    })
}

fuzz_target!(|data: &[u8]| {
    let policy = CsrPolicy::default();
    let Ok(csr) = policy.verify(data) else {
        return;
    };
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
    let device = DeviceIdentity::new("fuzz-device", "fuzz").expect("valid identity");
    // The built-in CA signs without waiting.
    let issued = ca()
        .issue_now(
            csr.subject_public_key_info(),
            &CertificateProfile::device(
                &device,
                now - time::Duration::hours(1),
                now + time::Duration::days(90),
            )
            .expect("valid profile"),
        )
        .expect("accepted CSR must be signable");
    let facts = PeerCertificate::parse(issued.der()).expect("issued certificate must parse");
    assert_eq!(facts.common_name.as_deref(), Some("fuzz-device"));
    assert_eq!(facts.organizational_unit.as_deref(), Some("fuzz"));
    assert!(facts.client_auth);
});
