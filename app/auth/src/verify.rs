//! Verifying a bearer token.
//!
//! The order of the checks is the defence:
//! 1. the `Authorization` value is `Bearer <b64token>`, at most 4 KiB;
//! 2. the header's `alg` is EdDSA or ES256 (so `none` and every HMAC
//!    algorithm are refused before any key is looked at);
//! 3. the header names a `kid` the JWKS holds;
//! 4. the key's own algorithm, fixed when the JWKS was loaded, must be the
//!    header's: a token cannot choose how its key is used (no HS256 signed
//!    with a public key);
//! 5. the signature, then `exp`, `nbf` (both with the leeway), `iss`, `aud`;
//! 6. `sub` is a bounded printable string and `role` a known role.
//!
//! Every failure is one [`AuthError`]: a bounded `reason` for metrics and a
//! fixed description for the client, which never echoes the token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::claims::{Identity, Role};

/// The longest `Authorization` value looked at.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Why a request carries no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the Authorization header is not a single `Bearer <token>`")]
    Scheme,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted (EdDSA or ES256 only)")]
    Algorithm,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not trusted")]
    Issuer,
    #[error("the token is not meant for this API (audience)")]
    Audience,
    #[error("the token lacks a valid subject or role")]
    Claims,
}

impl AuthError {
    /// Every reason, as `auth_failures_total` labels them.
    pub const REASONS: [&'static str; 11] = [
        "missing",
        "scheme",
        "malformed",
        "algorithm",
        "unknown_key",
        "signature",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "claims",
    ];

    /// A bounded label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Scheme => "scheme",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claims => "claims",
        }
    }

    /// The RFC 6750 error code: none when no credential was sent,
    /// `invalid_request` for a malformed header, else `invalid_token`.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::Scheme => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }

    /// The `WWW-Authenticate` value of a 401 (RFC 6750, section 3).
    pub fn www_authenticate(&self, realm: &str) -> String {
        match self.error_code() {
            None => format!("Bearer realm=\"{realm}\""),
            Some(code) => {
                format!("Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{self}\"")
            }
        }
    }
}

/// The token of an `Authorization` value: `Bearer <b64token>` (the scheme
/// is case-insensitive).
pub fn bearer(value: &[u8]) -> Result<&str, AuthError> {
    if value.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Scheme)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Scheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Scheme);
    }
    let token = token.trim_matches(' ');
    let b64token = !token.is_empty()
        && token.trim_end_matches('=').bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if b64token {
        Ok(token)
    } else {
        Err(AuthError::Scheme)
    }
}

/// What a verifier accepts besides the keys.
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub audience: String,
    /// Clock skew forgiven on `exp` and `nbf`.
    pub leeway: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            issuer: crate::DEFAULT_ISSUER.to_owned(),
            audience: crate::DEFAULT_AUDIENCE.to_owned(),
            leeway: Duration::from_secs(30),
        }
    }
}

/// A verification key and the one algorithm it is used with.
#[derive(Clone)]
struct Key {
    decoding: DecodingKey,
    algorithm: Algorithm,
}

/// The trusted public keys, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<_> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

/// A JWKS that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS document: {0}")]
    Parse(#[from] serde_json::Error),
    #[error(
        "the JWKS holds no usable key (EdDSA Ed25519 or ES256 P-256, with a kid); skipped: {0}"
    )]
    Empty(String),
}

impl KeySet {
    /// The usable keys of a JWKS document: Ed25519 (EdDSA) and P-256
    /// (ES256) public keys with a `kid` and, when they state one, the
    /// matching `alg`. Others are skipped and named in the second value.
    pub fn from_jwks(text: &str) -> Result<(Self, Vec<String>), JwksError> {
        let jwks: JwkSet = serde_json::from_str(text)?;
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for jwk in &jwks.keys {
            let kid = jwk.common.key_id.clone();
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    Some(Algorithm::EdDSA)
                }
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Some(Algorithm::ES256)
                }
                _ => None,
            };
            let stated = jwk
                .common
                .key_algorithm
                .map(|alg| alg.to_string().parse::<Algorithm>().ok());
            let usable = match (kid, algorithm, stated) {
                (Some(kid), Some(algorithm), None) => Some((kid, algorithm)),
                (Some(kid), Some(algorithm), Some(Some(stated))) if stated == algorithm => {
                    Some((kid, algorithm))
                }
                _ => None,
            };
            let decoding = usable
                .as_ref()
                .and_then(|_| DecodingKey::from_jwk(jwk).ok());
            match (usable, decoding) {
                (Some((kid, algorithm)), Some(decoding)) => {
                    keys.insert(
                        kid,
                        Key {
                            decoding,
                            algorithm,
                        },
                    );
                }
                _ => skipped.push(
                    jwk.common
                        .key_id
                        .clone()
                        .unwrap_or_else(|| "(no kid)".to_owned()),
                ),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::Empty(skipped.join(", ")));
        }
        Ok((Self { keys }, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<_> = self.keys.keys().cloned().collect();
        kids.sort();
        kids
    }
}

