//! The admin listener: `/health/live`, `/health/ready` and `/metrics`.
//!
//! It is a separate port from the public API so that probes and scrapes are
//! never rate-limited, never counted as user traffic, and never exposed publicly.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use faultline_telemetry::Metrics;
use serde_json::json;

use crate::db;
use crate::health::Health;
use crate::problem::{self, Problem};

/// The Prometheus text exposition format's media type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub health: Health,
    pub metrics: Metrics,
    pub pool: Option<sqlx::PgPool>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .with_state(state)
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

async fn ready(State(state): State<AdminState>) -> Response {
    match state.health.check_ready().await {
        Ok(readiness) => Json(readiness).into_response(),
        Err(not_ready) => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(not_ready.to_string())
            .into_response(),
    }
}

async fn render_metrics(State(state): State<AdminState>) -> Response {
    if let Some(pool) = &state.pool {
        db::record_pool_metrics(pool, db::PoolName::Primary);
    }
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.metrics.render(),
    )
        .into_response()
}
