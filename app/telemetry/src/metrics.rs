//! The process-wide Prometheus recorder.
//!
//! The `metrics` facade has one global recorder per process. [`Metrics::install`]
//! installs it once and hands out clones of the same handle afterwards, so that
//! several services started inside one test process share it safely.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets, in seconds, for every `*_seconds` histogram: from 1 ms to
/// 10 s, dense around the 100–500 ms range where the SLOs sit.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 10.0,
];

/// How often idle histogram buckets are drained when nothing scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricsError {
    #[error("invalid Prometheus exporter settings: {0}")]
    Build(String),
    #[error("another metrics recorder is already installed in this process")]
    AlreadyInstalled,
    #[error(transparent)]
    Switch(#[from] crate::switches::InvalidSwitch),
    /// The embedded catalog, which gives every metric its help text, is invalid.
    #[error("{0}")]
    Catalog(String),
}

/// A handle on the process-wide recorder: renders `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static INSTALLED: OnceLock<Result<Metrics, MetricsError>> = OnceLock::new();

impl Metrics {
    /// Installs the global recorder, or returns the one this function installed before.
    ///
    /// Concurrent callers block until the first one has finished, then share its result.
    ///
    /// With `FAULTLINE_METRICS=off` no recorder is installed: the metric macros
    /// do nothing and [`Metrics::render`] returns an empty page.
    pub fn install() -> Result<Self, MetricsError> {
        INSTALLED.get_or_init(Self::install_once).clone()
    }

    fn install_once() -> Result<Self, MetricsError> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .map_err(|err: BuildError| MetricsError::Build(err.to_string()))?
            .build_recorder();
        let handle = recorder.handle();
        if crate::switches::enabled(crate::switches::METRICS)? {
            metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
            // The help text of what this crate records (build_info, the
            // exporter's counter, the cgroup limit) comes from the catalog.
            crate::catalog::describe_source(crate::catalog::TELEMETRY_SOURCE)
                .map_err(|err| MetricsError::Catalog(err.to_string()))?;
            crate::span_export::start_at_zero();
        }
        let process = metrics_process::Collector::default();
        process.describe();
        crate::cgroup::record_memory_limit();
        Ok(Self {
            handle,
            process: Arc::new(process),
        })
    }

    /// Renders the Prometheus text exposition, refreshing the process metrics
    /// (and the cgroup's memory limit) first.
    pub fn render(&self) -> String {
        self.process.collect();
        crate::cgroup::record_memory_limit();
        self.handle.render()
    }

    /// Drains expired histogram samples; call it every [`UPKEEP_INTERVAL`].
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Sets `build_info{service, version} 1`.
pub fn record_build_info(service: &str, version: &str) {
    metrics::gauge!("build_info", "service" => service.to_owned(), "version" => version.to_owned())
        .set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_twice_returns_the_same_recorder() {
        let first = Metrics::install().unwrap();
        let second = Metrics::install().unwrap();
        record_build_info("test", "1.2.3");
        let text = second.render();
        assert!(
            text.contains(r#"build_info{service="test",version="1.2.3"} 1"#),
            "{text}"
        );
        assert!(first.render().contains("build_info"));
    }

    #[test]
    fn help_lines_are_the_catalog_meanings() {
        let metrics = Metrics::install().unwrap();
        record_build_info("test", "1.2.3");
        let catalog = crate::Catalog::embedded().unwrap();
        let meaning = &catalog.get("build_info").unwrap().meaning;
        let text = metrics.render();
        assert!(
            text.contains(&format!("# HELP build_info {meaning}\n")),
            "{text}"
        );
    }

    #[test]
    fn process_metrics_are_rendered() {
        let metrics = Metrics::install().unwrap();
        let text = metrics.render();
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
