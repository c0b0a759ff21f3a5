//! What a run does: the library's configuration, independent of any CLI.

use std::time::Duration;

use faultline_auth::{Identity, Minter};
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
    /// Send a sampled `traceparent` with every request (the default), so
    /// that every request of the load is traced whatever the services'
    /// sampling; off, the services decide, as for a client that sends none.
    pub traceparent: bool,
    /// The customers the load acts as, with the tokens it mints for them.
    /// `None`: no request carries an `Authorization` header (order routes
    /// then get 401 from a gateway that requires a token).
    pub customers: Option<Customers>,
}

/// The customers of a run: each holds a bearer token it mints itself.
///
/// Checkouts (and, with [`Customers::authenticated_reads`], product reads)
/// are sent as a customer picked by the run's seeded generator; an order is
/// read back with the token of the customer who placed it (another
/// customer's read would get 404). Tokens are minted for every customer
/// before the first request, valid for [`Customers::ttl`], and minted again
/// once half of that has passed, so a run may last for days.
#[derive(Debug, Clone)]
pub struct Customers {
    /// Signs the tokens (the current key of a key directory, say).
    pub minter: Minter,
    /// How many distinct customers (1 to [`Customers::MAX`]).
    pub count: u32,
    /// The customers' subjects are `<prefix>-1` to `<prefix>-<count>`; with
    /// a count of 1, the one subject is the prefix itself (one named client:
    /// see [`Customers::one`]).
    pub subject_prefix: String,
    /// How long each token is valid; it is minted again after half of it.
    pub ttl: Duration,
    /// Also send the customer's token with product reads, as a signed-in
    /// customer browsing does, so that the gateway's rate limit keys them
    /// by subject too. Off by default: product reads are anonymous.
    pub authenticated_reads: bool,
}

impl Customers {
    /// The lifetime of the tokens unless told otherwise: one hour.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
    /// The most customers of a run: every token is minted before the first
    /// request, and kept.
    pub const MAX: u32 = 100_000;

    /// `count` customers `<subject_prefix>-<i>`, tokens valid for an hour,
    /// anonymous product reads.
    pub fn new(minter: Minter, count: u32, subject_prefix: impl Into<String>) -> Self {
        Self {
            minter,
            count,
            subject_prefix: subject_prefix.into(),
            ttl: Self::DEFAULT_TTL,
            authenticated_reads: false,
        }
    }

    /// One customer whose subject is exactly `subject`, sending its token
    /// with every request (product reads included): one named client, as
    /// the rate limit sees it.
    pub fn one(minter: Minter, subject: impl Into<String>) -> Self {
        Self {
            authenticated_reads: true,
            ..Self::new(minter, 1, subject)
        }
    }

    /// The subject of customer `index` (0-based, below [`Customers::count`]).
    pub fn subject(&self, index: u32) -> String {
        if self.count <= 1 {
            self.subject_prefix.clone()
        } else {
            format!("{}-{}", self.subject_prefix, u64::from(index) + 1)
        }
    }

    /// Every subject, in order.
    pub fn subjects(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.count.max(1)).map(|index| self.subject(index))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::Zero("customers.count"));
        }
        if self.count > Self::MAX {
            return Err(ConfigError::TooManyCustomers(self.count));
        }
        if self.ttl < MIN_TTL {
            return Err(ConfigError::Ttl(self.ttl));
        }
        // The longest subject is the last one.
        let longest = self.subject(self.count - 1);
        if !Identity::valid_subject(&self.subject_prefix) || !Identity::valid_subject(&longest) {
            return Err(ConfigError::Subject(longest));
        }
        Ok(())
    }
}

/// The shortest token lifetime: tokens count whole seconds, and are minted
/// again after half their life.
const MIN_TTL: Duration = Duration::from_secs(2);

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
            traceparent: true,
            customers: None,
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
        if let Some(customers) = &self.customers {
            customers.validate()?;
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
    /// A customer's subject would not be a valid token subject.
    #[error(
        "customer subject {0:?} is not 1 to {max} printable characters",
        max = faultline_auth::claims::MAX_SUBJECT_LEN
    )]
    Subject(String),
    /// More customers than [`Customers::MAX`].
    #[error("at most {max} customers, got {0}", max = Customers::MAX)]
    TooManyCustomers(u32),
    /// The tokens' lifetime is too short.
    #[error("customers' token lifetime must be at least 2s, got {0:?}")]
    Ttl(Duration),
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

    fn minter() -> Minter {
        Minter::new(faultline_auth::SigningKey::from_seed("k1", [7; 32]).unwrap())
    }

    #[test]
    fn customers_are_numbered_unless_there_is_one() {
        let many = Customers::new(minter(), 3, "customer");
        assert_eq!(
            many.subjects().collect::<Vec<_>>(),
            ["customer-1", "customer-2", "customer-3"]
        );
        assert!(!many.authenticated_reads);
        assert_eq!(many.ttl, Customers::DEFAULT_TTL);
        let one = Customers::new(minter(), 1, "flooding-client");
        assert_eq!(one.subjects().collect::<Vec<_>>(), ["flooding-client"]);
        let named = Customers::one(minter(), "steady-client");
        assert_eq!(named.count, 1);
        assert_eq!(named.subject(0), "steady-client");
        assert!(named.authenticated_reads);
    }

    #[test]
    fn customers_are_checked() {
        let mut c = config();
        c.customers = Some(Customers::new(minter(), 50, "customer"));
        assert_eq!(c.validate(), Ok(()));
        c.customers = Some(Customers::new(minter(), 0, "customer"));
        assert_eq!(c.validate(), Err(ConfigError::Zero("customers.count")));
        c.customers = Some(Customers::new(minter(), Customers::MAX + 1, "c"));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooManyCustomers(_))
        ));
        c.customers = Some(Customers::new(minter(), 2, ""));
        assert!(matches!(c.validate(), Err(ConfigError::Subject(_))));
        c.customers = Some(Customers::new(minter(), 1, "a\nb"));
        assert!(matches!(c.validate(), Err(ConfigError::Subject(_))));
        // 126 characters, then "-10": one too many.
        c.customers = Some(Customers::new(minter(), 10, "x".repeat(126)));
        assert_eq!(
            c.validate(),
            Err(ConfigError::Subject(format!("{}-10", "x".repeat(126))))
        );
        let mut short = Customers::new(minter(), 1, "c");
        short.ttl = Duration::from_secs(1);
        c.customers = Some(short);
        assert!(matches!(c.validate(), Err(ConfigError::Ttl(_))));
    }
}
