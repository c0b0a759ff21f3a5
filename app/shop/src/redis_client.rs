//! The Redis client the gateway and the catalog share: one multiplexed
//! connection per process that reconnects by itself (redis-rs's
//! `ConnectionManager`), a short timeout on every call, and a circuit breaker
//! (`resilience_circuit_state{peer_service="redis"}`), so that a slow or dead
//! Redis costs a caller at most the timeout, and nothing once the breaker is
//! open. Every caller has a local fallback: Redis is never the reason for a
//! 5xx.
//!
//! Every call is a client span named for its command (`GET`, `SET`, `DEL`,
//! `EVALSHA`) with `db.system.name = "redis"`, and is timed into
//! `db_client_operation_duration_seconds{db_system_name="redis"}`. A call the
//! open breaker refuses is not an operation: neither timed nor traced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script};
use url::Url;

use crate::resilience::breaker::{Breaker, BreakerConfig};

/// The `peer_service` of the Redis breaker.
pub const PEER_SERVICE: &str = "redis";

/// Where Redis is, and how long a call may take.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis for the state the gateway replicas share (the catalog cache and
    /// the rate limit), e.g. `redis://redis:6379`. Unset: each replica keeps
    /// its own.
    #[arg(long, env = "FAULTLINE_REDIS_URL")]
    pub redis_url: Option<Url>,
    /// The longest one Redis call may take before the caller falls back.
    #[arg(long, env = "FAULTLINE_REDIS_TIMEOUT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
}

impl RedisConfig {
    /// No Redis.
    pub fn none() -> Self {
        Self {
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
        }
    }
}

/// Why Redis could not be used at start.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL {url}: {source}")]
pub struct RedisConfigError {
    url: String,
    #[source]
    source: redis::RedisError,
}

/// Why a Redis call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisCallError {
    #[error("the Redis circuit breaker is open")]
    CircuitOpen,
    #[error("Redis did not answer {operation} within {timeout:?}")]
    Timeout {
        operation: &'static str,
        timeout: Duration,
    },
    #[error("Redis {operation} failed: {source}")]
    Redis {
        operation: &'static str,
        #[source]
        source: redis::RedisError,
    },
}

impl RedisCallError {
    /// The `error_type` label: timeout, connection (Redis unreachable or the
    /// connection dropped) or response (Redis answered with an error).
    fn error_type(&self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::Timeout { .. } => "timeout",
            Self::Redis { source, .. }
                if source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || source.is_timeout() =>
            {
                "connection"
            }
            Self::Redis { .. } => "response",
        }
    }
}

/// A shared Redis connection with its timeout and breaker.
#[derive(Clone)]
pub struct RedisClient {
    connection: ConnectionManager,
    breaker: Arc<Breaker>,
    timeout: Duration,
    host: Arc<str>,
    port: u16,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The breaker: five failures in a row open it for a second. Redis answers in
/// well under a millisecond, so five timeouts in a row are not bad luck; a
/// short open period keeps trial calls (and their timings) coming while
/// Redis is slow, and gets the shared state back soon after it recovers.
fn breaker_config() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 5,
        open_for: Duration::from_secs(1),
        success_threshold: 2,
    }
}

impl RedisClient {
    /// The client for `config`, if it names a Redis. Connects lazily: a role
    /// starts, and is ready, whether Redis is up or not.
    pub fn from_config(config: &RedisConfig) -> Result<Option<Self>, RedisConfigError> {
        let Some(url) = &config.redis_url else {
            return Ok(None);
        };
        let invalid = |source| RedisConfigError {
            url: url.to_string(),
            source,
        };
        let client = redis::Client::open(url.as_str()).map_err(invalid)?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.redis_timeout))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(2));
        let connection =
            ConnectionManager::new_lazy_with_config(client, manager).map_err(invalid)?;
        Ok(Some(Self {
            connection,
            breaker: Arc::new(Breaker::new(PEER_SERVICE, breaker_config())),
            timeout: config.redis_timeout,
            host: url.host_str().unwrap_or("localhost").into(),
            port: url.port().unwrap_or(6379),
        }))
    }

    /// The value at `key`, if any.
    #[tracing::instrument(name = "GET", skip_all, fields(otel.kind = "client", db.system.name = "redis", db.operation.name = "GET", server.address = %self.host, server.port = self.port))]
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisCallError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.call("GET", &cmd).await
    }

    /// Sets `key` to `value`, expiring after `ttl`.
    #[tracing::instrument(name = "SET", skip_all, fields(otel.kind = "client", db.system.name = "redis", db.operation.name = "SET", server.address = %self.host, server.port = self.port))]
    pub async fn set_px(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), RedisCallError> {
        let mut cmd = redis::cmd("SET");
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        cmd.arg(key).arg(value).arg("PX").arg(ttl_ms);
        self.call::<()>("SET", &cmd).await
    }

    /// Deletes `keys`; the number that existed.
    #[tracing::instrument(name = "DEL", skip_all, fields(otel.kind = "client", db.system.name = "redis", db.operation.name = "DEL", server.address = %self.host, server.port = self.port))]
    pub async fn del(&self, keys: &[String]) -> Result<u64, RedisCallError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(keys);
        self.call("DEL", &cmd).await
    }

    /// Runs `script` (by its hash, loading it on first use) on `keys` and `args`.
    #[tracing::instrument(name = "EVALSHA", skip_all, fields(otel.kind = "client", db.system.name = "redis", db.operation.name = "EVALSHA", server.address = %self.host, server.port = self.port))]
    pub async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[u64],
    ) -> Result<T, RedisCallError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.connection.clone();
        self.guarded("EVALSHA", invocation.invoke_async(&mut connection))
            .await
    }

    async fn call<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisCallError> {
        let mut connection = self.connection.clone();
        self.guarded(operation, cmd.query_async(&mut connection))
            .await
    }

    /// Runs one call through the breaker and the timeout, and times it.
    async fn guarded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisCallError> {
        if !self.breaker.try_acquire() {
            return Err(RedisCallError::CircuitOpen);
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(RedisCallError::Redis { operation, source }),
            Err(_) => Err(RedisCallError::Timeout {
                operation,
                timeout: self.timeout,
            }),
        };
        let error_type = match &result {
            Ok(_) => {
                self.breaker.on_success();
                ""
            }
            Err(err) => {
                self.breaker.on_failure();
                tracing::debug!(error = %err, "Redis call failed");
                err.error_type()
            }
        };
        metrics::histogram!(
            "db_client_operation_duration_seconds",
            "db_system_name" => PEER_SERVICE,
            "db_operation_name" => operation,
            "db_collection_name" => "",
            "error_type" => error_type,
        )
        .record(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_type() {
        assert_eq!(RedisCallError::CircuitOpen.error_type(), "circuit_open");
        let timeout = RedisCallError::Timeout {
            operation: "GET",
            timeout: Duration::from_millis(50),
        };
        assert_eq!(timeout.error_type(), "timeout");
        let refused = RedisCallError::Redis {
            operation: "GET",
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        };
        assert_eq!(refused.error_type(), "connection");
        let answered = RedisCallError::Redis {
            operation: "GET",
            source: (redis::ErrorKind::Client, "WRONGTYPE").into(),
        };
        assert_eq!(answered.error_type(), "response");
    }

    #[test]
    fn no_url_no_client() {
        assert!(
            RedisClient::from_config(&RedisConfig::none())
                .unwrap()
                .is_none()
        );
    }
}
