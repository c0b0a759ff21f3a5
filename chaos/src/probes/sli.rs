//! `type = "sli"`: the SLI of the harness's own load, from loadgen windows.

use faultline_loadgen::{Route, RouteSummary, Window};
use serde_json::json;

use super::{Observation, Probe, ProbeContext, ProbeError};
use crate::experiment::{SliMetric, SliOver, SliProbe};

#[derive(Debug, Clone)]
pub struct SliCheck {
    pub spec: SliProbe,
}

/// The summaries of the chosen routes in one window (all routes: the totals).
fn summaries<'a>(window: &'a Window, routes: &[Route]) -> Vec<&'a RouteSummary> {
    if routes.is_empty() {
        vec![&window.totals]
    } else {
        routes.iter().filter_map(|r| window.routes.get(r)).collect()
    }
}

fn requests(window: &Window, routes: &[Route]) -> u64 {
    summaries(window, routes).iter().map(|s| s.count).sum()
}

/// Computes `metric` over `windows` (already narrowed to the scope).
/// Counts and ratios add up over every window; latency is the worst window
/// with at least `min_requests` requests. `None` when there is no data.
pub fn compute(
    metric: SliMetric,
    routes: &[Route],
    windows: &[Window],
    min_requests: u64,
) -> Option<f64> {
    let all: Vec<&RouteSummary> = windows.iter().flat_map(|w| summaries(w, routes)).collect();
    let sum = |f: fn(&RouteSummary) -> u64| all.iter().map(|s| f(s)).sum::<u64>();
    let count = sum(|s| s.count);
    let as_f64 = |n: u64| n as f64;
    let latency = |f: fn(&RouteSummary) -> f64| {
        windows
            .iter()
            .filter(|w| requests(w, routes) >= min_requests)
            .flat_map(|w| summaries(w, routes))
            .filter(|s| s.count > 0)
            .map(f)
            .fold(None, |worst: Option<f64>, v| {
                Some(worst.map_or(v, |w| w.max(v)))
            })
    };
    match metric {
        SliMetric::Requests => Some(as_f64(count)),
        // Counts over routes that got no request are no data, not zero: "0
        // errors" on a route nobody called proves nothing.
        SliMetric::Errors => (count > 0).then(|| as_f64(sum(|s| s.errors))),
        SliMetric::RateLimited => (count > 0).then(|| as_f64(sum(|s| s.rate_limited))),
        SliMetric::Degraded => (count > 0).then(|| as_f64(sum(|s| s.degraded))),
        SliMetric::ErrorRatio => (count > 0).then(|| as_f64(sum(|s| s.errors)) / as_f64(count)),
        SliMetric::SuccessRatio => {
            (count > 0).then(|| 1.0 - as_f64(sum(|s| s.errors)) / as_f64(count))
        }
        SliMetric::P50Ms => latency(|s| s.latency_ms.p50),
        SliMetric::P95Ms => latency(|s| s.latency_ms.p95),
        SliMetric::P99Ms => latency(|s| s.latency_ms.p99),
        SliMetric::MaxMs => latency(|s| s.latency_ms.max),
        SliMetric::MeanMs => latency(|s| s.latency_ms.mean),
    }
}

#[async_trait::async_trait]
impl Probe for SliCheck {
    fn kind(&self) -> &'static str {
        "sli"
    }

    async fn check(&self, cx: &ProbeContext) -> Result<Observation, ProbeError> {
        let spec = &self.spec;
        let phase = cx.timeline.since(cx.phase_start_unix_ms);
        let windows: Vec<Window> = match spec.over {
            SliOver::Phase => phase,
            SliOver::Window => phase
                .into_iter()
                .rev()
                .find(|w| requests(w, &spec.routes) >= spec.min_requests)
                .into_iter()
                .collect(),
        };
        let scope = if spec.routes.is_empty() {
            "all routes".to_owned()
        } else {
            spec.routes
                .iter()
                .map(|r| r.template())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let value =
            compute(spec.metric, &spec.routes, &windows, spec.min_requests).ok_or_else(|| {
                ProbeError::NoData(format!(
                    "no load window with at least {} request(s) on {scope} yet",
                    spec.min_requests
                ))
            })?;
        let ok = spec.tolerance.accepts(value);
        Ok(Observation::new(
            ok,
            json!({"value": value, "windows": windows.len()}),
            format!(
                "{:?} on {scope} over {} window(s) = {value:.4}, expected {}",
                spec.metric,
                windows.len(),
                spec.tolerance
            ),
        ))
    }
}