/// Verifies tokens against a key set that can be replaced while it runs.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Arc<RwLock<Arc<KeySet>>>,
    policy: Policy,
}

/// The `alg` of a token's header, read without trusting anything else in it.
fn header_alg(token: &str) -> Result<String, AuthError> {
    let header = token.split('.').next().ok_or(AuthError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    match header.get("alg") {
        Some(Value::String(alg)) => Ok(alg.clone()),
        _ => Err(AuthError::Malformed),
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => AuthError::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::InvalidSubject => AuthError::Claims,
        _ => AuthError::Malformed,
    }
}

impl Verifier {
    pub fn new(keys: KeySet, policy: Policy) -> Self {
        Self {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            policy,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the trusted keys (a JWKS refresh).
    pub fn replace_keys(&self, keys: KeySet) {
        let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(keys);
    }

    /// The trusted keys now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Verifies an `Authorization` header's value.
    pub fn verify_header(&self, value: Option<&[u8]>) -> Result<Identity, AuthError> {
        self.verify(bearer(value.ok_or(AuthError::Missing)?)?)
    }

    /// Verifies a compact JWS token.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(AuthError::Malformed);
        }
        let alg = header_alg(token)?;
        if alg != "EdDSA" && alg != "ES256" {
            return Err(AuthError::Algorithm);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| map_error(e.kind()))?;
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let keys = self.keys();
        let key = keys.keys.get(&kid).ok_or(AuthError::UnknownKey)?;
        if header.alg != key.algorithm {
            return Err(AuthError::Algorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.policy.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.policy.issuer]);
        validation.set_audience(&[&self.policy.audience]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| map_error(e.kind()))?;
        let subject = match data.claims.get("sub") {
            Some(Value::String(sub)) if Identity::valid_subject(sub) => sub.clone(),
            _ => return Err(AuthError::Claims),
        };
        let role = match data.claims.get("role") {
            Some(Value::String(role)) => role.parse::<Role>().map_err(|_| AuthError::Claims)?,
            _ => return Err(AuthError::Claims),
        };
        Ok(Identity { subject, role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge;
    use crate::keys::SigningKey;
    use crate::mint::{Minter, now};

    fn minter(kid: &str, seed: u8) -> Minter {
        Minter::new(SigningKey::from_seed(kid, [seed; 32]).unwrap())
    }

    fn verifier(minters: &[&Minter]) -> Verifier {
        let jwks = JwkSet {
            keys: minters
                .iter()
                .map(|m| m.key().public_jwk().unwrap())
                .collect(),
        };
        let (keys, skipped) = KeySet::from_jwks(&serde_json::to_string(&jwks).unwrap()).unwrap();
        assert!(skipped.is_empty());
        Verifier::new(keys, Policy::default())
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_good_token_names_its_subject_and_role() {
        let m = minter("k1", 1);
        let v = verifier(&[&m]);
        let token = m.token("alice", Role::Customer, HOUR).unwrap();
        let header = format!("Bearer {token}");
        assert_eq!(
            v.verify_header(Some(header.as_bytes())),
            Ok(Identity {
                subject: "alice".into(),
                role: Role::Customer
            })
        );
        // The scheme is case-insensitive.
        let lower = format!("bearer {token}");
        assert!(v.verify_header(Some(lower.as_bytes())).is_ok());
    }

    #[test]
    fn every_kind_of_bad_token_is_refused_with_its_reason() {
        let m = minter("k1", 1);
        let v = verifier(&[&m]);
        let stranger = minter("k1", 2);
        let cases = [
            (forge::alg_none(&m, "alice"), AuthError::Algorithm),
            (
                forge::hs256_with_public_key(&m, "alice"),
                AuthError::Algorithm,
            ),
            (forge::unknown_kid(&m, "alice"), AuthError::UnknownKey),
            (forge::no_kid(&m, "alice"), AuthError::UnknownKey),
            (
                stranger.token("alice", Role::Admin, HOUR).unwrap(),
                AuthError::Signature,
            ),
            (forge::expired(&m, "alice"), AuthError::Expired),
            (forge::not_yet_valid(&m, "alice"), AuthError::NotYetValid),
            (forge::wrong_issuer(&m, "alice"), AuthError::Issuer),
            (forge::wrong_audience(&m, "alice"), AuthError::Audience),
            (forge::unknown_role(&m, "alice"), AuthError::Claims),
            (forge::tampered(&m, "alice"), AuthError::Signature),
            ("a.b".to_owned(), AuthError::Malformed),
            ("e30.e30.".to_owned(), AuthError::Malformed),
        ];
        for (token, expected) in cases {
            assert_eq!(v.verify(&token), Err(expected.clone()), "{token}");
            assert!(AuthError::REASONS.contains(&expected.reason()));
        }
    }

    #[test]
    fn the_leeway_forgives_small_clock_skew_only() {
        let m = minter("k1", 1);
        let v = verifier(&[&m]);
        let mut claims = m.claims("alice", Role::Customer, HOUR);
        claims.exp = now() - 10;
        assert!(v.verify(&m.sign(&claims).unwrap()).is_ok(), "10 s late");
        claims.exp = now() - 120;
        assert_eq!(v.verify(&m.sign(&claims).unwrap()), Err(AuthError::Expired));
    }

    #[test]
    fn headers_that_are_not_a_bearer_token_are_refused() {
        let v = verifier(&[&minter("k1", 1)]);
        assert_eq!(v.verify_header(None), Err(AuthError::Missing));
        for bad in [
            "Basic YWxpY2U6cHc=",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer ä",
        ] {
            assert_eq!(
                v.verify_header(Some(bad.as_bytes())),
                Err(AuthError::Scheme),
                "{bad}"
            );
        }
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
        assert_eq!(
            v.verify_header(Some(huge.as_bytes())),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn a_rotated_key_is_honoured_alongside_the_old_one() {
        let old = minter("old", 1);
        let new = minter("new", 2);
        let v = verifier(&[&old]);
        let before = old.token("alice", Role::Customer, HOUR).unwrap();
        let after = new.token("alice", Role::Customer, HOUR).unwrap();
        assert_eq!(v.verify(&after), Err(AuthError::UnknownKey));
        let both = verifier(&[&old, &new]);
        v.replace_keys((*both.keys()).clone());
        assert!(v.verify(&before).is_ok());
        assert!(v.verify(&after).is_ok());
        let retired = verifier(&[&new]);
        v.replace_keys((*retired.keys()).clone());
        assert_eq!(v.verify(&before), Err(AuthError::UnknownKey));
    }

    #[test]
    fn a_jwks_keeps_only_asymmetric_keys_with_an_id() {
        let good = minter("good", 1).key().public_jwk().unwrap();
        let mut no_kid = minter("x", 2).key().public_jwk().unwrap();
        no_kid.common.key_id = None;
        let text = serde_json::json!({"keys": [
            good,
            no_kid,
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "liar", "alg": "HS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]})
        .to_string();
        let (keys, skipped) = KeySet::from_jwks(&text).unwrap();
        assert_eq!(keys.kids(), vec!["good".to_owned()]);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(matches!(
            KeySet::from_jwks(r#"{"keys": []}"#),
            Err(JwksError::Empty(_))
        ));
        assert!(matches!(KeySet::from_jwks("{"), Err(JwksError::Parse(_))));
    }

    #[test]
    fn the_challenge_names_the_error_without_echoing_the_token() {
        assert_eq!(
            AuthError::Missing.www_authenticate("faultline"),
            "Bearer realm=\"faultline\""
        );
        let expired = AuthError::Expired.www_authenticate("faultline");
        assert!(expired.contains("error=\"invalid_token\""), "{expired}");
        assert!(expired.contains("error_description=\"the token has expired\""));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_is_never_accepted(input in ".{0,600}") {
            let v = verifier(&[&minter("k1", 1)]);
            proptest::prop_assert!(v.verify_header(Some(input.as_bytes())).is_err());
            proptest::prop_assert!(v.verify(&input).is_err());
        }
    }
}
