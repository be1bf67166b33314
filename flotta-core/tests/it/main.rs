//! Integration tests of flotta-core.

mod examples;
mod manifest_errors;
mod pki_corpus;
mod pki_csr_policy;
mod pki_identity;
mod pki_openssl_verify;
mod pki_support;
#[cfg(feature = "rustls")]
mod pki_tls;
mod reconcile;
mod reconcile_props;
mod reference;
mod roundtrip;
mod schema;
mod selector_conformance;
mod selector_corpus;
mod selector_fields;
mod selector_properties;
mod unknown_fields;
mod wire_messages;
