//! OpenID Connect: which bearer tokens an issuer's policy accepts, and who they say
//! the caller is.
//!
//! Sans-IO: the server fetches the issuer's discovery document and keys (JWKS) and
//! passes them in with the current time; [`verify`] checks the signature (with an
//! algorithm from the policy's allow-list and a key of the issuer's set), `iss`,
//! `aud`, `exp` and `nbf` (with the policy's clock skew), and maps the policy's
//! username and groups claims to a [`UserInfo`] for RBAC. The same rules apply to
//! every issuer, so the server, the tests and the documentation describe one thing.
//!
//! The clients' side is here too: [`pkce_challenge`] (RFC 7636, S256) for the
//! authorization-code flow of `flotta login` and the console.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::rbac::UserInfo;

/// Signature algorithms an issuer policy may allow: asymmetric ones only, since an
/// issuer publishes public keys.
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The algorithms allowed when a policy names none.
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256"];

/// The clock skew allowed on `exp` and `nbf` when a policy names none.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// The claim naming the user when a policy names none (as Kubernetes).
pub const DEFAULT_USERNAME_CLAIM: &str = "sub";

/// The claim listing the groups when a policy names none.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";

/// What one trusted issuer's tokens must be, and how they map to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPolicy {
    /// The issuer URL, exactly as the tokens' `iss` and the discovery document say.
    pub issuer: String,
    /// The OAuth client the CLI and console sign in with; also an accepted audience.
    pub client_id: String,
    /// Further accepted audiences besides `client_id`.
    pub extra_audiences: Vec<String>,
    /// The claim holding the user name.
    pub username_claim: String,
    /// Prepended to the user name (e.g. `oidc:`), so issuers' users cannot pass for
    /// token names or each other.
    pub username_prefix: String,
    /// The claim holding the groups (an array of strings, or one string); empty: none.
    pub groups_claim: String,
    /// Prepended to each group.
    pub groups_prefix: String,
    /// The signature algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// Allowed clock difference on `exp` and `nbf`.
    pub clock_skew: Duration,
}

impl IssuerPolicy {
    /// A policy with the defaults: username from `sub`, groups from `groups`, no
    /// prefixes, RS256 and ES256, 30 s of clock skew.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            extra_audiences: Vec::new(),
            username_claim: DEFAULT_USERNAME_CLAIM.into(),
            username_prefix: String::new(),
            groups_claim: DEFAULT_GROUPS_CLAIM.into(),
            groups_prefix: String::new(),
            algorithms: DEFAULT_ALGORITHMS
                .iter()
                .filter_map(|a| Algorithm::from_str(a).ok())
                .collect(),
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
    }

    /// Checks the policy can be used: an `https` issuer URL, a client id, known
    /// asymmetric algorithms, a username claim. The message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.issuer.starts_with("https://") {
            return Err(format!(
                "issuer {:?}: must be an https:// URL (tokens are only trusted from an issuer reached over TLS)",
                self.issuer
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err("client-id: must not be empty".into());
        }
        if self.username_claim.trim().is_empty() {
            return Err("username-claim: must not be empty".into());
        }
        if self.algorithms.is_empty() {
            return Err("algorithms: name at least one".into());
        }
        Ok(())
    }

    /// The audiences a token may carry.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.client_id.as_str())
            .chain(self.extra_audiences.iter().map(|a| a.as_str()))
    }
}

/// Parses an algorithm name of [`SUPPORTED_ALGORITHMS`].
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    if !SUPPORTED_ALGORITHMS.contains(&name) {
        return Err(format!(
            "algorithm {name:?} is not allowed (one of {})",
            SUPPORTED_ALGORITHMS.join(", ")
        ));
    }
    Algorithm::from_str(name).map_err(|e| format!("algorithm {name:?}: {e}"))
}

/// The parts of an issuer's discovery document (`/.well-known/openid-configuration`)
/// the server and clients use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where the signing keys are.
    pub jwks_uri: String,
    /// Where browsers and `flotta login` send the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// Where codes and refresh tokens are exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Where a headless `flotta login` starts (RFC 8628).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// Where the console signs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
}

