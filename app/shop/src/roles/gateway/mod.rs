//! gateway: the public API. It forwards to catalog and orders over HTTP, each
//! upstream a list of replica endpoints, and answers a fast 503 problem when an
//! upstream cannot.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::client::UpstreamResponse;
use crate::http::{ApiBytes, ApiPath, Upstream, UpstreamError};
use crate::problem::Problem;
use crate::roles::orders::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};

/// What the gateway handlers share.
#[derive(Debug, Clone)]
pub struct GatewayState {
    pub catalog: Upstream,
    pub orders: Upstream,
}

/// The public API.
pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/api/products", get(list_products))
        .route("/api/products/{id}", get(get_product))
        .route("/api/orders", axum::routing::post(create_order))
        .route("/api/orders/{id}", get(get_order))
        .with_state(state)
}

/// Response headers passed back from an upstream.
const FORWARDED: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::RETRY_AFTER,
    IDEMPOTENT_REPLAYED,
];

fn forward(result: Result<UpstreamResponse, UpstreamError>) -> Response {
    match result {
        Ok(upstream) => {
            let mut response = (upstream.status, upstream.body).into_response();
            for name in FORWARDED {
                if let Some(value) = upstream.headers.get(&name) {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "upstream call failed");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail(format!("{} is unavailable; retry later", upstream_of(&err)))
                .into_response()
        }
    }
}

fn upstream_of(err: &UpstreamError) -> &'static str {
    match err {
        UpstreamError::Timeout { upstream, .. }
        | UpstreamError::Transport { upstream, .. }
        | UpstreamError::Decode { upstream, .. }
        | UpstreamError::NoEndpoints { upstream }
        | UpstreamError::BadPath { upstream, .. } => upstream,
    }
}

/// List the products.
#[tracing::instrument(skip(state))]
async fn list_products(State(state): State<GatewayState>) -> Response {
    forward(state.catalog.get("/api/products", HeaderMap::new()).await)
}

/// One product.
#[tracing::instrument(skip(state))]
async fn get_product(State(state): State<GatewayState>, ApiPath(id): ApiPath<i64>) -> Response {
    forward(
        state
            .catalog
            .get(&format!("/api/products/{id}"), HeaderMap::new())
            .await,
    )
}

/// Place an order (checkout).
#[tracing::instrument(skip_all)]
async fn create_order(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Response {
    let mut forwarded = HeaderMap::new();
    if let Some(key) = headers.get(&IDEMPOTENCY_KEY) {
        forwarded.insert(IDEMPOTENCY_KEY, key.clone());
    }
    forward(state.orders.post_raw("/api/orders", forwarded, body).await)
}

/// One order.
#[tracing::instrument(skip(state))]
async fn get_order(
    State(state): State<GatewayState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Response {
    forward(
        state
            .orders
            .get(&format!("/api/orders/{id}"), HeaderMap::new())
            .await,
    )
}
