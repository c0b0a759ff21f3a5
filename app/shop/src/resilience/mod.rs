//! Resilience: what keeps one slow or dead dependency from taking the shop down.
//!
//! Outbound (every call through [`crate::http::Upstream`]):
//! - [`deadline`]: a per-call timeout capped by the caller's remaining budget,
//!   which is passed on downstream;
//! - [`retry`]: retries under a budget, for idempotent calls only;
//! - [`breaker`]: a circuit breaker per upstream;
//! - [`endpoints`]: round-robin over an upstream's replicas, ejecting failing
//!   ones and re-admitting them once they answer again.
//!
//! Inbound (every role's public router, see [`crate::http::server::stack`]):
//! a request timeout, a body limit, a concurrency limit that sheds load
//! ([`shed`]), and on the gateway a per-client rate limit ([`rate_limit`]).

pub mod breaker;
pub mod deadline;
pub mod endpoints;
pub mod rate_limit;
pub mod retry;
pub mod shed;

/// Counts a request refused by a resilience mechanism.
pub fn reject(reason: &'static str) {
    metrics::counter!("resilience_rejections_total", "reason" => reason).increment(1);
}

/// Starts the rejection counters at zero.
pub fn register_metrics() {
    for reason in [
        "rate_limited",
        "load_shed",
        "circuit_open",
        "retry_budget_exhausted",
        "deadline_exceeded",
    ] {
        metrics::counter!("resilience_rejections_total", "reason" => reason).absolute(0);
    }
}