impl Discovery {
    /// Parses a discovery document and checks it belongs to `issuer` (OpenID
    /// Connect Discovery §4.3: the `issuer` value must be identical).
    pub fn parse(body: &[u8], issuer: &str) -> Result<Self, OidcError> {
        let document: Discovery = serde_json::from_slice(body).map_err(|e| {
            OidcError::Discovery(format!(
                "the discovery document of {issuer} is not valid: {e}"
            ))
        })?;
        if document.issuer != issuer {
            return Err(OidcError::Discovery(format!(
                "the discovery document of {issuer} names issuer {:?}; they must be identical",
                document.issuer
            )));
        }
        Ok(document)
    }
}

/// The URL of an issuer's discovery document.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// An issuer's signing keys, parsed from its JWKS document. Keys for encryption
/// and keys this library cannot read are left out, so one odd key does not hide
/// the others.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    pub fn parse(body: &[u8]) -> Result<Self, OidcError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }
        let document: Document = serde_json::from_slice(body)
            .map_err(|e| OidcError::Keys(format!("the JWKS document is not valid: {e}")))?;
        let keys = document
            .keys
            .into_iter()
            .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
            .filter(|key| {
                !matches!(
                    key.common.public_key_use,
                    Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
                )
            })
            .collect();
        Ok(Self { keys })
    }

    /// How many signing keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no signing key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token's header names: by `kid`, or the set's only key when the
    /// header names none.
    fn key_for(&self, kid: Option<&str>) -> Option<&Jwk> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

/// Why a bearer token was not accepted. The messages say what was wrong; they never
/// contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// Not a JWT at all (three base64url parts with a JSON header and payload).
    #[error("the bearer token is not a JWT: {0}")]
    Malformed(String),
    /// No configured issuer has this `iss`.
    #[error("the token's issuer {0:?} is not trusted by this server")]
    UntrustedIssuer(String),
    /// The header's algorithm is not allowed.
    #[error("the token is signed with {0}, which this issuer's policy does not allow")]
    Algorithm(String),
    /// The key set has no key the header names; a fresh key set may (rotation).
    #[error("the issuer has no signing key {0:?} (was it rotated away?)")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature is not valid: {0}")]
    Signature(String),
    /// Past `exp` (plus the skew).
    #[error("the token expired at {0}")]
    Expired(String),
    /// Before `nbf` (minus the skew).
    #[error("the token is not valid before {0}")]
    NotYetValid(String),
    /// No accepted audience in `aud`.
    #[error("the token's audience {found} does not include {expected}")]
    Audience {
        /// The token's `aud`.
        found: String,
        /// The accepted audiences.
        expected: String,
    },
    /// A claim is missing or has the wrong type.
    #[error("the token's claim {claim:?}: {problem}")]
    Claim {
        /// The claim's name.
        claim: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The discovery document could not be used.
    #[error("{0}")]
    Discovery(String),
    /// The key set could not be used.
    #[error("{0}")]
    Keys(String),
}

/// A JWT's claims, read without verifying anything: for choosing the policy and
/// keys that will verify it, or for a client to see its own token's expiry.
pub fn unverified_claims(token: &str) -> Result<Value, OidcError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::Malformed(
            "it does not have three dot-separated parts".into(),
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| OidcError::Malformed(format!("the payload is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OidcError::Malformed(format!("the payload is not JSON: {e}")))
}

/// The issuer a token claims to come from, read without verifying anything: only to
/// choose the policy and keys that will verify it.
pub fn claimed_issuer(token: &str) -> Result<String, OidcError> {
    let claims = unverified_claims(token)?;
    match claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(OidcError::Claim {
            claim: "iss".into(),
            problem: "is not a string".into(),
        }),
        None => Err(OidcError::Claim {
            claim: "iss".into(),
            problem: "is missing".into(),
        }),
    }
}

/// The `kid` a JWT's header names, read without verifying anything.
pub fn header_key_id(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Whether a bearer secret has the shape of a JWT (three base64url parts), as
/// opposed to one of the server's own tokens.
pub fn looks_like_jwt(secret: &str) -> bool {
    let parts: Vec<&str> = secret.split('.').collect();
    parts.len() == 3
        && parts.iter().take(2).all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A token that [`verify`] accepted: the user it names and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Who the caller is for RBAC.
    pub user: UserInfo,
    /// The issuer.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The token's `exp`.
    pub expires_at: OffsetDateTime,
}

/// Verifies `token` against `policy` with the issuer's `keys` at time `now`.
pub fn verify(
    token: &str,
    policy: &IssuerPolicy,
    keys: &KeySet,
    now: OffsetDateTime,
) -> Result<VerifiedToken, OidcError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| OidcError::Malformed(format!("the header is not valid: {e}")))?;
    if !policy.algorithms.contains(&header.alg) {
        return Err(OidcError::Algorithm(format!("{:?}", header.alg)));
    }
    let jwk = keys.key_for(header.kid.as_deref()).ok_or_else(|| {
        OidcError::UnknownKey(header.kid.clone().unwrap_or_else(|| "(none named)".into()))
    })?;
    if let Some(key_alg) = jwk.common.key_algorithm
        && format!("{key_alg:?}") != format!("{:?}", header.alg)
    {
        return Err(OidcError::Algorithm(format!(
            "{:?} (the key {:?} is for {key_alg:?})",
            header.alg,
            header.kid.as_deref().unwrap_or_default()
        )));
    }
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| OidcError::Keys(format!("the issuer's key cannot be used: {e}")))?;
    // The signature only: the claims are checked below against `now`, with
    // messages that say which claim failed.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| OidcError::Signature(e.to_string()))?
        .claims;
    check_claims(&claims, policy, now)
}

