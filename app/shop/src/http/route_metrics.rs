//! The RED metrics' handles, resolved once per route and status instead of
//! per request.
//!
//! `metrics::gauge!` and `metrics::histogram!` build their label set and look
//! it up in the recorder's registry on every call: a few allocations and two
//! hashed lookups per request. Here a route's active-requests gauge and its
//! duration histogram per status are looked up once and kept; a request then
//! costs a read lock and a small map lookup without allocating.
//!
//! Handles bind to the recorder installed when they are made, so the cache
//! lives in the router (one per [`super::server::stack`]), which is built
//! after the recorder is installed.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::{Method, StatusCode};
use metrics::{Gauge, Histogram};

/// Each method's routes, by route template.
type Routes = HashMap<Method, HashMap<Box<str>, Arc<Route>>>;

/// The handles of every (method, route) seen so far.
#[derive(Debug, Default, Clone)]
pub struct RouteMetrics {
    routes: Arc<RwLock<Routes>>,
}

/// One route's handles.
#[derive(Debug)]
pub struct Route {
    method: Method,
    route: Box<str>,
    /// The server span's name, `{method} {route}`, made once.
    span_name: Box<str>,
    active: Gauge,
    durations: RwLock<Vec<(StatusCode, Histogram)>>,
}

impl RouteMetrics {
    /// The handles of `method` `route`, made on first use.
    pub fn route(&self, method: &Method, route: &str) -> Arc<Route> {
        if let Some(found) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(method)
            .and_then(|routes| routes.get(route))
        {
            return Arc::clone(found);
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let by_route = routes.entry(method.clone()).or_default();
        Arc::clone(by_route.entry(route.into()).or_insert_with(|| {
            Arc::new(Route {
                method: method.clone(),
                route: route.into(),
                span_name: format!("{method} {route}").into(),
                active: metrics::gauge!(
                    "http_server_active_requests",
                    "http_request_method" => method.as_str().to_owned(),
                    "http_route" => route.to_owned(),
                ),
                durations: RwLock::default(),
            })
        }))
    }
}

impl Route {
    /// The server span's name: `GET /api/products/{id}`.
    pub fn span_name(&self) -> &str {
        &self.span_name
    }

    /// `http_server_active_requests` of this route.
    pub fn active(&self) -> &Gauge {
        &self.active
    }

    /// Records one request's duration under its status.
    pub fn record(&self, status: StatusCode, seconds: f64) {
        let known = self
            .durations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, histogram)| histogram.clone());
        let histogram = known.unwrap_or_else(|| {
            let mut durations = self
                .durations
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((_, histogram)) = durations.iter().find(|(s, _)| *s == status) {
                return histogram.clone();
            }
            let histogram = metrics::histogram!(
                "http_server_request_duration_seconds",
                "http_request_method" => self.method.as_str().to_owned(),
                "http_route" => self.route.to_string(),
                "http_response_status_code" => status.as_str().to_owned(),
            );
            durations.push((status, histogram.clone()));
            histogram
        });
        histogram.record(seconds);
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    #[test]
    fn handles_are_made_once_and_record_under_their_labels() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let cache = RouteMetrics::default();
            let list = cache.route(&Method::GET, "/api/products");
            assert!(Arc::ptr_eq(
                &list,
                &cache.route(&Method::GET, "/api/products")
            ));
            assert_eq!(list.span_name(), "GET /api/products");
            assert!(!Arc::ptr_eq(
                &list,
                &cache.route(&Method::POST, "/api/products")
            ));
            list.active().increment(1.0);
            list.record(StatusCode::OK, 0.01);
            list.record(StatusCode::OK, 0.02);
            list.record(StatusCode::SERVICE_UNAVAILABLE, 0.5);
            assert_eq!(list.durations.read().unwrap().len(), 2);
        });
        let text = handle.render();
        assert!(
            text.contains(r#"http_server_active_requests{http_request_method="GET",http_route="/api/products"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/api/products",http_response_status_code="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_response_status_code="503"} 1"#),
            "{text}"
        );
    }
}
