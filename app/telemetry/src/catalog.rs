//! The metric catalog: every metric name faultline emits, with its type, unit,
//! labels and meaning. The file is embedded so that code, tests and tools all
//! read the same list, and the `# HELP` line of each metric is its `meaning`
//! here ([`describe_source`]): no help text is written anywhere else.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The catalog file's text, as checked in at `app/telemetry/metrics.toml`.
pub const CATALOG_TOML: &str = include_str!("../metrics.toml");

/// The `source` of the metrics this crate records itself, in every binary.
pub const TELEMETRY_SOURCE: &str = "telemetry";

/// The kind of a metric, as Prometheus renders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

/// One catalog entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MetricType,
    pub unit: String,
    pub labels: Vec<String>,
    pub meaning: String,
    pub source: String,
    pub used_by: Vec<String>,
    /// Rendered only under some condition (for example a resource limit being set).
    #[serde(default)]
    pub optional: bool,
}

impl MetricSpec {
    /// The unit as the `metrics` facade knows it: seconds and bytes, or none
    /// for dimensionless and counted (`{request}`) units.
    pub fn unit(&self) -> Option<metrics::Unit> {
        match self.unit.as_str() {
            "s" => Some(metrics::Unit::Seconds),
            "ms" => Some(metrics::Unit::Milliseconds),
            "By" => Some(metrics::Unit::Bytes),
            _ => None,
        }
    }

    /// Registers this metric's help text (its meaning) and unit with the
    /// process-wide recorder; a no-op when none is installed.
    pub fn describe(&self) {
        let name = metrics::KeyName::from(self.name.clone());
        let help = metrics::SharedString::from(self.meaning.clone());
        let unit = self.unit();
        metrics::with_recorder(|recorder| match self.kind {
            MetricType::Counter => recorder.describe_counter(name, unit, help),
            MetricType::Gauge => recorder.describe_gauge(name, unit, help),
            MetricType::Histogram => recorder.describe_histogram(name, unit, help),
        });
    }

    /// The series names this metric renders as (`_bucket`, `_sum` and `_count` for histograms).
    pub fn series_names(&self) -> Vec<String> {
        match self.kind {
            MetricType::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{}{suffix}", self.name))
                .collect(),
            MetricType::Counter | MetricType::Gauge => vec![self.name.clone()],
        }
    }
}

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("metric catalog: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("metric catalog: {name:?} is listed twice")]
    Duplicate { name: String },
    #[error("metric catalog: {name:?} is not a valid Prometheus metric name")]
    InvalidName { name: String },
    #[error("metric catalog: counter {name:?} must end in _total")]
    CounterSuffix { name: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    metric: Vec<MetricSpec>,
}

/// The parsed catalog, keyed by metric name.
#[derive(Debug, Clone)]
pub struct Catalog {
    metrics: BTreeMap<String, MetricSpec>,
}

impl Catalog {
    /// Parses the embedded catalog.
    pub fn embedded() -> Result<Self, CatalogError> {
        Self::parse(CATALOG_TOML)
    }

    /// Parses a catalog from TOML text and checks its invariants.
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        let mut metrics = BTreeMap::new();
        for spec in file.metric {
            if !is_valid_metric_name(&spec.name) {
                return Err(CatalogError::InvalidName { name: spec.name });
            }
            if spec.kind == MetricType::Counter && !spec.name.ends_with("_total") {
                return Err(CatalogError::CounterSuffix { name: spec.name });
            }
            if metrics.contains_key(&spec.name) {
                return Err(CatalogError::Duplicate { name: spec.name });
            }
            metrics.insert(spec.name.clone(), spec);
        }
        Ok(Self { metrics })
    }

    /// Looks up a metric by its name.
    pub fn get(&self, name: &str) -> Option<&MetricSpec> {
        self.metrics.get(name)
    }

    /// Finds the metric a rendered series belongs to (`x_bucket` belongs to histogram `x`).
    pub fn metric_of_series(&self, series: &str) -> Option<&MetricSpec> {
        if let Some(spec) = self.metrics.get(series) {
            return Some(spec);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = series.strip_suffix(suffix)?;
            self.metrics
                .get(base)
                .filter(|spec| spec.kind == MetricType::Histogram)
        })
    }

    /// Every entry, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &MetricSpec> {
        self.metrics.values()
    }

    /// The entries produced by `source` (`shop`, `telemetry`, `chaos`, ...).
    pub fn from_source<'a>(&'a self, source: &'a str) -> impl Iterator<Item = &'a MetricSpec> {
        self.iter().filter(move |spec| spec.source == source)
    }
}

/// Describes every metric of the embedded catalog that `source` produces, so
/// that its `# HELP` line is the catalog's meaning. The recorder keeps the
/// first description of a name, and renders one only for a metric that has
/// series, so describing a metric this process never records costs nothing.
pub fn describe_source(source: &str) -> Result<(), CatalogError> {
    let catalog = Catalog::embedded()?;
    for spec in catalog.from_source(source) {
        spec.describe();
    }
    Ok(())
}

fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_parses() {
        let catalog = Catalog::embedded().unwrap();
        assert!(catalog.get("build_info").is_some());
    }

    #[test]
    fn units_map_to_the_facade_where_it_has_one() {
        let catalog = Catalog::embedded().unwrap();
        let unit = |name: &str| catalog.get(name).unwrap().unit();
        assert_eq!(
            unit("http_server_request_duration_seconds"),
            Some(metrics::Unit::Seconds)
        );
        assert_eq!(
            unit("process_resident_memory_limit_bytes"),
            Some(metrics::Unit::Bytes)
        );
        assert_eq!(unit("orders_total"), None);
        assert_eq!(unit("build_info"), None);
    }

    #[test]
    fn every_source_the_code_describes_has_entries() {
        let catalog = Catalog::embedded().unwrap();
        for source in ["shop", "telemetry", "proxy"] {
            assert!(catalog.from_source(source).next().is_some(), "{source}");
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        let text = r#"
[[metric]]
name = "a"
type = "gauge"
unit = "1"
labels = []
meaning = "x"
source = "shop"
used_by = []

[[metric]]
name = "a"
type = "gauge"
unit = "1"
labels = []
meaning = "y"
source = "shop"
used_by = []
"#;
        assert!(matches!(
            Catalog::parse(text),
            Err(CatalogError::Duplicate { name }) if name == "a"
        ));
    }

    #[test]
    fn counters_must_end_in_total() {
        let text = r#"
[[metric]]
name = "requests"
type = "counter"
unit = "1"
labels = []
meaning = "x"
source = "shop"
used_by = []
"#;
        assert!(matches!(
            Catalog::parse(text),
            Err(CatalogError::CounterSuffix { .. })
        ));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = r#"
[[metric]]
name = "a"
type = "gauge"
unit = "1"
labels = []
meaning = "x"
source = "shop"
used_by = []
colour = "red"
"#;
        let err = Catalog::parse(text).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn histogram_series_resolve_to_their_metric() {
        let text = r#"
[[metric]]
name = "http_server_request_duration_seconds"
type = "histogram"
unit = "s"
labels = []
meaning = "x"
source = "shop"
used_by = []
"#;
        let catalog = Catalog::parse(text).unwrap();
        for series in ["_bucket", "_sum", "_count"] {
            let name = format!("http_server_request_duration_seconds{series}");
            assert!(catalog.metric_of_series(&name).is_some(), "{name}");
        }
        assert!(catalog.metric_of_series("other_bucket").is_none());
    }
}