fn check_claims(
    claims: &Value,
    policy: &IssuerPolicy,
    now: OffsetDateTime,
) -> Result<VerifiedToken, OidcError> {
    let issuer = string_claim(claims, "iss")?;
    if issuer != policy.issuer {
        return Err(OidcError::UntrustedIssuer(issuer));
    }
    let skew = policy.clock_skew.as_secs() as i64;
    let now_secs = now.unix_timestamp();
    let exp = time_claim(claims, "exp")?.ok_or_else(|| OidcError::Claim {
        claim: "exp".into(),
        problem: "is missing (tokens without an expiry are not accepted)".into(),
    })?;
    if now_secs > exp.saturating_add(skew) {
        return Err(OidcError::Expired(rfc3339_secs(exp)));
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && now_secs < nbf.saturating_sub(skew)
    {
        return Err(OidcError::NotYetValid(rfc3339_secs(nbf)));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(_) => {
            return Err(OidcError::Claim {
                claim: "aud".into(),
                problem: "is neither a string nor an array of strings".into(),
            });
        }
        None => Vec::new(),
    };
    let accepted: BTreeSet<&str> = policy.audiences().collect();
    if !audiences.iter().any(|a| accepted.contains(a)) {
        return Err(OidcError::Audience {
            found: format!("{audiences:?}"),
            expected: format!("{:?}", accepted.iter().collect::<Vec<_>>()),
        });
    }
    let name = string_claim(claims, &policy.username_claim)?;
    if name.is_empty() {
        return Err(OidcError::Claim {
            claim: policy.username_claim.clone(),
            problem: "is empty".into(),
        });
    }
    // As Kubernetes: an email address names a user only once it is verified.
    if policy.username_claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false))
    {
        return Err(OidcError::Claim {
            claim: "email_verified".into(),
            problem: "is false, so the email address cannot name the user".into(),
        });
    }
    let groups = groups(claims, &policy.groups_claim)?;
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(VerifiedToken {
        user: UserInfo::new(
            format!("{}{name}", policy.username_prefix),
            groups
                .into_iter()
                .map(|g| format!("{}{g}", policy.groups_prefix)),
        ),
        issuer,
        subject,
        expires_at: OffsetDateTime::from_unix_timestamp(exp).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

fn string_claim(claims: &Value, claim: &str) -> Result<String, OidcError> {
    match claims.get(claim) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(OidcError::Claim {
            claim: claim.into(),
            problem: "is not a string".into(),
        }),
        None => Err(OidcError::Claim {
            claim: claim.into(),
            problem: "is missing".into(),
        }),
    }
}

fn time_claim(claims: &Value, claim: &str) -> Result<Option<i64>, OidcError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| OidcError::Claim {
                claim: claim.into(),
                problem: "is not a number of seconds".into(),
            }),
        Some(_) => Err(OidcError::Claim {
            claim: claim.into(),
            problem: "is not a number of seconds".into(),
        }),
    }
}

fn groups(claims: &Value, claim: &str) -> Result<Vec<String>, OidcError> {
    if claim.is_empty() {
        return Ok(Vec::new());
    }
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(group)) => Ok(vec![group.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| OidcError::Claim {
                        claim: claim.into(),
                        problem: "has an item that is not a string".into(),
                    })
            })
            .collect(),
        Some(_) => Err(OidcError::Claim {
            claim: claim.into(),
            problem: "is neither a string nor an array of strings".into(),
        }),
    }
}

