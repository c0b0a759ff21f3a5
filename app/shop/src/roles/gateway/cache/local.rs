//! The gateway's own, first-level cache of catalog answers, by path: in its
//! memory, bounded, shared by nothing. It serves two purposes:
//!
//! - **fresh hits**: an answer younger than the TTL is served without asking
//!   Redis or the catalog (product data may be that old; checkout's
//!   reservation is the authority on stock);
//! - **stale fallback**: while the catalog fails, the last good answer is
//!   served, however old, marked `X-Degraded: stale-catalog`.
//!
//! Lookups are counted in `catalog_cache_lookups_total{level="local"}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;

/// A good catalog answer and when it was fetched.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    pub content_type: Option<HeaderValue>,
    pub body: bytes::Bytes,
    fetched_at: Instant,
}

impl CachedAnswer {
    pub fn new(content_type: Option<HeaderValue>, body: bytes::Bytes) -> Self {
        Self {
            content_type,
            body,
            fetched_at: Instant::now(),
        }
    }
}

/// A bounded cache of the last good catalog answers, by path.
#[derive(Clone)]
pub struct LocalCache {
    entries: Arc<quick_cache::sync::Cache<String, CachedAnswer>>,
    ttl: Duration,
}

impl std::fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCache")
            .field("entries", &self.entries.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl LocalCache {
    /// Keeps at most `entries` answers (the list and product details); serves
    /// them without asking the catalog while younger than `ttl` (zero: never).
    pub fn new(entries: usize, ttl: Duration) -> Self {
        Self {
            entries: Arc::new(quick_cache::sync::Cache::new(entries.max(1))),
            ttl,
        }
    }

    /// The answer for `path` if it is younger than the TTL; counts the lookup.
    pub fn fresh(&self, path: &str) -> Option<CachedAnswer> {
        let fresh = self.fresh_uncounted(path);
        let result = if fresh.is_some() { "hit" } else { "miss" };
        metrics::counter!("catalog_cache_lookups_total", "level" => "local", "result" => result)
            .increment(1);
        fresh
    }

    /// The answer for `path` if it is younger than the TTL, without counting
    /// a lookup.
    pub fn fresh_uncounted(&self, path: &str) -> Option<CachedAnswer> {
        self.entries
            .get(path)
            .filter(|answer| answer.fetched_at.elapsed() < self.ttl)
    }

    /// The last good answer for `path`, however old.
    pub fn stale(&self, path: &str) -> Option<CachedAnswer> {
        self.entries.get(path)
    }

    /// Keeps a good answer.
    pub fn store(&self, path: String, answer: CachedAnswer) {
        self.entries.insert(path, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> CachedAnswer {
        CachedAnswer::new(None, bytes::Bytes::from_static(b"{}"))
    }

    #[test]
    fn it_keeps_what_it_was_given() {
        let cache = LocalCache::new(1000, Duration::from_secs(60));
        for path in ["/api/products", "/api/products/1"] {
            cache.store(path.to_owned(), answer());
        }
        for _ in 0..100 {
            assert!(cache.fresh("/api/products").is_some());
        }
        assert!(cache.stale("/api/products/1").is_some());
        assert!(cache.stale("/api/products/2").is_none());
    }

    #[test]
    fn an_answer_older_than_the_ttl_is_only_stale() {
        let cache = LocalCache::new(10, Duration::from_millis(1));
        cache.store("/api/products".to_owned(), answer());
        let until = Instant::now() + Duration::from_secs(5);
        while cache.fresh("/api/products").is_some() {
            assert!(Instant::now() < until, "the answer never went stale");
            std::thread::yield_now();
        }
        assert!(cache.stale("/api/products").is_some());
    }

    #[test]
    fn a_zero_ttl_never_serves_fresh() {
        let cache = LocalCache::new(10, Duration::ZERO);
        cache.store("/api/products".to_owned(), answer());
        assert!(cache.fresh("/api/products").is_none());
        assert!(cache.stale("/api/products").is_some());
    }
}
