//! PKI benchmarks: verifying a device CSR and signing its certificate, and reading
//! the peer identity from a client certificate, each beside the raw ECDSA P-256
//! operations they are built on (aws-lc-rs), measured in the same run.
#![allow(missing_docs)]

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotta_core::pki::{
    BuiltinCa, CsrPolicy, DeviceIdentity, DeviceKey, PeerVerifier, Purpose, RevocationList, Serial,
};
use time::OffsetDateTime;

fn raw_ecdsa(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .expect("benchmark setup");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .expect("benchmark setup");
    let message = vec![0x5au8; 300];
    let signature = key.sign(&rng, &message).expect("benchmark setup");
    let public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());

    let mut g = c.benchmark_group("baseline_ecdsa_p256");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify", |b| {
        b.iter(|| {
            public
                .verify(black_box(&message), black_box(signature.as_ref()))
                .expect("benchmark setup")
        })
    });
    g.bench_function("sign", |b| {
        b.iter(|| {
            key.sign(&rng, black_box(&message))
                .expect("benchmark setup")
        })
    });
    g.bench_function("verify_plus_sign", |b| {
        b.iter(|| {
            public
                .verify(black_box(&message), black_box(signature.as_ref()))
                .expect("benchmark setup");
            key.sign(&rng, black_box(&message))
                .expect("benchmark setup")
        })
    });
    g.finish();
}

fn csr(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("bench CA", now).expect("benchmark setup");
    let key = DeviceKey::generate().expect("benchmark setup");
    let csr_pem = key.csr("edge-bench").expect("benchmark setup").pem();
    let device = DeviceIdentity::new("edge-bench", "bench").expect("benchmark setup");
    let policy = CsrPolicy::default();

    let mut g = c.benchmark_group("csr");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify", |b| {
        b.iter(|| {
            policy
                .verify(black_box(csr_pem.as_bytes()))
                .expect("benchmark setup")
        })
    });
    g.bench_function("verify_and_sign", |b| {
        b.iter(|| {
            futures::executor::block_on(policy.issue(
                &ca,
                black_box(csr_pem.as_bytes()),
                &device,
                now,
            ))
            .expect("benchmark setup")
        })
    });
    g.finish();
}

fn identity(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("bench CA", now).expect("benchmark setup");
    let key = DeviceKey::generate().expect("benchmark setup");
    let device = DeviceIdentity::new("edge-bench", "bench").expect("benchmark setup");
    let issued = futures::executor::block_on(CsrPolicy::default().issue(
        &ca,
        key.csr("edge-bench").expect("benchmark setup").der(),
        &device,
        now,
    ))
    .expect("benchmark setup");
    let verifier = PeerVerifier::from_authority(&ca).expect("benchmark setup");
    // A fleet that deleted 100,000 devices.
    let revoked: RevocationList = (0..100_000)
        .map(|_| Serial::random().expect("benchmark setup"))
        .collect();
    let chain = [issued.der()];

    let mut g = c.benchmark_group("peer_identity");
    g.throughput(Throughput::Elements(1));
    g.bench_function("identify", |b| {
        b.iter(|| {
            verifier
                .identify(black_box(&chain), &revoked, now, Purpose::Request)
                .expect("benchmark setup")
        })
    });
    let peer = verifier.verify_peer(&chain).expect("benchmark setup");
    g.bench_function("check_verified_peer", |b| {
        b.iter(|| {
            black_box(&peer)
                .check(&revoked, now, Purpose::Request)
                .expect("benchmark setup")
        })
    });
    g.finish();
}

criterion_group!(benches, raw_ecdsa, csr, identity);
criterion_main!(benches);
