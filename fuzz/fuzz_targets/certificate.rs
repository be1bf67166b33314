//! Fuzzes certificate reading: the parser, peer identity and renewal decisions must
//! not panic on any input.
#![no_main]

use std::sync::OnceLock;

use flotta_core::pki::{
    BuiltinCa, PeerCertificate, PeerVerifier, Purpose, RenewalPolicy, RevocationList,
};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fn verifier() -> &'static PeerVerifier {
    static VERIFIER: OnceLock<PeerVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let ca = BuiltinCa::generate("fuzz CA", OffsetDateTime::UNIX_EPOCH).expect("CA");
        PeerVerifier::from_authority(&ca).expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(365);
    let _ = PeerCertificate::parse(data);
    let _ = RenewalPolicy::default().decide(data, now);
    let revoked = RevocationList::new();
    for purpose in [Purpose::Request, Purpose::Registration] {
        // A fuzzed certificate cannot carry our CA's signature.
        assert!(
            verifier()
                .identify(&[data], &revoked, now, purpose)
                .is_err()
        );
    }
    let _ = verifier().is_signed_by_trusted_issuer(data);
});
