//! An upstream's endpoints (replicas), with passive outlier ejection.
//!
//! Calls go round-robin over the healthy endpoints. A connection failure
//! ejects an endpoint at once (a dead replica is out of rotation after its
//! first refused connection, well inside a second); `eject_after` consecutive
//! 5xx answers or timeouts eject it too. An ejected endpoint comes back after
//! its ejection time, which doubles with each repeated ejection up to
//! `max_ejection`; one success resets it. When every endpoint is ejected, the
//! one whose ejection ends first is tried anyway (panic mode): better a likely
//! failure than none at all.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use url::Url;

/// Ejection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionConfig {
    /// Consecutive 5xx answers or timeouts that eject an endpoint.
    pub eject_after: u32,
    /// The first ejection's length.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
}

impl Default for EjectionConfig {
    fn default() -> Self {
        Self {
            eject_after: 3,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(10),
        }
    }
}

/// How a call to an endpoint went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Could not connect: the endpoint is likely gone.
    ConnectFailed,
    /// A 5xx answer or a timeout.
    Failed,
}

#[derive(Debug, Clone)]
struct Health {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

/// The endpoints of one upstream.
#[derive(Debug)]
pub struct Endpoints {
    upstream: &'static str,
    urls: Vec<Url>,
    health: Mutex<Vec<Health>>,
    next: AtomicUsize,
    config: EjectionConfig,
}

impl Endpoints {
    pub fn new(upstream: &'static str, urls: Vec<Url>, config: EjectionConfig) -> Self {
        let health = vec![
            Health {
                consecutive_failures: 0,
                ejections: 0,
                ejected_until: None,
            };
            urls.len()
        ];
        let endpoints = Self {
            upstream,
            urls,
            health: Mutex::new(health),
            next: AtomicUsize::new(0),
            config,
        };
        metrics::gauge!("replicas_desired", "peer_service" => upstream)
            .set(endpoints.urls.len() as f64);
        endpoints.publish(&endpoints.lock(), Instant::now());
        endpoints
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Health>> {
        // A poisoned lock holds valid counters: keep using them.
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The next endpoint to call, skipping `avoid` (the one a retry failed on)
    /// when another healthy one exists. Returns its index and URL.
    pub fn pick(&self, avoid: Option<usize>) -> Option<(usize, &Url)> {
        if self.urls.is_empty() {
            return None;
        }
        let now = Instant::now();
        let health = self.lock();
        let n = self.urls.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let healthy = |i: usize| health[i].ejected_until.is_none_or(|until| until <= now);
        let chosen = (0..n)
            .map(|offset| (start + offset) % n)
            .find(|&i| healthy(i) && Some(i) != avoid)
            .or_else(|| {
                (0..n)
                    .map(|offset| (start + offset) % n)
                    .find(|&i| healthy(i))
            })
            .or_else(|| {
                // Panic mode: everything is ejected; try the one back soonest.
                (0..n).min_by_key(|&i| health[i].ejected_until.unwrap_or(now))
            })?;
        Some((chosen, &self.urls[chosen]))
    }

    /// Records how a call to endpoint `index` went.
    pub fn record(&self, index: usize, outcome: Outcome) {
        let now = Instant::now();
        let mut health = self.lock();
        let Some(endpoint) = health.get_mut(index) else {
            return;
        };
        let eject = match outcome {
            Outcome::Success => {
                endpoint.consecutive_failures = 0;
                endpoint.ejections = 0;
                endpoint.ejected_until = None;
                false
            }
            Outcome::ConnectFailed => true,
            Outcome::Failed => {
                endpoint.consecutive_failures += 1;
                endpoint.consecutive_failures >= self.config.eject_after
            }
        };
        if eject {
            let factor = 2_u32.saturating_pow(endpoint.ejections.min(8));
            let length = self
                .config
                .base_ejection
                .saturating_mul(factor)
                .min(self.config.max_ejection);
            if endpoint.ejected_until.is_none_or(|until| until <= now) {
                endpoint.ejections += 1;
                tracing::warn!(upstream = self.upstream, endpoint = %self.urls[index], ejected_for = ?length, ?outcome, "ejecting endpoint");
            }
            endpoint.ejected_until = Some(now + length);
            endpoint.consecutive_failures = 0;
        }
        self.publish(&health, now);
    }

    /// Healthy and ejected counts, as the gauges show them.
    pub fn counts(&self) -> (usize, usize) {
        let now = Instant::now();
        let health = self.lock();
        let ejected = health
            .iter()
            .filter(|h| h.ejected_until.is_some_and(|until| until > now))
            .count();
        (health.len() - ejected, ejected)
    }

    fn publish(&self, health: &[Health], now: Instant) {
        let ejected = health
            .iter()
            .filter(|h| h.ejected_until.is_some_and(|until| until > now))
            .count();
        metrics::gauge!("upstream_endpoints", "peer_service" => self.upstream, "state" => "healthy")
            .set((health.len() - ejected) as f64);
        metrics::gauge!("upstream_endpoints", "peer_service" => self.upstream, "state" => "ejected")
            .set(ejected as f64);
    }

    /// Refreshes the gauges: ejections end with time, not with calls.
    pub fn refresh_metrics(&self) {
        let health = self.lock();
        self.publish(&health, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Endpoints {
        let urls = (0..n)
            .map(|i| format!("http://replica-{i}:8080").parse().unwrap())
            .collect();
        Endpoints::new("test", urls, EjectionConfig::default())
    }

    #[test]
    fn round_robin_over_healthy_endpoints() {
        let e = endpoints(3);
        let picks: Vec<usize> = (0..6).map(|_| e.pick(None).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_refused_connection_ejects_at_once() {
        let e = endpoints(3);
        e.record(1, Outcome::ConnectFailed);
        assert_eq!(e.counts(), (2, 1));
        for _ in 0..10 {
            assert_ne!(e.pick(None).unwrap().0, 1);
        }
    }

    #[test]
    fn server_errors_eject_after_the_threshold_and_success_resets() {
        let e = endpoints(2);
        e.record(0, Outcome::Failed);
        e.record(0, Outcome::Failed);
        assert_eq!(e.counts(), (2, 0));
        e.record(0, Outcome::Success);
        e.record(0, Outcome::Failed);
        e.record(0, Outcome::Failed);
        assert_eq!(e.counts(), (2, 0), "the success reset the count");
        e.record(0, Outcome::Failed);
        assert_eq!(e.counts(), (1, 1));
    }

    #[test]
    fn a_retry_avoids_the_endpoint_that_failed() {
        let e = endpoints(2);
        for _ in 0..4 {
            let (first, _) = e.pick(None).unwrap();
            let (second, _) = e.pick(Some(first)).unwrap();
            assert_ne!(first, second);
        }
    }

    #[test]
    fn when_all_are_ejected_one_is_still_tried() {
        let e = endpoints(2);
        e.record(0, Outcome::ConnectFailed);
        e.record(1, Outcome::ConnectFailed);
        assert_eq!(e.counts(), (0, 2));
        assert!(e.pick(None).is_some());
    }
}
