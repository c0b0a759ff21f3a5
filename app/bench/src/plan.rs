//! What a run measures and for how long, and the telemetry variants.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long and how hard a run measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every variant is measured once per round; ratios are taken within a round.
    pub rounds: usize,
    /// Load sent and discarded before each measurement.
    #[serde(with = "humantime_serde_compat")]
    pub warmup: Duration,
    /// One closed-loop (peak throughput) measurement.
    #[serde(with = "humantime_serde_compat")]
    pub closed: Duration,
    /// One open-loop (latency at a fixed rate) measurement.
    #[serde(with = "humantime_serde_compat")]
    pub open: Duration,
    /// Closed-loop workers.
    pub concurrency: usize,
    /// Open loop: the most requests in flight (more are counted as dropped).
    pub open_concurrency: usize,
    /// Figure 1's fixed rate, as a fraction of the telemetry-off peak.
    pub load_fraction: f64,
    /// Figure 3's fixed rate, requests per second.
    pub proxy_rate: f64,
    /// Figure 5's fixed rate, requests per second: one every cache level
    /// sustains.
    #[serde(default = "default_cache_rate")]
    pub cache_rate: f64,
    /// Figure 4: how long idle roles settle before their RSS is read.
    #[serde(with = "humantime_serde_compat")]
    pub settle: Duration,
    /// Figure 4: how long the realistic mix runs while RSS is sampled.
    #[serde(with = "humantime_serde_compat")]
    pub footprint_load: Duration,
}

impl Plan {
    /// The real measurement: about a quarter of an hour.
    pub fn full() -> Self {
        Self {
            rounds: 7,
            warmup: Duration::from_secs(1),
            closed: Duration::from_secs(4),
            open: Duration::from_secs(5),
            concurrency: 32,
            open_concurrency: 256,
            load_fraction: 0.5,
            proxy_rate: 1000.0,
            cache_rate: default_cache_rate(),
            settle: Duration::from_secs(3),
            footprint_load: Duration::from_secs(15),
        }
    }

    /// A smoke test of every benchmark: seconds, and meaningless numbers.
    pub fn quick() -> Self {
        Self {
            rounds: 1,
            warmup: Duration::from_millis(200),
            closed: Duration::from_millis(700),
            open: Duration::from_millis(700),
            concurrency: 8,
            open_concurrency: 64,
            load_fraction: 0.5,
            proxy_rate: 200.0,
            cache_rate: 200.0,
            settle: Duration::from_millis(500),
            footprint_load: Duration::from_secs(2),
        }
    }
}

fn default_cache_rate() -> f64 {
    1000.0
}

/// Durations as humantime strings in the JSON (`"4s"`, `"700ms"`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Which parts of the telemetry a gateway and catalog run with (figure 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Telemetry {
    /// `RUST_LOG=off` (no spans, no events), `OTEL_SDK_DISABLED=true`,
    /// `FAULTLINE_METRICS=off`.
    Off,
    /// As deployed: spans exported over OTLP at 100% sampling, metrics, JSON
    /// logs at info (to /dev/null).
    Full,
    /// Spans exported over OTLP at 100% sampling; no metrics, no log lines.
    Traces,
    /// The metrics recorder and middleware only.
    Metrics,
    /// JSON logs at info with trace ids: spans exist (for the ids) but are
    /// not exported; no metrics.
    Logs,
    /// Full, with the shop's default head sampling (10% of new traces,
    /// `parentbased_traceidratio`), and a load that sends no `traceparent`,
    /// as most clients do: the deployed default.
    Sampled10,
    /// Full at 1% head sampling, the load sending no `traceparent`.
    Sampled1,
}

