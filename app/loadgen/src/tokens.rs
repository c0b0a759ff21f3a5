//! The customers' bearer tokens: minted for every customer before the first
//! request, and minted again once half of their life has passed.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use faultline_auth::{KeyError, Role};

use crate::config::Customers;

/// How long to wait before trying again when minting a token failed (the
/// old token is still valid for half its life).
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// One customer's token and when to mint it again.
#[derive(Debug)]
struct Minted {
    token: Arc<str>,
    refresh_at: Instant,
}

/// The tokens of every customer of a run.
#[derive(Debug)]
pub(crate) struct Wallet {
    customers: Customers,
    subjects: Vec<Arc<str>>,
    tokens: Vec<RwLock<Minted>>,
}

impl Wallet {
    /// Mints a token for every customer: a key that cannot sign fails here,
    /// before the run starts.
    pub(crate) fn mint_all(customers: &Customers) -> Result<Self, KeyError> {
        let now = Instant::now();
        let mut subjects = Vec::with_capacity(customers.count as usize);
        let mut tokens = Vec::with_capacity(customers.count as usize);
        for subject in customers.subjects() {
            let token = customers
                .minter
                .token(&subject, Role::Customer, customers.ttl)?;
            subjects.push(Arc::from(subject));
            tokens.push(RwLock::new(Minted {
                token: Arc::from(token),
                refresh_at: now + customers.ttl / 2,
            }));
        }
        Ok(Self {
            customers: customers.clone(),
            subjects,
            tokens,
        })
    }

    /// Whether product reads carry a token too.
    pub(crate) fn authenticated_reads(&self) -> bool {
        self.customers.authenticated_reads
    }

    /// The customer a `pick` of the planner stands for.
    pub(crate) fn customer(&self, pick: u32) -> usize {
        pick as usize % self.tokens.len().max(1)
    }

    /// The subject of customer `index`.
    pub(crate) fn subject(&self, index: usize) -> Option<&Arc<str>> {
        self.subjects.get(index)
    }

    /// The token of customer `index`, minted again if it is due.
    pub(crate) fn token(&self, index: usize) -> Option<Arc<str>> {
        self.token_at(index, Instant::now())
    }

    fn token_at(&self, index: usize, now: Instant) -> Option<Arc<str>> {
        let slot = self.tokens.get(index)?;
        {
            let minted = slot.read().unwrap_or_else(PoisonError::into_inner);
            if now < minted.refresh_at {
                return Some(Arc::clone(&minted.token));
            }
        }
        let mut minted = slot.write().unwrap_or_else(PoisonError::into_inner);
        // Another request may have minted it meanwhile.
        if now >= minted.refresh_at {
            let subject = self.subjects.get(index)?;
            match self
                .customers
                .minter
                .token(subject, Role::Customer, self.customers.ttl)
            {
                Ok(token) => {
                    minted.token = Arc::from(token);
                    minted.refresh_at = now + self.customers.ttl / 2;
                }
                Err(err) => {
                    tracing::warn!(%subject, %err, "cannot mint a new token; the old one is kept");
                    minted.refresh_at = now + RETRY_AFTER.min(self.customers.ttl / 4);
                }
            }
        }
        Some(Arc::clone(&minted.token))
    }
}

#[cfg(test)]
mod tests {
    use faultline_auth::{KeySet, Minter, Policy, SigningKey, Verifier};

    use super::*;

    fn minter() -> Minter {
        Minter::new(SigningKey::from_seed("k1", [3; 32]).unwrap())
    }

    fn verifier(minter: &Minter) -> Verifier {
        let jwks = serde_json::json!({"keys": [minter.key().public_jwk().unwrap()]});
        let (keys, _) = KeySet::from_jwks(&jwks.to_string()).unwrap();
        Verifier::new(keys, Policy::default())
    }

    #[test]
    fn every_customer_gets_a_valid_token_of_its_own() {
        let customers = Customers::new(minter(), 3, "customer");
        let wallet = Wallet::mint_all(&customers).unwrap();
        let verifier = verifier(&customers.minter);
        for index in 0..3 {
            let token = wallet.token(index).unwrap();
            let identity = verifier.verify(&token).unwrap();
            assert_eq!(identity.subject, format!("customer-{}", index + 1));
            assert_eq!(identity.role, Role::Customer);
            assert_eq!(
                wallet.subject(index).map(|s| &**s),
                Some(&*identity.subject)
            );
        }
        assert_eq!(wallet.token(3), None);
        assert_eq!(wallet.customer(7), 1);
    }

    #[test]
    fn a_token_is_minted_again_after_half_its_life() {
        let mut customers = Customers::new(minter(), 1, "alice");
        customers.ttl = Duration::from_secs(3600);
        let wallet = Wallet::mint_all(&customers).unwrap();
        let start = Instant::now();
        let first = wallet.token_at(0, start).unwrap();
        let claims = |token: &str| {
            use base64::Engine;
            let payload = token.split('.').nth(1).unwrap();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap();
            serde_json::from_slice::<faultline_auth::Claims>(&bytes).unwrap()
        };
        assert_eq!(claims(&first).exp - claims(&first).iat, 3600);
        // Before half its life: the same token.
        let later = start + Duration::from_secs(1799);
        assert!(Arc::ptr_eq(&first, &wallet.token_at(0, later).unwrap()));
        // After: a new one, used until half of its own life has passed.
        let due = start + Duration::from_secs(1801);
        let second = wallet.token_at(0, due).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(claims(&second).sub, "alice");
        let again = wallet.token_at(0, due + Duration::from_secs(1700)).unwrap();
        assert!(Arc::ptr_eq(&second, &again));
        let third = wallet.token_at(0, due + Duration::from_secs(1801)).unwrap();
        assert!(!Arc::ptr_eq(&second, &third));
    }
}