fn rfc3339_secs(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(crate::timestamp::rfc3339)
        .unwrap_or_else(|_| secs.to_string())
}

/// The PKCE code challenge (RFC 7636, method `S256`) of a code verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What the server tells clients about signing in, unauthenticated at
/// [`AUTH_CONFIG_PATH`]: the issuers `flotta login` and the console may use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthConfig {
    /// The OIDC issuers; empty when only the server's own tokens are accepted.
    #[serde(default)]
    pub providers: Vec<AuthProvider>,
}

/// One issuer clients may sign in with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthProvider {
    /// The issuer URL.
    pub issuer: String,
    /// The public OAuth client to sign in with.
    pub client_id: String,
    /// The scopes to ask for (`openid` always among them).
    pub scopes: Vec<String>,
    /// The issuer's authorization endpoint, from its discovery document, when the
    /// server could read it (the console signs in without reading it itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// The issuer's token endpoint, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
}

/// Where the server publishes its [`AuthConfig`].
pub const AUTH_CONFIG_PATH: &str = "/auth/config";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> IssuerPolicy {
        IssuerPolicy {
            username_claim: "preferred_username".into(),
            username_prefix: "oidc:".into(),
            ..IssuerPolicy::new("https://id.example.com/realms/fleet", "flotta")
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).expect("time")
    }

    fn claims() -> Value {
        json!({
            "iss": "https://id.example.com/realms/fleet",
            "aud": ["account", "flotta"],
            "sub": "0a1b",
            "exp": 1_000,
            "nbf": 100,
            "preferred_username": "alice",
            "groups": ["team-a", "ops"],
        })
    }

    #[test]
    fn accepted_claims_name_the_user_and_groups() {
        let verified = check_claims(&claims(), &policy(), at(500)).expect("accepted");
        assert_eq!(verified.user.name, "oidc:alice");
        assert_eq!(
            verified.user.groups,
            ["team-a", "ops", crate::rbac::AUTHENTICATED_GROUP]
        );
        assert_eq!(verified.subject, "0a1b");
        assert_eq!(verified.expires_at, at(1_000));
    }

    #[test]
    fn time_claims_are_checked_with_the_skew() {
        // 30 s of skew on either side.
        assert!(check_claims(&claims(), &policy(), at(1_030)).is_ok());
        assert!(matches!(
            check_claims(&claims(), &policy(), at(1_031)),
            Err(OidcError::Expired(_))
        ));
        assert!(check_claims(&claims(), &policy(), at(70)).is_ok());
        assert!(matches!(
            check_claims(&claims(), &policy(), at(69)),
            Err(OidcError::NotYetValid(_))
        ));
        let mut no_exp = claims();
        no_exp.as_object_mut().expect("object").remove("exp");
        let error = check_claims(&no_exp, &policy(), at(500)).expect_err("refused");
        assert!(error.to_string().contains("\"exp\": is missing"), "{error}");
    }

    #[test]
    fn issuer_audience_and_claim_types_are_checked() {
        let mut other = claims();
        other["iss"] = json!("https://evil.example.com");
        assert_eq!(
            check_claims(&other, &policy(), at(500)),
            Err(OidcError::UntrustedIssuer(
                "https://evil.example.com".into()
            ))
        );
        let mut aud = claims();
        aud["aud"] = json!("someone-else");
        let error = check_claims(&aud, &policy(), at(500)).expect_err("refused");
        assert!(
            error.to_string().contains("\"someone-else\"") && error.to_string().contains("flotta"),
            "{error}"
        );
        let extra = IssuerPolicy {
            extra_audiences: vec!["someone-else".into()],
            ..policy()
        };
        assert!(check_claims(&aud, &extra, at(500)).is_ok());
        let mut groups = claims();
        groups["groups"] = json!([1, 2]);
        assert!(matches!(
            check_claims(&groups, &policy(), at(500)),
            Err(OidcError::Claim { claim, .. }) if claim == "groups"
        ));
        let mut single = claims();
        single["groups"] = json!("solo");
        let user = check_claims(&single, &policy(), at(500))
            .expect("one group")
            .user;
        assert!(user.groups.contains(&"solo".to_owned()));
        let mut nameless = claims();
        nameless
            .as_object_mut()
            .expect("object")
            .remove("preferred_username");
        assert!(matches!(
            check_claims(&nameless, &policy(), at(500)),
            Err(OidcError::Claim { claim, .. }) if claim == "preferred_username"
        ));
    }

    #[test]
    fn unverified_email_does_not_name_a_user() {
        let email = IssuerPolicy {
            username_claim: "email".into(),
            ..policy()
        };
        let mut c = claims();
        c["email"] = json!("alice@example.com");
        c["email_verified"] = json!(false);
        assert!(check_claims(&c, &email, at(500)).is_err());
        c["email_verified"] = json!(true);
        assert!(check_claims(&c, &email, at(500)).is_ok());
    }

    #[test]
    fn jwt_shape_and_claimed_issuer() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://id.example.com"}"#);
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
        assert!(looks_like_jwt(&token));
        assert_eq!(
            claimed_issuer(&token).expect("iss"),
            "https://id.example.com"
        );
        assert!(!looks_like_jwt("flt_abcdef"));
        assert!(!looks_like_jwt("a.b"));
        assert!(matches!(
            claimed_issuer("a.b"),
            Err(OidcError::Malformed(_))
        ));
        assert!(matches!(
            claimed_issuer("a.!!!.c"),
            Err(OidcError::Malformed(_))
        ));
    }

    #[test]
    fn policies_need_https_and_asymmetric_algorithms() {
        assert!(policy().validate().is_ok());
        let plain = IssuerPolicy::new("http://id.example.com", "flotta");
        assert!(plain.validate().expect_err("refused").contains("https"));
        assert!(parse_algorithm("HS256").is_err());
        assert_eq!(parse_algorithm("ES256"), Ok(Algorithm::ES256));
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn discovery_must_name_the_same_issuer() {
        let body = br#"{"issuer":"https://a.example","jwks_uri":"https://a.example/keys"}"#;
        assert!(Discovery::parse(body, "https://a.example").is_ok());
        assert!(matches!(
            Discovery::parse(body, "https://b.example"),
            Err(OidcError::Discovery(_))
        ));
    }
}