impl Telemetry {
    /// Every variant; `Off` is the baseline.
    pub const ALL: [Self; 7] = [
        Self::Off,
        Self::Full,
        Self::Traces,
        Self::Metrics,
        Self::Logs,
        Self::Sampled10,
        Self::Sampled1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Full => "full",
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
            Self::Sampled10 => "full-10pct",
            Self::Sampled1 => "full-1pct",
        }
    }

    /// Whether spans are exported to an OTLP sink.
    pub fn exports(self) -> bool {
        matches!(
            self,
            Self::Full | Self::Traces | Self::Sampled10 | Self::Sampled1
        )
    }

    /// The head-sampling ratio of new traces, for the variants that sample
    /// (their spans go to a sink of their own, so that figure 1's count of
    /// spans per request stays that of every request traced).
    pub fn sampling(self) -> Option<f64> {
        match self {
            Self::Sampled10 => Some(0.1),
            Self::Sampled1 => Some(0.01),
            _ => None,
        }
    }

    /// Whether every request's spans are exported (to figure 1's sink,
    /// which counts spans per request).
    pub fn traces_every_request(self) -> bool {
        matches!(self, Self::Full | Self::Traces)
    }

    /// Whether the load sends a sampled `traceparent` (every variant but
    /// the sampled ones, whose services decide).
    pub fn traceparent(self) -> bool {
        self.sampling().is_none()
    }

    /// The environment that selects this variant; `otlp` is the sink's
    /// `http://host:port`.
    pub fn env(self, otlp: &str) -> Vec<(&'static str, String)> {
        let on_off = |on: bool| if on { "on" } else { "off" }.to_owned();
        let (spans, export, metrics, logs) = match self {
            Self::Off => (false, false, false, false),
            Self::Full | Self::Sampled10 | Self::Sampled1 => (true, true, true, true),
            Self::Traces => (true, true, false, false),
            Self::Metrics => (false, false, true, false),
            Self::Logs => (true, false, false, true),
        };
        let mut env = vec![
            ("RUST_LOG", if spans { "info" } else { "off" }.to_owned()),
            ("FAULTLINE_METRICS", on_off(metrics)),
            ("FAULTLINE_LOGS", on_off(logs)),
        ];
        if export {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.to_owned()));
            match self.sampling() {
                Some(ratio) => {
                    env.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".to_owned()));
                    env.push(("OTEL_TRACES_SAMPLER_ARG", ratio.to_string()));
                }
                None => env.push(("OTEL_TRACES_SAMPLER", "always_on".to_owned())),
            }
        } else {
            env.push(("OTEL_SDK_DISABLED", "true".to_owned()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(env: &[(&str, String)], key: &str) -> Option<String> {
        env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn off_turns_everything_off() {
        let env = Telemetry::Off.env("http://127.0.0.1:4317");
        assert_eq!(get(&env, "RUST_LOG").as_deref(), Some("off"));
        assert_eq!(get(&env, "OTEL_SDK_DISABLED").as_deref(), Some("true"));
        assert_eq!(get(&env, "FAULTLINE_METRICS").as_deref(), Some("off"));
        assert_eq!(get(&env, "OTEL_EXPORTER_OTLP_ENDPOINT"), None);
    }

    #[test]
    fn full_exports_everything() {
        let env = Telemetry::Full.env("http://127.0.0.1:4317");
        assert_eq!(get(&env, "RUST_LOG").as_deref(), Some("info"));
        assert_eq!(
            get(&env, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            Some("http://127.0.0.1:4317")
        );
        assert_eq!(
            get(&env, "OTEL_TRACES_SAMPLER").as_deref(),
            Some("always_on")
        );
        assert_eq!(get(&env, "OTEL_SDK_DISABLED"), None);
        assert_eq!(get(&env, "FAULTLINE_METRICS").as_deref(), Some("on"));
        assert_eq!(get(&env, "FAULTLINE_LOGS").as_deref(), Some("on"));
    }

    #[test]
    fn each_part_alone() {
        let traces = Telemetry::Traces.env("x");
        assert_eq!(get(&traces, "FAULTLINE_LOGS").as_deref(), Some("off"));
        assert!(Telemetry::Traces.exports());
        let logs = Telemetry::Logs.env("x");
        assert_eq!(get(&logs, "RUST_LOG").as_deref(), Some("info"));
        assert_eq!(get(&logs, "OTEL_SDK_DISABLED").as_deref(), Some("true"));
        let metrics = Telemetry::Metrics.env("x");
        assert_eq!(get(&metrics, "RUST_LOG").as_deref(), Some("off"));
        assert_eq!(get(&metrics, "FAULTLINE_METRICS").as_deref(), Some("on"));
    }

    #[test]
    fn sampled_variants_are_full_at_a_ratio_with_no_traceparent() {
        let env = Telemetry::Sampled10.env("x");
        assert_eq!(
            get(&env, "OTEL_TRACES_SAMPLER").as_deref(),
            Some("parentbased_traceidratio")
        );
        assert_eq!(get(&env, "OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.1"));
        assert_eq!(get(&env, "FAULTLINE_METRICS").as_deref(), Some("on"));
        assert_eq!(get(&env, "FAULTLINE_LOGS").as_deref(), Some("on"));
        let one = Telemetry::Sampled1.env("x");
        assert_eq!(
            get(&one, "OTEL_TRACES_SAMPLER_ARG").as_deref(),
            Some("0.01")
        );
        assert!(!Telemetry::Sampled1.traceparent() && Telemetry::Full.traceparent());
        assert_eq!(
            get(&Telemetry::Full.env("x"), "OTEL_TRACES_SAMPLER_ARG"),
            None
        );
    }

    #[test]
    fn plans_round_trip_through_json() {
        let plan = Plan::full();
        let text = serde_json::to_string(&plan).unwrap();
        assert!(text.contains(r#""closed":"4s""#), "{text}");
        assert_eq!(serde_json::from_str::<Plan>(&text).unwrap(), plan);
    }
}
