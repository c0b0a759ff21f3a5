//! payments: a simulated payment provider. Latency follows a log-normal
//! distribution set by its median and 99th percentile, and a share of
//! authorisations is declined. Each outcome is drawn from a generator seeded by
//! the configured seed and the order id, so the same order always gets the same
//! answer: retries are idempotent and runs are reproducible.

mod config;

pub use config::PaymentsConfig;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use crate::domain::{Authorization, AuthorizationRequest, OrderId};
use crate::http::ApiJson;
use crate::problem::Problem;
use crate::roles::Role;
use crate::startup::StartupError;

/// The role's name.
pub const NAME: &str = "payments";

/// Builds the simulated provider.
pub fn build(config: &PaymentsConfig) -> Result<Role, StartupError> {
    register_metrics();
    Ok(Role::new(router(Simulator::new(config)?), &config.serve))
}

/// z-score of the 99th percentile of a standard normal distribution.
const Z_P99: f64 = 2.326_347_874;

/// Why the simulation settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error("FAULTLINE_PAYMENTS_DECLINE_RATIO must be within 0 and 1, got {0}")]
    DeclineRatio(f64),
    #[error(
        "payments latency: the median ({median:?}) must be positive and at most the p99 ({p99:?})"
    )]
    Latency { median: Duration, p99: Duration },
}

/// One simulated outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub latency: Duration,
    pub declined: bool,
}

/// The simulated provider's behaviour.
#[derive(Debug, Clone)]
pub struct Simulator {
    latency: LogNormal<f64>,
    decline_ratio: f64,
    seed: u64,
}

impl Simulator {
    pub fn new(config: &PaymentsConfig) -> Result<Self, SimulationError> {
        if !(0.0..=1.0).contains(&config.decline_ratio) {
            return Err(SimulationError::DeclineRatio(config.decline_ratio));
        }
        let median = config.latency_median.as_secs_f64();
        let p99 = config.latency_p99.as_secs_f64();
        let invalid = || SimulationError::Latency {
            median: config.latency_median,
            p99: config.latency_p99,
        };
        if median <= 0.0 || p99 < median {
            return Err(invalid());
        }
        let sigma = (p99 / median).ln() / Z_P99;
        let latency = LogNormal::new(median.ln(), sigma).map_err(|_| invalid())?;
        Ok(Self {
            latency,
            decline_ratio: config.decline_ratio,
            seed: config.seed,
        })
    }

    /// The outcome for `order`: always the same for the same seed and order.
    pub fn outcome(&self, order: OrderId) -> Outcome {
        let mut hasher = DefaultHasher::new();
        self.seed.hash(&mut hasher);
        order.0.as_u128().hash(&mut hasher);
        let mut rng = StdRng::seed_from_u64(hasher.finish());
        let seconds = self.latency.sample(&mut rng).min(60.0);
        Outcome {
            latency: Duration::from_secs_f64(seconds),
            declined: rng.random_bool(self.decline_ratio),
        }
    }
}

/// Starts the payments counters at zero.
pub fn register_metrics() {
    for outcome in ["authorized", "declined"] {
        metrics::counter!("payments_authorizations_total", "outcome" => outcome).absolute(0);
    }
}

/// The payments API.
pub fn router(simulator: Simulator) -> Router {
    Router::new()
        .route("/api/payments/authorizations", post(authorize))
        .with_state(simulator)
}

#[tracing::instrument(skip(simulator, request), fields(order_id = %request.order_id))]
async fn authorize(
    State(simulator): State<Simulator>,
    ApiJson(request): ApiJson<AuthorizationRequest>,
) -> Response {
    if request.amount_cents < 0 {
        return Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_detail("amount_cents must not be negative")
            .into_response();
    }
    let outcome = simulator.outcome(request.order_id);
    // The provider's simulated processing time.
    tokio::time::sleep(outcome.latency).await;
    if outcome.declined {
        metrics::counter!("payments_authorizations_total", "outcome" => "declined").increment(1);
        return Problem::new(StatusCode::PAYMENT_REQUIRED)
            .with_detail(format!(
                "payment for order {} was declined",
                request.order_id
            ))
            .into_response();
    }
    metrics::counter!("payments_authorizations_total", "outcome" => "authorized").increment(1);
    let authorization = Authorization {
        id: format!("auth_{}", request.order_id.0.simple()),
        order_id: request.order_id,
        amount_cents: request.amount_cents,
    };
    (StatusCode::CREATED, axum::Json(authorization)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;

    fn config(decline_ratio: f64, seed: u64) -> PaymentsConfig {
        PaymentsConfig {
            serve: ServeConfig::for_tests(),
            latency_median: Duration::from_millis(20),
            latency_p99: Duration::from_millis(80),
            decline_ratio,
            seed,
        }
    }

    #[test]
    fn the_same_seed_and_order_give_the_same_outcome() {
        let a = Simulator::new(&config(0.5, 7)).unwrap();
        let b = Simulator::new(&config(0.5, 7)).unwrap();
        for _ in 0..50 {
            let order = OrderId::new();
            assert_eq!(a.outcome(order), b.outcome(order));
        }
    }

    #[test]
    fn latency_and_declines_follow_the_settings() {
        let simulator = Simulator::new(&config(0.2, 1)).unwrap();
        let outcomes: Vec<Outcome> = (0..4000)
            .map(|_| simulator.outcome(OrderId::new()))
            .collect();
        let declined = outcomes.iter().filter(|o| o.declined).count();
        // 20% of 4000 = 800; generous bounds.
        assert!((600..1000).contains(&declined), "{declined} declined");
        let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
        latencies.sort();
        let median = latencies[latencies.len() / 2];
        let p99 = latencies[latencies.len() * 99 / 100];
        assert!(
            median > Duration::from_millis(15) && median < Duration::from_millis(27),
            "{median:?}"
        );
        assert!(
            p99 > Duration::from_millis(55) && p99 < Duration::from_millis(115),
            "{p99:?}"
        );
    }

    #[test]
    fn nonsense_settings_are_rejected() {
        assert!(Simulator::new(&config(1.5, 1)).is_err());
        let mut inverted = config(0.1, 1);
        inverted.latency_p99 = Duration::from_millis(5);
        assert!(Simulator::new(&inverted).is_err());
    }
}
