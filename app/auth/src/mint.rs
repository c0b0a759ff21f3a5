//! Tokens signed with a key of a key directory.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;

use crate::claims::{Claims, Role};
use crate::keys::{KeyError, SigningKey};
use crate::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs tokens for one issuer and audience.
#[derive(Debug, Clone)]
pub struct Minter {
    key: SigningKey,
    pub issuer: String,
    pub audience: String,
}

impl Minter {
    /// A minter of the development issuer and the shop's audience.
    pub fn new(key: SigningKey) -> Self {
        Self {
            key,
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The claims of a token for `subject` valid from now for `ttl`.
    pub fn claims(&self, subject: &str, role: Role, ttl: Duration) -> Claims {
        let now = now();
        Claims {
            sub: subject.to_owned(),
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now.saturating_add(ttl.as_secs()),
            nbf: now,
            iat: now,
        }
    }

    /// A token for `subject`, valid from now for `ttl`.
    pub fn token(&self, subject: &str, role: Role, ttl: Duration) -> Result<String, KeyError> {
        self.sign(&self.claims(subject, role, ttl))
    }

    /// Signs any claims (the tests' expired and misaddressed tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let mut header = Header::new(self.key.algorithm());
        header.kid = Some(self.key.kid().to_owned());
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            &self.key.encoding_key(),
        )?)
    }
}
