//! The integration-test harness: the real stack in containers.
//!
//! - [`docker`]: reach the engine and the locally built images, or fail saying why.
//! - [`eventually`]: poll a condition until a deadline, instead of sleeping.
//! - [`host_port`]: host ports a test pins, away from those Docker picks.
//! - [`prom_text`]: read a Prometheus text page and match series in it.
//! - [`prometheus`]: query a Prometheus server's HTTP API.
//! - [`rules`]: Prometheus rule files, PromQL scanning, the compressed time scale.
//! - [`postgres`]: a PostgreSQL container (a primary, or a hot standby of
//!   one), one database per test, and the PostgreSQL exporter.
//! - [`stack`]: a private network with a shop service and Prometheus on it.
//! - [`shop_stack`]: every role of the shop in containers, ready.
//! - [`redis`]: Redis and its exporter, for the gateway's shared cache and limit.
//! - [`rabbitmq`]: RabbitMQ, the broker the outbox is relayed to.
//! - [`fault_proxy`]: `faultline proxy` in a container.
//! - [`otlp`]: an OTLP trace receiver that services export to.
//! - [`alertmanager`]: Alertmanager with the repository's routing, and the
//!   webhooks it notifies.
//! - [`swarm`]: swarm mode (entered and left only if need be) and a stack
//!   deployed with `docker stack deploy`.

pub mod alertmanager;
pub mod campaign;
pub mod docker;
pub mod eventually;
pub mod fault_proxy;
pub mod host_port;
pub mod identity;
pub mod images;
pub mod kubernetes;
pub mod openapi_requests;
pub mod otlp;
pub mod postgres;
pub mod prom_text;
pub mod prometheus;
pub mod promtool;
pub mod rabbitmq;
pub mod redis;
pub mod rules;
pub mod shop_stack;
pub mod stack;
pub mod swarm;

pub use eventually::eventually;

/// The repository's root (the tests' files: experiments, deploy/, alerts/).
pub fn repo_root() -> std::path::PathBuf {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    tests
        .parent()
        .map_or_else(|| tests.join(".."), std::path::Path::to_path_buf)
}

/// The HTTP client every test uses: short timeouts, so a hung service fails a
/// poll rather than the whole test.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(http_client_builder().build()?)
}

/// The builder of [`http_client`], to add default headers (a bearer token).
pub fn http_client_builder() -> reqwest::ClientBuilder {
    faultline_signal::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .connect_timeout(std::time::Duration::from_secs(2))
}
