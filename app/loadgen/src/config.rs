//! What a run does: the library's configuration, independent of any CLI.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::mix::Mix;

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// A constant `rate` of requests per second on a fixed timetable,
    /// whatever the server does. Latency is measured from each request's
    /// intended send time, so a slow server cannot hide its slowness by
    /// slowing the client down (no coordinated omission).
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// `concurrency` workers sending back to back: peak throughput.
    Closed,
}

/// Everything a run needs. Build it with [`Config::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the gateway, e.g. `http://127.0.0.1:8080`.
    pub target: Url,
    /// Open or closed loop.
    pub mode: Mode,
    /// The most requests in flight at once (open loop), or the number of
    /// workers (closed loop).
    pub concurrency: usize,
    /// Stop issuing requests after this long.
    pub duration: Option<Duration>,
    /// Stop after this many planned requests (checkout retries come on top;
    /// in open loop, dropped requests count as planned).
    pub requests: Option<u64>,
    /// Per-request timeout, body included.
    pub timeout: Duration,
    /// Seed of the traffic mix; random (and reported) when `None`.
    pub seed: Option<u64>,
    /// Weights of the four kinds of request.
    pub mix: Mix,
    /// Probability that a checkout is sent a second time with the same
    /// `Idempotency-Key` and body.
    pub retry_ratio: f64,
    /// The most distinct items in one checkout (at least 1).
    pub max_items: u32,
    /// The largest quantity of one item (at least 1).
    pub max_quantity: u32,
    /// Product ids `1..=fallback_products` are used until a listing succeeds.
    pub fallback_products: u32,
    /// Length of a stats window: the observer gets one [`crate::Window`] per window.
    pub window: Duration,
    /// Keep every window in [`crate::Report::windows`] (memory grows with
    /// the run length; the observer sees them either way).
    pub keep_windows: bool,
    /// How many failed requests the report keeps (the first ones).
    pub max_failed_kept: usize,
    /// Sent as `X-Client-Id` on every request, so that the gateway's
    /// per-client rate limit tells this load from another's.
    pub client_id: Option<String>,
}

impl Config {
    /// The defaults: closed loop, 32 workers, no limit (run until
    /// cancelled), 2 s timeout, the default mix, 5 % checkout retries.
    pub fn new(target: Url) -> Self {
        Self {
            target,
            mode: Mode::Closed,
            concurrency: 32,
            duration: None,
            requests: None,
            timeout: Duration::from_secs(2),
            seed: None,
            mix: Mix::default(),
            retry_ratio: 0.05,
            max_items: 3,
            max_quantity: 2,
            fallback_products: 10,
            window: Duration::from_secs(1),
            keep_windows: false,
            max_failed_kept: 50,
            client_id: None,
        }
    }

    /// Checks the values that would make a run meaningless.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.target.scheme(), "http" | "https") {
            return Err(ConfigError::Scheme(self.target.scheme().to_owned()));
        }
        if let Mode::Open { rate } = self.mode
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(ConfigError::Rate(rate));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::Zero("concurrency"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Zero("timeout"));
        }
        if self.window.is_zero() {
            return Err(ConfigError::Zero("window"));
        }
        if self.fallback_products == 0 {
            return Err(ConfigError::Zero("fallback_products"));
        }
        if !(0.0..=1.0).contains(&self.retry_ratio) {
            return Err(ConfigError::RetryRatio(self.retry_ratio));
        }
        Ok(())
    }
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The target is not http(s).
    #[error("target must be an http:// or https:// URL, not {0}:")]
    Scheme(String),
    /// The open-loop rate is not a positive number.
    #[error("rate must be a positive number of requests per second, got {0}")]
    Rate(f64),
    /// A value that must be positive is zero.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// The retry ratio is not a probability.
    #[error("retry ratio must be within 0..=1, got {0}")]
    RetryRatio(f64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new(Url::parse("http://127.0.0.1:8080").unwrap())
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn rejects_nonsense() {
        let mut c = config();
        c.mode = Mode::Open { rate: 0.0 };
        assert_eq!(c.validate(), Err(ConfigError::Rate(0.0)));
        let mut c = config();
        c.concurrency = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("concurrency")));
        let mut c = config();
        c.retry_ratio = 1.5;
        assert_eq!(c.validate(), Err(ConfigError::RetryRatio(1.5)));
        let mut c = config();
        c.target = Url::parse("ftp://x").unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Scheme(_))));
    }
}
