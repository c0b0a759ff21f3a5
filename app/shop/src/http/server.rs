//! The inbound stack, outermost first: a span named by the route template and
//! RED metrics; on the gateway and orders, the bearer token verified
//! (`auth::identify`); on the gateway a per-client rate limit (by the token's
//! subject, else the client's address); a 401 for a refused token
//! (`auth::reject_invalid`); a concurrency limit
//! that sheds load; the request's deadline (its own timeout, or the caller's
//! shorter budget); injected faults when the fault admin API is on; and a body
//! limit.
//!
//! The server span already names the route, so handlers that only read or
//! forward are instrumented at `debug` (`RUST_LOG=debug` shows them); those
//! that do the business (checkout, reserve, authorize) are at `info`, with the
//! ids they work on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use super::route_metrics::{Route, RouteMetrics};
use crate::faults::Faults;
use crate::problem::Problem;
use crate::resilience::rate_limit::{self, RateLimit};
use crate::resilience::{deadline, shed};
use faultline_telemetry::http_spans::{HttpRequest, ServerSpan};

/// The largest request body any role accepts.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The route label of requests that matched no route: bounded, never the raw path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// What the inbound stack enforces.
#[derive(Debug, Clone)]
pub struct ServerPolicy {
    /// The longest a request may take; a caller's shorter budget wins.
    pub request_timeout: Duration,
    /// Requests in flight beyond which new ones are shed with 503.
    pub max_in_flight: usize,
    /// Per-client rate limit (the gateway's).
    pub rate_limit: Option<RateLimit>,
    /// Bearer-token authentication (the gateway's and orders').
    pub auth: Option<crate::auth::Authenticator>,
    /// Faults injected through the fault admin API.
    pub faults: Option<Faults>,
}

/// Wraps a role's public router in the inbound stack.
pub fn stack(router: Router, policy: ServerPolicy) -> Router {
    let mut router = router.layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES));
    if let Some(faults) = policy.faults {
        router = router.layer(middleware::from_fn_with_state(faults, crate::faults::apply));
    }
    router = router.layer(middleware::from_fn_with_state(
        policy.request_timeout,
        enforce_deadline,
    ));
    router = shed::apply(router, policy.max_in_flight);
    if policy.auth.is_some() {
        router = router.layer(middleware::from_fn(crate::auth::reject_invalid));
    }
    if let Some(rate_limit) = policy.rate_limit {
        router = router.layer(middleware::from_fn_with_state(
            rate_limit,
            rate_limit::limit,
        ));
    }
    if let Some(auth) = policy.auth {
        router = router.layer(middleware::from_fn_with_state(auth, crate::auth::identify));
    }
    router.layer(middleware::from_fn_with_state(
        RouteMetrics::default(),
        observe,
    ))
}

/// Runs the request under its deadline, and answers 503 when it passes.
async fn enforce_deadline(
    State(own_timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = match deadline::from_headers(request.headers(), own_timeout) {
        Ok(deadline) => deadline,
        Err(invalid) => {
            return Problem::new(StatusCode::BAD_REQUEST)
                .with_detail(invalid.to_string())
                .into_response();
        }
    };
    match tokio::time::timeout_at(deadline, deadline::scope(deadline, next.run(request))).await {
        Ok(response) => response,
        Err(_) => {
            crate::resilience::reject("deadline_exceeded");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("the request's deadline passed before an answer was ready")
                .into_response()
        }
    }
}

/// Decrements the active-requests gauge even when the request is cancelled.
struct ActiveGuard(Arc<Route>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active().decrement(1.0);
    }
}

/// A request slower than this is logged, with its trace id, even when
/// nothing failed: at a low sampling ratio the line may be its only record.
pub const SLOW_REQUEST: Duration = Duration::from_secs(1);

/// One span and one set of RED samples per request, named by the route
/// template; a log line for a failed (5xx) or slow request.
///
/// The server span is made with the OpenTelemetry API
/// ([`ServerSpan`]), when `RUST_LOG` enables `info` here: the handler's
/// `tracing` spans and log lines find its context (see
/// `faultline_telemetry::http_spans`).
pub async fn observe(State(routes): State<RouteMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let handles = routes.route(request.method(), route);
    let span = if tracing::enabled!(tracing::Level::INFO) {
        let parent = faultline_telemetry::propagation::extract(request.headers());
        ServerSpan::start(
            &parent,
            HttpRequest {
                name: handles.span_name(),
                method: request.method().as_str(),
                route,
                path: request.uri().path(),
            },
        )
    } else {
        ServerSpan::none()
    };

    handles.active().increment(1.0);
    let _guard = ActiveGuard(Arc::clone(&handles));
    let started = Instant::now();
    let response = span.with_current(next.run(request)).await;
    let status = response.status();
    let elapsed = started.elapsed();
    span.record_status(status.as_u16());
    if status.is_server_error() {
        span.in_scope(|| {
            tracing::warn!(
                status = status.as_u16(),
                duration_ms = elapsed.as_millis() as u64,
                "request failed"
            );
        });
    } else if elapsed >= SLOW_REQUEST {
        span.in_scope(|| {
            tracing::info!(
                status = status.as_u16(),
                duration_ms = elapsed.as_millis() as u64,
                "slow request"
            );
        });
    }
    handles.record(status, elapsed.as_secs_f64());
    response
}