#[cfg(test)]
mod signature_tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A P-256 key as PKCS#8 and as a JWK named `kid`.
    fn es256_key(kid: &str) -> (Vec<u8>, Value) {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("pair");
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        (pkcs8.as_ref().to_vec(), jwk)
    }

    fn sign(pkcs8: &[u8], kid: &str, claims: &Value) -> String {
        let header = Header {
            kid: Some(kid.into()),
            ..Header::new(Algorithm::ES256)
        };
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(pkcs8)).expect("signed")
    }

    fn claims() -> Value {
        json!({
            "iss": "https://id.example.com", "aud": "flotta", "sub": "u1",
            "exp": 2_000_000_000i64, "groups": ["team-a"],
        })
    }

    #[test]
    fn a_token_verifies_with_its_key_only() {
        let (pkcs8, jwk) = es256_key("k1");
        let (_, other) = es256_key("k2");
        // An encryption key and an unreadable key beside them are left out.
        let document = json!({"keys": [
            jwk, other,
            {"kty": "RSA", "use": "enc", "kid": "e1", "n": "AQAB", "e": "AQAB"},
            {"kty": "weird"},
        ]});
        let keys = KeySet::parse(document.to_string().as_bytes()).expect("jwks");
        assert_eq!(keys.len(), 2);
        let policy = IssuerPolicy::new("https://id.example.com", "flotta");
        let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("now");

        let token = sign(&pkcs8, "k1", &claims());
        let verified = verify(&token, &policy, &keys, now).expect("verified");
        assert_eq!(verified.user.name, "u1");

        // The same token claiming the other key's id does not verify.
        let forged = sign(&pkcs8, "k2", &claims());
        assert!(matches!(
            verify(&forged, &policy, &keys, now),
            Err(OidcError::Signature(_))
        ));
        // A key the set does not have: the caller may fetch the keys again.
        let rotated = sign(&pkcs8, "k3", &claims());
        assert_eq!(
            verify(&rotated, &policy, &keys, now),
            Err(OidcError::UnknownKey("k3".into()))
        );
        // A tampered payload does not verify.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut tampered = claims();
        tampered["sub"] = json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(tampered.to_string());
        assert!(matches!(
            verify(&parts.join("."), &policy, &keys, now),
            Err(OidcError::Signature(_))
        ));
        // An algorithm outside the policy is refused before any key is used.
        let rs_only = IssuerPolicy {
            algorithms: vec![Algorithm::RS256],
            ..policy
        };
        assert!(matches!(
            verify(&token, &rs_only, &keys, now),
            Err(OidcError::Algorithm(_))
        ));
    }
}
