//! The gateway's cache of catalog answers, in two levels:
//!
//! 1. [`LocalCache`], in the replica's memory: answers younger than
//!    `FAULTLINE_CATALOG_CACHE_TTL` (1 s) are served from it, and it keeps the
//!    last good answer of every path as the stale fallback while the catalog
//!    fails;
//! 2. the [`SharedCache`] in Redis (with `FAULTLINE_REDIS_URL`), which every
//!    gateway replica reads and fills, for `FAULTLINE_SHARED_CACHE_TTL`, and
//!    from which the catalog drops a product when its stock changes.
//!
//! A miss in both goes to the catalog through [`Flights`]: one fetch per path
//! at a time per replica. When Redis fails (an error, its timeout, or its
//! breaker open), the read goes on as if there were no shared level, and the
//! answer is counted in `degraded_responses_total{reason="shared_cache_unavailable"}`.
//!
//! Lookups are counted per level in `catalog_cache_lookups_total{level,result}`.

mod flight;
mod local;

use axum::http::HeaderValue;
use tracing::Instrument;

pub use flight::Flights;
pub use local::{CachedAnswer, LocalCache};

use crate::shared_cache::SharedCache;

/// Starts the cache's counters at zero.
pub fn register_metrics() {
    for result in ["hit", "miss"] {
        metrics::counter!("catalog_cache_lookups_total", "level" => "local", "result" => result)
            .absolute(0);
    }
    for result in ["hit", "miss", "error"] {
        metrics::counter!("catalog_cache_lookups_total", "level" => "shared", "result" => result)
            .absolute(0);
    }
    for reason in ["stale_catalog", "shared_cache_unavailable"] {
        metrics::counter!("degraded_responses_total", "reason" => reason).absolute(0);
    }
}

/// Both levels, and the fetches in flight.
#[derive(Debug, Clone)]
pub struct CatalogCache<T> {
    local: LocalCache,
    shared: Option<SharedCache>,
    flights: Flights<T>,
}

impl<T: Clone> CatalogCache<T> {
    pub fn new(local: LocalCache, shared: Option<SharedCache>) -> Self {
        Self {
            local,
            shared,
            flights: Flights::default(),
        }
    }

    /// Whether concurrent misses for one path share one fetch (the default).
    #[must_use]
    pub fn coalescing(mut self, coalesce: bool) -> Self {
        self.flights = Flights::new(coalesce);
        self
    }

    /// A fresh answer from the local level, else from the shared one (which
    /// then fills the local level too).
    pub async fn lookup(&self, path: &str) -> Option<CachedAnswer> {
        if let Some(fresh) = self.local.fresh(path) {
            return Some(fresh);
        }
        let shared = self.shared.as_ref()?;
        let (found, result) = match shared.get(path).await {
            Ok(Some(body)) => {
                let answer = CachedAnswer::new(Some(json()), body);
                self.local.store(path.to_owned(), answer.clone());
                (Some(answer), "hit")
            }
            Ok(None) => (None, "miss"),
            Err(err) => {
                tracing::debug!(error = %err, path, "shared cache unavailable: reading without it");
                metrics::counter!("degraded_responses_total", "reason" => "shared_cache_unavailable")
                    .increment(1);
                (None, "error")
            }
        };
        metrics::counter!("catalog_cache_lookups_total", "level" => "shared", "result" => result)
            .increment(1);
        found
    }

    /// A fresh local answer, without counting a lookup: for a caller that
    /// waited for another's fetch and may find its result there.
    pub fn fetched_meanwhile(&self, path: &str) -> Option<CachedAnswer> {
        self.local.fresh_uncounted(path)
    }

    /// Keeps a good answer: locally at once, and shared in the background
    /// (the caller does not wait for Redis).
    pub fn store(&self, path: &str, answer: CachedAnswer) {
        self.local.store(path.to_owned(), answer.clone());
        if let Some(shared) = self.shared.clone() {
            let path = path.to_owned();
            tokio::spawn(
                async move {
                    if let Err(err) = shared.put(&path, &answer.body).await {
                        tracing::debug!(error = %err, path, "cannot share a catalog answer");
                    }
                }
                .in_current_span(),
            );
        }
    }

    /// The last good local answer for `path`, however old.
    pub fn stale(&self, path: &str) -> Option<CachedAnswer> {
        self.local.stale(path)
    }

    /// Runs `fetch` for `path`, or waits for the one already running.
    pub async fn fetch_once<F, Fut>(&self, path: &str, fetch: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.flights.run(path, fetch).await
    }
}

/// The catalog answers in JSON.
fn json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}
