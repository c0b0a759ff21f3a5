//! The tokens the engine mints for the shop's public API: the load's
//! customers, and the `bearer` of an http probe or action. Every one is
//! signed with the current key of the target's key directory
//! ([`Environment::keys`](crate::environment::Environment::keys)), which the
//! gateway trusts through that directory's JWKS. The directory is read when
//! a token is needed, not when the plan is compiled: `faultline validate`
//! and `--dry-run` need no key, and a [`Bearer`] signs with whatever key is
//! current when it mints (a rotation is honoured at once).

use std::time::Duration;

use faultline_auth::{KeyDir, KeyError, Minter, Role};

use crate::environment::Secret;

/// How long the token of one probe evaluation or one request is valid: it
/// is minted right before it is sent.
pub const REQUEST_TOKEN_TTL: Duration = Duration::from_secs(300);

/// How long the token of an undo written to the ledger is valid: `faultline
/// cleanup` may send it a while after the run died.
pub const LEDGER_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key directory has no usable current key.
    #[error("cannot read the signing key of target.keys ({dir}): {source}")]
    Key { dir: String, source: KeyError },
    /// Signing failed.
    #[error("cannot mint a token for {subject:?}: {source}")]
    Mint { subject: String, source: KeyError },
}

/// A minter of the current key of the key directory at `dir`.
pub fn minter(dir: &str) -> Result<Minter, IdentityError> {
    KeyDir::new(dir)
        .signing_key(None)
        .map(Minter::new)
        .map_err(|source| IdentityError::Key {
            dir: dir.to_owned(),
            source,
        })
}

/// A minter that forges `trusted`'s tokens: a fresh Ed25519 key nobody
/// trusts, under the same `kid`, so that every token it signs fails the
/// signature check (what a credential-stuffing attack sends).
pub fn forger(trusted: &Minter) -> Result<Minter, IdentityError> {
    faultline_auth::SigningKey::generate(trusted.key().kid())
        .map(Minter::new)
        .map_err(|source| IdentityError::Mint {
            subject: "(forged)".to_owned(),
            source,
        })
}

/// Who a request is sent as: a fresh token for one subject and role at each
/// send, signed with the current key of a key directory.
#[derive(Debug, Clone)]
pub struct Bearer {
    keys: String,
    subject: String,
    role: Role,
}

impl Bearer {
    /// Tokens for `subject` and `role`, signed with the key directory at
    /// `keys` (read at each [`Bearer::mint`]).
    pub fn new(keys: impl Into<String>, subject: impl Into<String>, role: Role) -> Self {
        Self {
            keys: keys.into(),
            subject: subject.into(),
            role,
        }
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// A token valid from now for `ttl`, signed with the directory's
    /// current key.
    pub fn mint(&self, ttl: Duration) -> Result<Secret, IdentityError> {
        minter(&self.keys)?
            .token(&self.subject, self.role, ttl)
            .map(Secret::new)
            .map_err(|source| IdentityError::Mint {
                subject: self.subject.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use faultline_auth::{KeySet, Policy, Verifier};

    use super::*;
    use crate::environment::Environment;

    #[test]
    fn bearers_mint_tokens_of_the_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        keys.ensure().unwrap();
        let path = dir.path().display().to_string();
        let bearer = Bearer::new(&path, "ops", Role::Admin);
        let jwks = std::fs::read_to_string(keys.jwks_path()).unwrap();
        let verifier = Verifier::new(KeySet::from_jwks(&jwks).unwrap().0, Policy::default());
        let token = bearer.mint(REQUEST_TOKEN_TTL).unwrap();
        let identity = verifier.verify(token.expose()).unwrap();
        assert_eq!(
            (identity.subject.as_str(), identity.role),
            ("ops", Role::Admin)
        );
        assert_eq!(format!("{token}"), Secret::HIDDEN, "never shown");

        // The key is read when a token is minted: a rotation counts at once.
        keys.rotate(Some("next")).unwrap();
        let token = bearer.mint(REQUEST_TOKEN_TTL).unwrap();
        assert_eq!(
            verifier.verify(token.expose()),
            Err(faultline_auth::AuthError::UnknownKey),
            "signed with the new key, which this verifier does not know yet"
        );

        let err = Bearer::new("/nonexistent/keys", "ops", Role::Admin)
            .mint(REQUEST_TOKEN_TTL)
            .unwrap_err()
            .to_string();
        assert!(err.contains("target.keys (/nonexistent/keys)"), "{err}");
    }

    #[test]
    fn the_key_directory_is_a_target_setting() {
        let env = Environment::from_env_vars([(
            "FAULTLINE_TARGET_KEYS".to_owned(),
            "/run/keys".to_owned(),
        )])
        .unwrap();
        assert_eq!(env.keys.as_deref(), Some("/run/keys"));
        let mut other = Environment::default();
        other.set_assignment("keys = compose/keys").unwrap();
        let env = env.overlay(&other);
        assert_eq!(env.lookup("keys"), Some("compose/keys"));
        assert!(
            env.settings()
                .contains(&("keys".to_owned(), "compose/keys".to_owned()))
        );
        assert_eq!(env.redacted().keys.as_deref(), Some("compose/keys"));
    }
}
