//! Typed configuration, read from the environment (or the same-named flags).
//!
//! Every setting has an environment variable, so the same image runs any role
//! anywhere: compose, Kubernetes, or a test that builds the structs directly.
//!
//! This module holds what several roles share (serving, the database, the
//! outbound client); each role's own settings are in its folder
//! (`roles/<role>/config.rs`, exported as `roles::<role>::<Role>Config`).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use url::Url;

use crate::resilience::endpoints::{Replicas, Resolver};

/// Settings every long-running role shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// The public HTTP API listens here.
    #[arg(long, env = "FAULTLINE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Health, readiness and /metrics listen here, apart from the public API.
    #[arg(long, env = "FAULTLINE_ADMIN_ADDR", default_value = "0.0.0.0:9000")]
    pub admin_addr: SocketAddr,

    /// The longest an inbound request may take before it is answered 503.
    #[arg(long, env = "FAULTLINE_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// After SIGTERM, report not-ready for this long before refusing new
    /// connections, so that load balancers stop sending traffic first.
    #[arg(long, env = "FAULTLINE_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// The longest time in-flight requests get to finish during shutdown.
    #[arg(long, env = "FAULTLINE_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Requests in flight beyond which new ones get an immediate 503.
    #[arg(long, env = "FAULTLINE_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,

    /// Serve the fault admin API (for chaos experiments) here. Unset: off.
    /// Never expose it publicly. Needs FAULTLINE_FAULT_ADMIN_TOKEN.
    #[arg(long, env = "FAULTLINE_FAULT_ADMIN_ADDR")]
    pub fault_admin_addr: Option<SocketAddr>,

    /// The bearer token every call to the fault admin API must carry
    /// (`Authorization: Bearer <token>`); required when
    /// FAULTLINE_FAULT_ADMIN_ADDR is set. Visible ASCII without spaces.
    /// Prefer the variable to the flag, which other users of the host see.
    #[arg(
        long,
        env = "FAULTLINE_FAULT_ADMIN_TOKEN",
        hide_env_values = true,
        value_parser = Secret::parse
    )]
    pub fault_admin_token: Option<Secret>,

    /// The same token, read from this file at start (a Docker or Kubernetes
    /// secret, e.g. `/run/secrets/fault_admin_token`; one trailing newline is
    /// dropped). Instead of FAULTLINE_FAULT_ADMIN_TOKEN.
    #[arg(
        long,
        env = "FAULTLINE_FAULT_ADMIN_TOKEN_FILE",
        value_parser = Secret::read_file,
        conflicts_with = "fault_admin_token"
    )]
    pub fault_admin_token_file: Option<Secret>,
}

impl ServeConfig {
    /// The fault admin API's token, from the variable or the file.
    pub fn fault_admin_token(&self) -> Option<&Secret> {
        self.fault_admin_token
            .as_ref()
            .or(self.fault_admin_token_file.as_ref())
    }
}

impl ServeConfig {
    /// Settings for tests: both listeners on 127.0.0.1 port 0, no drain delay.
    pub fn for_tests() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
            max_in_flight: 512,
            fault_admin_addr: None,
            fault_admin_token: None,
            fault_admin_token_file: None,
        }
    }
}

/// A credential from the configuration (a bearer token). `Debug` shows
/// `Secret(***)`, so the configuration, logged at start, never prints it;
/// [`Secret::matches`] compares in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from `value`: visible ASCII (what a bearer token may hold in
    /// a header), not empty.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII, without spaces".to_owned());
        }
        Ok(Self(value.to_owned()))
    }

    /// A secret read from the file at `path`, without one trailing newline.
    pub fn read_file(path: &str) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|err| format!("cannot read {path}: {err}"))?;
        let value = text
            .strip_suffix('\n')
            .map_or(text.as_str(), |v| v.strip_suffix('\r').unwrap_or(v));
        Self::parse(value).map_err(|why| format!("the secret in {path} {why}"))
    }

    /// The value, to send or compare: never to show.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, in time that does not depend on
    /// where they differ (only on the length of `candidate`).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `a == b`, looking at every byte of `b` whatever the content; a length
/// difference is known at once (the length of a token is no secret worth
/// keeping).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let difference = b
        .iter()
        .enumerate()
        .fold(u8::from(a.len() != b.len()), |acc, (i, byte)| {
            acc | (a.get(i).copied().unwrap_or(!byte) ^ byte)
        });
    std::hint::black_box(difference) == 0
}

/// How a role reaches PostgreSQL.
#[derive(Clone, clap::Args)]
pub struct DatabaseConfig {
    /// postgres://user:password@host:port/database
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub url: String,

