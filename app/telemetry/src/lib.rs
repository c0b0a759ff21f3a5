//! Telemetry for every faultline service: the only crate that touches the
//! tracing-subscriber, OpenTelemetry and Prometheus SDKs.
//!
//! - [`logs`]: JSON logs on stdout, filtered by `RUST_LOG`.
//! - [`metrics`]: the process-wide Prometheus recorder and its rendering.
//! - [`catalog`]: the metric catalog (`metrics.toml`), the one list of names.

pub mod catalog;
pub mod logs;
pub mod metrics;

pub use catalog::{Catalog, CatalogError, MetricSpec, MetricType};
pub use metrics::{Metrics, MetricsError};
