//! The bad tokens an attacker or a broken client sends: for the bad-input
//! campaign, the credential-stuffing experiment and the tests. Each is
//! refused by [`crate::Verifier`] with a known reason.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::claims::{Claims, Role};
use crate::mint::{Minter, now};

const HOUR: Duration = Duration::from_secs(3600);

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn good_claims(minter: &Minter, subject: &str) -> Claims {
    minter.claims(subject, Role::Customer, HOUR)
}

fn signed(minter: &Minter, claims: &Claims) -> String {
    minter.sign(claims).unwrap_or_default()
}

/// `alg: none`, no signature.
pub fn alg_none(minter: &Minter, subject: &str) -> String {
    let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": minter.key().kid()});
    let claims = serde_json::to_vec(&good_claims(minter, subject)).unwrap_or_default();
    format!("{}.{}.", b64(header.to_string().as_bytes()), b64(&claims))
}

/// HS256 with the public key's bytes as the secret: the algorithm-confusion
/// attack on a verifier that lets the token pick the algorithm.
pub fn hs256_with_public_key(minter: &Minter, subject: &str) -> String {
    let public = minter
        .key()
        .public_jwk()
        .ok()
        .and_then(|jwk| serde_json::to_vec(&jwk).ok())
        .unwrap_or_default();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(minter.key().kid().to_owned());
    EncodingKey::from_secret(&public)
        .ok()
        .and_then(|key| jsonwebtoken::encode(&header, &good_claims(minter, subject), &key).ok())
        .unwrap_or_default()
}

/// Signed by the right key, but naming a `kid` nobody published.
pub fn unknown_kid(minter: &Minter, subject: &str) -> String {
    let mut header = Header::new(minter.key().algorithm());
    header.kid = Some("no-such-key".to_owned());
    jsonwebtoken::encode(
        &header,
        &good_claims(minter, subject),
        &minter.key().encoding_key(),
    )
    .unwrap_or_default()
}

/// Signed, without a `kid`.
pub fn no_kid(minter: &Minter, subject: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(minter.key().algorithm()),
        &good_claims(minter, subject),
        &minter.key().encoding_key(),
    )
    .unwrap_or_default()
}

/// Expired an hour ago.
pub fn expired(minter: &Minter, subject: &str) -> String {
    let mut claims = good_claims(minter, subject);
    claims.iat = now().saturating_sub(2 * 3600);
    claims.nbf = claims.iat;
    claims.exp = now().saturating_sub(3600);
    signed(minter, &claims)
}

/// Valid only from an hour from now.
pub fn not_yet_valid(minter: &Minter, subject: &str) -> String {
    let mut claims = good_claims(minter, subject);
    claims.nbf = now() + 3600;
    claims.exp = now() + 2 * 3600;
    signed(minter, &claims)
}

/// Issued by somebody else.
pub fn wrong_issuer(minter: &Minter, subject: &str) -> String {
    let mut claims = good_claims(minter, subject);
    claims.iss = "https://attacker.example".to_owned();
    signed(minter, &claims)
}

/// Meant for another API.
pub fn wrong_audience(minter: &Minter, subject: &str) -> String {
    let mut claims = good_claims(minter, subject);
    claims.aud = "another-api".to_owned();
    signed(minter, &claims)
}

/// A role the shop does not know.
pub fn unknown_role(minter: &Minter, subject: &str) -> String {
    let claims = serde_json::json!({
        "sub": subject, "role": "root", "iss": minter.issuer, "aud": minter.audience,
        "exp": now() + 3600, "nbf": now(), "iat": now(),
    });
    let mut header = Header::new(minter.key().algorithm());
    header.kid = Some(minter.key().kid().to_owned());
    jsonwebtoken::encode(&header, &claims, &minter.key().encoding_key()).unwrap_or_default()
}

/// A good token whose payload was changed after signing (admin instead of
/// customer).
pub fn tampered(minter: &Minter, subject: &str) -> String {
    let token = signed(minter, &good_claims(minter, subject));
    let mut parts = token.splitn(3, '.');
    let (Some(header), Some(_), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return token;
    };
    let mut claims = good_claims(minter, subject);
    claims.role = Role::Admin;
    let payload = serde_json::to_vec(&claims).unwrap_or_default();
    format!("{header}.{}.{signature}", b64(&payload))
}

/// Every kind above, named by the reason the verifier gives.
pub fn all(minter: &Minter, subject: &str) -> Vec<(&'static str, String)> {
    vec![
        ("algorithm", alg_none(minter, subject)),
        ("algorithm", hs256_with_public_key(minter, subject)),
        ("unknown_key", unknown_kid(minter, subject)),
        ("unknown_key", no_kid(minter, subject)),
        ("expired", expired(minter, subject)),
        ("not_yet_valid", not_yet_valid(minter, subject)),
        ("issuer", wrong_issuer(minter, subject)),
        ("audience", wrong_audience(minter, subject)),
        ("claims", unknown_role(minter, subject)),
        ("signature", tampered(minter, subject)),
    ]
}
