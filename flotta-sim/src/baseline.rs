//! Same-run baselines: a bare axum handler behind the Edge API's rustls mTLS
//! set-up, and the raw ECDSA P-256 rates of aws-lc-rs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};

use crate::SimError;
use crate::fleet::EnrolledDevice;
use crate::report::Report;
use crate::stats::per_second;

/// Serves `POST /api/flotta-management/v1/data/{id}/out` with a constant reply,
/// behind exactly the Edge API's TLS configuration and accept loop
/// ([`flotta_server::edge::serve`]), on `listen`, until the process ends. PKI files
/// are created under `dir/pki` as the server creates them.
pub async fn serve_bare(dir: &Path, listen: SocketAddr) -> Result<(), SimError> {
    let pki = flotta_server::app::load_or_create_pki(
        &dir.join("pki"),
        &["127.0.0.1".to_owned()],
        time::OffsetDateTime::now_utc(),
    )
    .await
    .map_err(|e| SimError::Server(format!("baseline PKI: {e}")))?;
    let tls = flotta_server::edge::tls_server_config(
        &*pki.ca,
        &pki.server_certificate_pem,
        &pki.server_key_pem,
    )
    .map_err(|e| SimError::Server(format!("baseline TLS configuration: {e}")))?;
    let router = axum::Router::new().route(
        &format!(
            "{}/data/{{device_id}}/out",
            flotta_core::paths::EDGE_BASE_PATH
        ),
        post(|Json(message): Json<Value>| async move {
            Json(json!({
                "type": "data",
                "message_id": "00000000-0000-4000-8000-000000000000",
                "response_to": message.get("message_id").cloned().unwrap_or(Value::Null),
                "version": 1,
                "directive": "heartbeat",
                "content": null,
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Io {
            what: format!("binding {listen}"),
            source,
        })?;
    flotta_server::edge::serve(listener, Arc::new(tls), router, std::future::pending())
        .await
        .map_err(|source| SimError::Io {
            what: "serving the baseline".into(),
            source,
        })
}

/// Identities for the bare baseline: every device presents the registration
/// certificate (the bare handler does not look at it; the handshake costs the same).
pub fn bare_devices(dir: &Path, count: usize) -> Result<Vec<EnrolledDevice>, SimError> {
    let read = |name: &str| {
        let path = dir.join("pki").join(name);
        std::fs::read_to_string(&path).map_err(|source| SimError::Io {
            what: format!("reading {}", path.display()),
            source,
        })
    };
    let certificate_pem = read("register.crt")?;
    let key_pem = read("register.key")?;
    Ok((0..count)
        .map(|index| EnrolledDevice {
            device_id: format!("bare-{index:06}"),
            certificate_pem: certificate_pem.clone(),
            key_pem: key_pem.clone(),
        })
        .collect())
}

/// Operations per second of `operation` run for `duration` on this thread.
fn rate(duration: Duration, mut operation: impl FnMut() -> bool) -> (f64, u64) {
    let started = Instant::now();
    let mut done = 0u64;
    let mut failed = 0u64;
    while started.elapsed() < duration {
        // Check the clock every 64 operations, not after each.
        for _ in 0..64 {
            if operation() {
                done += 1;
            } else {
                failed += 1;
            }
        }
    }
    (per_second(done, started.elapsed()), failed)
}

/// Raw ECDSA P-256 key generation, signing and verification (SHA-256, ASN.1
/// signatures, aws-lc-rs) on one core, each for `duration`.
pub fn ecdsa(duration: Duration) -> Result<Report, SimError> {
    let rng = SystemRandom::new();
    let crypto = |what: &str| {
        let what = what.to_owned();
        move |e: aws_lc_rs::error::Unspecified| SimError::Server(format!("{what}: {e}"))
    };
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(crypto("generating a key"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|e| SimError::Server(format!("loading the key: {e}")))?;
    // About the size of a device certificate's to-be-signed part.
    let message = [0x5au8; 400];
    let signature = key.sign(&rng, &message).map_err(crypto("signing"))?;
    let public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());

    let (sign_rate, sign_failed) = rate(duration, || key.sign(&rng, &message).is_ok());
    let (verify_rate, verify_failed) = rate(duration, || {
        public.verify(&message, signature.as_ref()).is_ok()
    });
    let (keygen_rate, keygen_failed) = rate(duration, || {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).is_ok()
    });
    // An enrolment costs the server at least two signatures (TLS CertificateVerify,
    // the certificate) and two verifications (the client's CertificateVerify, the
    // CSR), with both cores doing nothing else.
    let per_enrolment_seconds = 2.0 / sign_rate.max(1.0) + 2.0 / verify_rate.max(1.0);
    let mut report = Report {
        scenario: "baseline-ecdsa".into(),
        backend: "none".into(),
        model: "aws-lc-rs, 1 thread".into(),
        window_s: duration.as_secs_f64() * 3.0,
        operation: "signature".into(),
        operations: 0,
        throughput_per_s: sign_rate,
        errors: sign_failed + verify_failed + keygen_failed,
        ..Report::default()
    };
    report
        .extra
        .insert("verify_per_s".into(), json!(verify_rate));
    report
        .extra
        .insert("keygen_per_s".into(), json!(keygen_rate));
    report.extra.insert(
        "enrolment_ceiling_per_s_2_cores".into(),
        json!(2.0 / per_enrolment_seconds),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_rates_are_measured() {
        let report = ecdsa(Duration::from_millis(30)).expect("ecdsa");
        assert_eq!(report.errors, 0);
        assert!(report.throughput_per_s > 0.0);
        let verify = report.extra["verify_per_s"].as_f64().expect("verify rate");
        let ceiling = report.extra["enrolment_ceiling_per_s_2_cores"]
            .as_f64()
            .expect("ceiling");
        assert!(verify > 0.0);
        // Two signatures and two verifications per enrolment on two cores: the
        // ceiling is below the signing rate.
        assert!(ceiling > 0.0 && ceiling < report.throughput_per_s);
    }
}