    /// The most connections the pool opens.
    #[arg(
        long = "db-max-connections",
        env = "FAULTLINE_DB_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,

    /// How long a query waits for a free connection before failing.
    #[arg(long = "db-acquire-timeout", env = "FAULTLINE_DB_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub acquire_timeout: Duration,

    /// How long the readiness check waits for `SELECT 1`.
    #[arg(long = "db-ready-timeout", env = "FAULTLINE_DB_READY_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub ready_timeout: Duration,
}

impl DatabaseConfig {
    /// Settings for `url` with the defaults of every other field.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            ready_timeout: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("ready_timeout", &self.ready_timeout)
            .finish()
    }
}

/// How outbound calls are made.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientConfig {
    /// The timeout of one call to another service.
    /// A retry on another endpoint still fits in a client's 2 s budget.
    #[arg(long, env = "FAULTLINE_UPSTREAM_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,

    /// Keep connections to other services open for the next call (on), or
    /// open a new connection per call (off), so that a fault proxy's
    /// per-connection faults (resets, say) hit every call.
    #[arg(long, env = "FAULTLINE_UPSTREAM_KEEPALIVE", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub upstream_keepalive: bool,

    /// How often the host names of the upstream URLs are resolved again, so
    /// that replicas that came are called and gone ones are not.
    #[arg(long, env = "FAULTLINE_DNS_REFRESH", default_value = "5s", value_parser = parse_positive_duration)]
    pub dns_refresh: Duration,
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if duration.is_zero() => Err("must be longer than 0s".to_owned()),
        Ok(duration) => Ok(duration),
        Err(err) => Err(err.to_string()),
    }
}

/// The catalog's replicas, for the roles that call it.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogReplicas {
    /// Catalog replicas: comma-separated base URLs. A host name stands for
    /// every address it resolves to (a compose service, Swarm's
    /// `tasks.<service>`, a Kubernetes headless Service).
    #[arg(
        long,
        env = "FAULTLINE_CATALOG_URLS",
        value_delimiter = ',',
        required = true
    )]
    pub catalog_urls: Vec<Url>,
    /// How many catalog replicas there should be (`replicas_desired`);
    /// default: one per URL.
    #[arg(long, env = "FAULTLINE_CATALOG_REPLICAS")]
    pub catalog_replicas: Option<NonZeroUsize>,
}

/// The orders service's replicas, for the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct OrdersReplicas {
    /// Orders replicas: comma-separated base URLs; a host name stands for
    /// every address it resolves to.
    #[arg(
        long,
        env = "FAULTLINE_ORDERS_URLS",
        value_delimiter = ',',
        required = true
    )]
    pub orders_urls: Vec<Url>,
    /// How many orders replicas there should be; default: one per URL.
    #[arg(long, env = "FAULTLINE_ORDERS_REPLICAS")]
    pub orders_replicas: Option<NonZeroUsize>,
}

/// The payments service's replicas, for the roles that call it.
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentsReplicas {
    /// Payments replicas: comma-separated base URLs; a host name stands for
    /// every address it resolves to.
    #[arg(
        long,
        env = "FAULTLINE_PAYMENTS_URLS",
        value_delimiter = ',',
        required = true
    )]
    pub payments_urls: Vec<Url>,
    /// How many payments replicas there should be; default: one per URL.
    #[arg(long, env = "FAULTLINE_PAYMENTS_REPLICAS")]
    pub payments_replicas: Option<NonZeroUsize>,
}

impl CatalogReplicas {
    pub fn replicas(&self) -> Replicas {
        replicas(&self.catalog_urls, self.catalog_replicas)
    }
}

impl OrdersReplicas {
    pub fn replicas(&self) -> Replicas {
        replicas(&self.orders_urls, self.orders_replicas)
    }
}

impl PaymentsReplicas {
    pub fn replicas(&self) -> Replicas {
        replicas(&self.payments_urls, self.payments_replicas)
    }
}

fn replicas(urls: &[Url], desired: Option<NonZeroUsize>) -> Replicas {
    Replicas {
        urls: urls.to_vec(),
        desired: desired.map(NonZeroUsize::get),
        resolver: Resolver::System,
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            upstream_timeout: Duration::from_secs(1),
            upstream_keepalive: true,
            dns_refresh: Duration::from_secs(5),
        }
    }
}

