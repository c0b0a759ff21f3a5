//! The catalog answers the gateway replicas share in Redis, and the contract
//! between the two roles that touch them:
//!
//! - the **gateway** fills it, cache-aside: on a miss it asks the catalog and
//!   stores the good answer under its public path, for
//!   `FAULTLINE_SHARED_CACHE_TTL`;
//! - the **catalog** empties it: when a reservation or a release changes a
//!   product's stock, it drops that product's entry and the list's.
//!
//! A key is `faultline:catalog:v1:<path>` (`/api/products`,
//! `/api/products/<id>`); the value is the catalog's JSON body. The TTL bounds
//! what invalidation cannot: an answer fetched just before a stock change and
//! stored just after it, or a drop that failed because Redis was down
//! (`catalog_cache_invalidations_total{outcome="failed"}`).

use std::time::Duration;

use crate::redis_client::{RedisCallError, RedisClient};

/// The path of the product list.
pub const PRODUCT_LIST_PATH: &str = "/api/products";

/// The path of one product.
pub fn product_path(id: i64) -> String {
    format!("{PRODUCT_LIST_PATH}/{id}")
}

/// The Redis key of a catalog path.
pub fn key(path: &str) -> String {
    format!("faultline:catalog:v1:{path}")
}

/// The gateway's side: read and fill.
#[derive(Debug, Clone)]
pub struct SharedCache {
    redis: RedisClient,
    ttl: Duration,
}

impl SharedCache {
    pub fn new(redis: RedisClient, ttl: Duration) -> Self {
        Self { redis, ttl }
    }

    /// The shared answer for `path`, if there is one.
    pub async fn get(&self, path: &str) -> Result<Option<bytes::Bytes>, RedisCallError> {
        Ok(self.redis.get(&key(path)).await?.map(bytes::Bytes::from))
    }

    /// Shares a good answer for `path`.
    pub async fn put(&self, path: &str, body: &[u8]) -> Result<(), RedisCallError> {
        self.redis.set_px(&key(path), body, self.ttl).await
    }
}

/// Starts the invalidation counters at zero.
pub fn register_metrics() {
    for outcome in ["done", "failed"] {
        metrics::counter!("catalog_cache_invalidations_total", "outcome" => outcome).absolute(0);
    }
}

/// The catalog's side: drops the entries a stock change of `products` makes
/// wrong (each product's, and the list's). Never fails the caller: a failed
/// drop is counted and logged, and the entry lives until its TTL.
pub async fn invalidate(redis: &RedisClient, products: impl IntoIterator<Item = i64>) {
    let mut keys: Vec<String> = products
        .into_iter()
        .map(|id| key(&product_path(id)))
        .collect();
    if keys.is_empty() {
        return;
    }
    keys.push(key(PRODUCT_LIST_PATH));
    let outcome = match redis.del(&keys).await {
        Ok(_) => "done",
        Err(err) => {
            tracing::warn!(error = %err, keys = keys.len(), "cannot drop shared catalog entries; they expire with their TTL");
            "failed"
        }
    };
    metrics::counter!("catalog_cache_invalidations_total", "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_public_paths() {
        assert_eq!(key(PRODUCT_LIST_PATH), "faultline:catalog:v1:/api/products");
        assert_eq!(
            key(&product_path(7)),
            "faultline:catalog:v1:/api/products/7"
        );
    }
}
