//! Telemetry for every faultline service: the only crate that touches the
//! tracing-subscriber, OpenTelemetry and Prometheus SDKs.
//!
//! - [`Telemetry::init`]: JSON logs with trace ids, and OTLP traces (`OTEL_*`).
//! - [`http_spans`]: the HTTP server and client spans, made with the
//!   OpenTelemetry API.
//! - [`propagation`]: W3C trace context in HTTP headers and stored carriers.
//! - [`metrics`]: the process-wide Prometheus recorder and its rendering.
//! - [`cgroup`]: the container's memory limit
//!   (`process_resident_memory_limit_bytes`).
//! - [`span_export`]: counts the spans exported and dropped
//!   (`otel_sdk_exporter_span_exported_total`).
//! - [`catalog`]: the metric catalog (`metrics.toml`), the one list of names.
//! - [`switches`]: `FAULTLINE_METRICS=off` and `FAULTLINE_LOGS=off`, to measure
//!   what each part costs.

pub mod catalog;
pub mod cgroup;
pub mod head;
pub mod http_spans;
pub mod init;
pub mod logs;
pub mod metrics;
pub mod propagation;
pub mod sampling;
pub mod span_export;
pub mod switches;
pub mod traces;

pub use catalog::{Catalog, CatalogError, MetricSpec, MetricType};
pub use init::{InitError, Telemetry};
pub use metrics::{Metrics, MetricsError};