/// `on`, `true`, `1` are on; `off`, `false`, `0` are off; any case.
pub fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err("use on or off".to_owned()),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let config = DatabaseConfig::new("postgres://shop:hunter2@db:5432/shop");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://shop:***@db:5432/shop"),
            "{shown}"
        );
    }

    #[derive(Debug, clap::Parser)]
    struct ServeCli {
        #[command(flatten)]
        serve: ServeConfig,
    }

    fn parse_serve(args: &[&str]) -> Result<ServeConfig, clap::Error> {
        use clap::Parser as _;
        ServeCli::try_parse_from(std::iter::once("shop").chain(args.iter().copied()))
            .map(|cli| cli.serve)
    }

    #[test]
    fn the_fault_admin_token_is_read_but_never_shown() {
        let serve = parse_serve(&[
            "--fault-admin-addr",
            "127.0.0.1:9100",
            "--fault-admin-token",
            "s3cr3t-token",
        ])
        .unwrap();
        let token = serve.fault_admin_token.as_ref().unwrap();
        assert_eq!(token.expose(), "s3cr3t-token");
        let shown = format!("{serve:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
        assert!(
            shown.contains("fault_admin_token: Some(Secret(***))"),
            "{shown}"
        );
    }

    #[test]
    fn a_token_must_be_visible_ascii() {
        for bad in ["", "with space", "tab\there", "caf\u{e9}"] {
            let err = parse_serve(&["--fault-admin-token", bad]).unwrap_err();
            assert!(
                err.to_string().contains("fault-admin-token"),
                "{bad:?}: {err}"
            );
        }
        assert!(Secret::parse("a-Token_0.9~+/=").is_ok());
    }

    #[test]
    fn secrets_match_only_themselves() {
        let secret = Secret::parse("abc123").unwrap();
        assert!(secret.matches(b"abc123"));
        for other in [&b"abc124"[..], b"abc12", b"abc1234", b"", b"ABC123"] {
            assert!(!secret.matches(other), "{other:?}");
        }
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
        assert!(!constant_time_eq(b"", b"a"));
        // A candidate byte that is the complement of a missing one still differs.
        assert!(!constant_time_eq(b"a", &[b'a', !0]));
    }

    #[derive(Debug, clap::Parser)]
    struct ClientCli {
        #[command(flatten)]
        client: ClientConfig,
    }

    fn parse_client(args: &[&str]) -> Result<ClientConfig, clap::Error> {
        use clap::Parser as _;
        ClientCli::try_parse_from(std::iter::once("shop").chain(args.iter().copied()))
            .map(|cli| cli.client)
    }

    #[test]
    fn names_are_resolved_again_every_few_seconds_never_every_instant() {
        assert_eq!(
            parse_client(&[]).unwrap().dns_refresh,
            Duration::from_secs(5)
        );
        let every = parse_client(&["--dns-refresh", "500ms"])
            .unwrap()
            .dns_refresh;
        assert_eq!(every, Duration::from_millis(500));
        let err = parse_client(&["--dns-refresh", "0s"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than 0s"), "{err}");
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = Secret::read_file(path.to_str().unwrap()).unwrap();
        assert_eq!(secret.expose(), "s3cret");
        std::fs::write(&path, "two words\n").unwrap();
        let err = Secret::read_file(path.to_str().unwrap()).unwrap_err();
        assert!(
            err.contains("token") && err.contains("visible ASCII"),
            "{err}"
        );
        let err = Secret::read_file("/nonexistent/token").unwrap_err();
        assert!(err.contains("cannot read /nonexistent/token"), "{err}");
    }

    #[test]
    fn on_and_off_in_any_case() {
        for on in ["on", "ON", "true", "1", " On "] {
            assert_eq!(parse_on_off(on), Ok(true), "{on}");
        }
        for off in ["off", "Off", "false", "0"] {
            assert_eq!(parse_on_off(off), Ok(false), "{off}");
        }
        assert!(parse_on_off("of").is_err());
        assert!(parse_on_off("").is_err());
    }

    #[test]
    fn keepalive_is_on_by_default_and_the_flag_turns_it_off() {
        assert!(parse_client(&[]).unwrap().upstream_keepalive);
        assert!(ClientConfig::default().upstream_keepalive);
        let off = parse_client(&["--upstream-keepalive", "off"]).unwrap();
        assert!(!off.upstream_keepalive);
        let on = parse_client(&["--upstream-keepalive=on"]).unwrap();
        assert!(on.upstream_keepalive);
        let err = parse_client(&["--upstream-keepalive", "sometimes"]).unwrap_err();
        assert!(err.to_string().contains("use on or off"), "{err}");
    }

    #[test]
    fn urls_without_a_password_are_shown_unchanged() {
        assert_eq!(redact_password("postgres://db/shop"), "postgres://db/shop");
        assert_eq!(
            redact_password("postgres://shop@db/shop"),
            "postgres://shop@db/shop"
        );
    }
}
