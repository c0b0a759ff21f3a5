//! How a role reaches RabbitMQ.

use std::time::Duration;

use lapin::uri::AMQPUri;

use crate::config::redact_password;

/// The largest AMQP frame asked for, unless the URL says (`?frame_max=`).
/// The client keeps two buffers of 32 frames per connection, zeroed when it
/// connects: at the broker's default (128 KiB) that is 8 MiB of resident
/// memory per connection; at 16 KiB, 1 MiB. An outbox event is a few hundred
/// bytes, and a larger body is split into frames anyway.
pub const FRAME_MAX: u32 = 16 * 1024;

/// The broker settings orders (the relay) and the worker (the consumers)
/// share. Without a URL there is no broker: orders does not relay, and the
/// worker drains the outbox table directly.
#[derive(Clone, clap::Args)]
pub struct BrokerConfig {
    /// amqp://user:password@host:port/vhost (%2f is the default vhost).
    /// Unset: no broker; the worker polls the outbox table.
    #[arg(
        id = "amqp_url",
        long = "amqp-url",
        env = "FAULTLINE_AMQP_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,

    /// The AMQP heartbeat: a connection silent for about twice this long is
    /// given up and opened again (a partition is noticed this fast).
    #[arg(long = "amqp-heartbeat", env = "FAULTLINE_AMQP_HEARTBEAT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// How long a connection attempt (TCP and the AMQP handshake) may take.
    #[arg(long = "amqp-connect-timeout", env = "FAULTLINE_AMQP_CONNECT_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// How long a publish waits for the broker's confirm; past it, the
    /// message counts as not sent and is published again later.
    #[arg(long = "amqp-confirm-timeout", env = "FAULTLINE_AMQP_CONFIRM_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub confirm_timeout: Duration,

    /// The longest wait between two connection attempts (the wait doubles
    /// from 100 ms up to this).
    #[arg(long = "amqp-reconnect-max", env = "FAULTLINE_AMQP_RECONNECT_MAX", default_value = "2s", value_parser = humantime::parse_duration)]
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for BrokerConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &self.url.as_deref().map(redact_password))
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("reconnect_max", &self.reconnect_max)
            .finish()
    }
}

/// Why the broker settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("FAULTLINE_AMQP_URL is not an AMQP URL ({url}): {reason}")]
    Url { url: String, reason: String },
}

impl BrokerConfig {
    /// Settings for `url` with the defaults, for tests.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            heartbeat: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            confirm_timeout: Duration::from_secs(5),
            reconnect_max: Duration::from_secs(2),
        }
    }

    /// No broker.
    pub fn none() -> Self {
        Self {
            url: None,
            ..Self::new(String::new())
        }
    }

    /// The URL parsed, with the heartbeat and connection timeout applied;
    /// `None` when no broker is configured.
    pub fn uri(&self) -> Result<Option<AMQPUri>, BrokerConfigError> {
        let Some(url) = self.url.as_deref().filter(|url| !url.trim().is_empty()) else {
            return Ok(None);
        };
        let mut uri: AMQPUri = url.parse().map_err(|reason: String| {
            let redacted = redact_password(url);
            BrokerConfigError::Url {
                reason: reason.replace(url, &redacted),
                url: redacted,
            }
        })?;
        let heartbeat = u16::try_from(self.heartbeat.as_secs().max(1)).unwrap_or(u16::MAX);
        uri.query.heartbeat.get_or_insert(heartbeat);
        let timeout = u64::try_from(self.connect_timeout.as_millis()).unwrap_or(u64::MAX);
        uri.query.connection_timeout.get_or_insert(timeout);
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        Ok(Some(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_and_timeout_apply_unless_the_url_sets_them() {
        let config = BrokerConfig::new("amqp://u:secret@rabbitmq:5672/%2f");
        let uri = config.uri().unwrap().unwrap();
        assert_eq!(uri.query.heartbeat, Some(5));
        assert_eq!(uri.query.connection_timeout, Some(3000));
        assert_eq!(uri.query.frame_max, Some(FRAME_MAX));
        assert_eq!(uri.authority.host, "rabbitmq");
        let config = BrokerConfig::new("amqp://rabbitmq/%2f?heartbeat=30");
        assert_eq!(config.uri().unwrap().unwrap().query.heartbeat, Some(30));
        assert!(BrokerConfig::none().uri().unwrap().is_none());
        assert!(
            BrokerConfig::new("").uri().unwrap().is_none(),
            "empty is unset"
        );
    }

    #[test]
    fn a_bad_url_is_an_error_that_hides_the_password() {
        let err = BrokerConfig::new("http://u:secret@rabbitmq/")
            .uri()
            .unwrap_err()
            .to_string();
        assert!(err.contains("FAULTLINE_AMQP_URL"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let debug = format!("{:?}", BrokerConfig::new("amqp://u:secret@rabbitmq/%2f"));
        assert!(!debug.contains("secret"), "{debug}");
    }
}
