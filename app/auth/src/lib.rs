//! Bearer JWTs for faultline.
//!
//! - [`keys`]: Ed25519 signing keys, their public JWKS, and a key directory
//!   that holds several keys at once so that one can rotate
//!   (`faultline-shop keys init | rotate | retire`).
//! - [`mint`]: tokens signed with the directory's current key
//!   (`faultline-shop token`, the load generator, the tests).
//! - [`verify`]: what the gateway and orders run on every request: the key
//!   chosen by `kid` from a JWKS, the algorithm taken from the key and never
//!   from the token, `exp`, `nbf`, `iss` and `aud` checked with a small
//!   leeway, and every failure named by a bounded reason.
//! - [`forge`]: the bad tokens an attacker or a broken client sends, for the
//!   bad-input campaign and the credential-stuffing experiment.
//!
//! This crate is synchronous and touches no network: fetching a JWKS from a
//! URL is the caller's job ([`verify::KeySet::from_jwks`] takes its text).

pub mod claims;
pub mod forge;
pub mod keys;
pub mod mint;
pub mod verify;

pub use claims::{Claims, Identity, Role};
pub use keys::{KeyDir, KeyError, SigningKey};
pub use mint::Minter;
pub use verify::{AuthError, KeySet, Policy, Verifier};

/// The issuer of the development keys' tokens, and the default one a
/// verifier accepts.
pub const DEFAULT_ISSUER: &str = "faultline-dev";
/// The audience of the shop's public API.
pub const DEFAULT_AUDIENCE: &str = "faultline-shop";
