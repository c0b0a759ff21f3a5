//! The payments role's settings.

use std::time::Duration;

use crate::config::ServeConfig;

/// The simulated payment provider.
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentsConfig {
    #[command(flatten)]
    pub serve: ServeConfig,
    /// Median authorisation latency (log-normal distribution).
    #[arg(long, env = "FAULTLINE_PAYMENTS_LATENCY_MEDIAN", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub latency_median: Duration,
    /// 99th percentile authorisation latency.
    #[arg(long, env = "FAULTLINE_PAYMENTS_LATENCY_P99", default_value = "80ms", value_parser = humantime::parse_duration)]
    pub latency_p99: Duration,
    /// Share of authorisations declined, 0 to 1.
    #[arg(long, env = "FAULTLINE_PAYMENTS_DECLINE_RATIO", default_value_t = 0.02)]
    pub decline_ratio: f64,
    /// Seed of the simulation: the same seed and order give the same outcome and latency.
    #[arg(long, env = "FAULTLINE_PAYMENTS_SEED", default_value_t = 42)]
    pub seed: u64,
}
