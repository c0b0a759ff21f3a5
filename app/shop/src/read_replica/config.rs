//! Where the standby is, and how stale it may be.

use std::time::Duration;

use crate::config::redact_password;

/// The read replica's settings. Without `read_url` every read goes to the
/// primary.
#[derive(Clone, clap::Args)]
pub struct ReplicaConfig {
    /// A hot standby of the database for reads that may be a little stale
    /// (the product list and a product's detail), e.g.
    /// postgres://user:password@postgres-replica:5432/shop. Unset: every read
    /// goes to the primary.
    #[arg(
        long = "database-read-url",
        env = "FAULTLINE_DATABASE_READ_URL",
        hide_env_values = true
    )]
    pub read_url: Option<String>,

    /// The most the standby may be behind the primary and still serve reads.
    #[arg(long = "replica-max-lag", env = "FAULTLINE_REPLICA_MAX_LAG", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_lag: Duration,

    /// How often the standby's lag and health are checked.
    #[arg(long = "replica-check-interval", env = "FAULTLINE_REPLICA_CHECK_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub check_interval: Duration,

    /// The longest a read may take on the standby before it is retried on
    /// the primary (connecting included).
    #[arg(long = "replica-read-timeout", env = "FAULTLINE_REPLICA_READ_TIMEOUT", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub read_timeout: Duration,

    /// Checks in a row, each with the lag at most half the bound, before a
    /// standby that was out of use serves reads again.
    #[arg(
        long = "replica-recover-after",
        env = "FAULTLINE_REPLICA_RECOVER_AFTER",
        default_value_t = 3
    )]
    pub recover_after: u32,
}

impl ReplicaConfig {
    /// No standby: every read goes to the primary.
    pub fn none() -> Self {
        Self {
            read_url: None,
            max_lag: Duration::from_secs(5),
            check_interval: Duration::from_secs(1),
            read_timeout: Duration::from_millis(500),
            recover_after: 3,
        }
    }

    /// The oldest data a read served by the standby can show: the bound, plus
    /// what the lag can grow between two checks, plus the resolution of the
    /// lag estimate (one check interval).
    pub fn staleness_bound(&self) -> Duration {
        self.max_lag + self.check_interval * 2
    }
}

impl std::fmt::Debug for ReplicaConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaConfig")
            .field("read_url", &self.read_url.as_deref().map(redact_password))
            .field("max_lag", &self.max_lag)
            .field("check_interval", &self.check_interval)
            .field("read_timeout", &self.read_timeout)
            .field("recover_after", &self.recover_after)
            .finish()
    }
}
