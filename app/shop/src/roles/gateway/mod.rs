//! gateway: the public API. It forwards to catalog and orders over HTTP, each
//! upstream a list of replica endpoints, and answers a fast 503 problem when an
//! upstream cannot. `/openapi.json` documents the API.

mod config;

pub use config::GatewayConfig;

pub mod cache;
pub mod openapi;

use std::borrow::Borrow;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::{Authenticator, Caller};
use crate::domain::{CheckoutBody, Order, Product, ProductList};
use crate::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use crate::http::client::UpstreamResponse;
use crate::http::outbound::Upstreams;
use crate::http::{ApiBytes, ApiPath, Upstream, UpstreamError};
use crate::problem::Problem;
use crate::redis_client::RedisClient;
use crate::resilience::rate_limit::{Quota, RateLimit};
use crate::roles::Role;
use crate::shared_cache::SharedCache;
use crate::startup::StartupError;
pub use cache::{CachedAnswer, CatalogCache, LocalCache};

/// The role's name.
pub const NAME: &str = "gateway";

/// Builds the gateway: the public API over the catalog and orders replicas,
/// with a per-client rate limit, both shared with the other replicas through
/// Redis when it is configured.
pub fn build(config: &GatewayConfig) -> Result<Role, StartupError> {
    cache::register_metrics();
    let redis = RedisClient::from_config(&config.redis)?;
    let rate_limit = RateLimit::new(
        Quota {
            per_second: config.rate_limit_per_second,
            burst: config.rate_limit_burst,
        },
        redis.clone().map(|redis| (redis, config.replicas)),
    )
    .with_client_ip_header(config.client_ip_header.clone());
    let timeout = config.client.upstream_timeout;
    let mut upstreams = Upstreams::new(&config.client).map_err(StartupError::Client)?;
    let state = GatewayState {
        cache: CatalogCache::new(
            LocalCache::new(config.catalog_cache_entries, config.catalog_cache_ttl),
            redis.map(|redis| SharedCache::new(redis, config.shared_cache_ttl)),
        )
        .coalescing(config.catalog_coalesce),
        catalog: upstreams.add("catalog", config.catalog.replicas(), timeout),
        orders: upstreams.add("orders", config.orders.replicas(), timeout),
    };
    let (auth, refresh) = Authenticator::start(&config.auth)?;
    let mut role = Role::new(router(state), &config.serve);
    role.call(upstreams);
    role.rate_limit = Some(rate_limit);
    role.auth = Some(auth);
    role.background.extend(refresh);
    Ok(role)
}

/// A catalog fetch's outcome, as every caller that waited for it gets it.
pub type Fetched = Result<UpstreamResponse, Arc<UpstreamError>>;

/// What the gateway handlers share.
#[derive(Debug, Clone)]
pub struct GatewayState {
    pub catalog: Upstream,
    pub orders: Upstream,
    /// Catalog answers: served fresh within the TTLs, stale while the catalog fails.
    pub cache: CatalogCache<Fetched>,
}

/// The header marking a degraded answer.
pub const X_DEGRADED: HeaderName = HeaderName::from_static("x-degraded");

/// GETs `path`: from the cache while its answer is fresh (locally, else in
/// Redis), else from the catalog, one fetch per path at a time; when the
/// catalog fails, from the stale local cache (marked `X-Degraded:
/// stale-catalog`), else a fast 503.
async fn catalog_read(state: &GatewayState, path: String) -> Response {
    if let Some(fresh) = state.cache.lookup(&path).await {
        return cached_response(fresh);
    }
    let result = state
        .cache
        .fetch_once(&path, || async {
            // A caller that waited for the previous fetch finds its answer here.
            if let Some(fresh) = state.cache.fetched_meanwhile(&path) {
                return Ok(UpstreamResponse {
                    status: StatusCode::OK,
                    headers: fresh
                        .content_type
                        .iter()
                        .map(|value| (header::CONTENT_TYPE, value.clone()))
                        .collect(),
                    body: fresh.body,
                });
            }
            let result = state.catalog.get(&path, HeaderMap::new()).await;
            if let Ok(answer) = &result
                && answer.status.is_success()
            {
                state.cache.store(
                    &path,
                    CachedAnswer::new(
                        answer.headers.get(header::CONTENT_TYPE).cloned(),
                        answer.body.clone(),
                    ),
                );
            }
            result.map_err(Arc::new)
        })
        .await;
    match &result {
        Ok(answer) if !answer.status.is_server_error() => forward(result),
        _ => match state.cache.stale(&path) {
            Some(cached) => {
                metrics::counter!("degraded_responses_total", "reason" => "stale_catalog")
                    .increment(1);
                tracing::info!(path, "catalog unavailable: serving the stale copy");
                let mut response = cached_response(cached);
                response.headers_mut().insert(
                    X_DEGRADED,
                    axum::http::HeaderValue::from_static("stale-catalog"),
                );
                response
            }
            None => forward(result),
        },
    }
}

fn cached_response(cached: CachedAnswer) -> Response {
    let mut response = (StatusCode::OK, cached.body).into_response();
    if let Some(content_type) = cached.content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

/// The public API.
pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/api/products", get(list_products))
        .route("/api/products/{id}", get(get_product))
        .route("/api/orders", axum::routing::post(create_order))
        .route("/api/orders/{id}", get(get_order))
        .route("/openapi.json", get(openapi::serve))
        .with_state(state)
}

/// Response headers passed back from an upstream.
const FORWARDED: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::RETRY_AFTER,
    IDEMPOTENT_REPLAYED,
];

fn forward<E: Borrow<UpstreamError>>(result: Result<UpstreamResponse, E>) -> Response {
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
            let err = err.borrow();
            tracing::warn!(error = %err, "upstream call failed");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail(format!("{} is unavailable; retry later", upstream_of(err)))
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
        | UpstreamError::CircuitOpen { upstream }
        | UpstreamError::DeadlineExceeded { upstream }
        | UpstreamError::BadPath { upstream, .. } => upstream,
    }
}

/// List the products.
///
/// Public: no credential needed, but a bearer token presented must be valid.
#[utoipa::path(
    get, path = "/api/products", tag = "shop",
    security((), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The products; `X-Degraded: stale-catalog` when served from the gateway's cache while the catalog is down; otherwise up to `FAULTLINE_CATALOG_CACHE_TTL` old", body = ProductList,
            headers(("X-Degraded" = String, description = "`stale-catalog` when the answer is the gateway's stale copy"))),
        (status = 400, description = "`X-Request-Timeout-Ms` is not a whole number of milliseconds of at least 1", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = openapi::InvalidToken),
        (status = 429, response = openapi::TooManyRequests),
        (status = 503, response = openapi::ServiceUnavailable),
    )
)]
#[tracing::instrument(level = "debug", skip(state))]
async fn list_products(State(state): State<GatewayState>) -> Response {
    catalog_read(&state, "/api/products".to_owned()).await
}

/// One product.
///
/// Public: no credential needed, but a bearer token presented must be valid.
#[utoipa::path(
    get, path = "/api/products/{id}", tag = "shop",
    security((), ("bearerAuth" = [])),
    params(("id" = crate::domain::ProductId, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The product", body = Product,
            headers(("X-Degraded" = String, description = "`stale-catalog` when the answer is the gateway's stale copy"))),
        (status = 400, description = "The id is not a 64-bit integer", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = openapi::InvalidToken),
        (status = 404, description = "No such product (no id below 1 exists)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = openapi::TooManyRequests),
        (status = 503, response = openapi::ServiceUnavailable),
    )
)]
#[tracing::instrument(level = "debug", skip(state))]
async fn get_product(State(state): State<GatewayState>, ApiPath(id): ApiPath<i64>) -> Response {
    catalog_read(&state, format!("/api/products/{id}")).await
}

/// Place an order (checkout).
///
/// Send a unique `Idempotency-Key` per checkout, and the same key when retrying
/// it: the retry gets the first answer back (with `Idempotent-Replayed: true`).
#[utoipa::path(
    post, path = "/api/orders", tag = "shop",
    security(("bearerAuth" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 255 visible ASCII characters (no space), unique per checkout; the same key when retrying it",
        min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")),
    request_body(content = CheckoutBody, content_type = "application/json", description = "1 to 20 lines, each product once, quantity 1 to 100; at most 64 KiB. The body is read as JSON whatever its Content-Type."),
    responses(
        (status = 201, description = "Placed and paid (or, with `Idempotent-Replayed: true`, the first answer to this key)", body = Order,
            headers(
                ("Location" = String, description = "`/api/orders/{id}`: the order"),
                ("Idempotent-Replayed" = String, description = "`true` when the answer is replayed from an earlier request with this key"),
            )),
        (status = 202, description = "Placed; payment is pending and will be settled later", body = Order,
            headers(
                ("Location" = String, description = "`/api/orders/{id}`: the order"),
                ("Idempotent-Replayed" = String, description = "`true` when the answer is replayed from an earlier request with this key"),
            )),
        (status = 400, description = "Malformed JSON, or a missing or invalid Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = openapi::Unauthorized),
        (status = 402, description = "The payment was declined", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock, or a request with the same key is still in progress (with `Retry-After`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "When the same key is in progress: seconds to wait"))),
        (status = 413, description = "The body is over 64 KiB; the connection is closed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A body that breaks the schema (a wrong type, an integer written with a fraction or out of range, an unknown or missing field), lines out of bounds, a product twice, an unknown product, or the key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = openapi::TooManyRequests),
        (status = 503, response = openapi::ServiceUnavailable),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn create_order(
    State(state): State<GatewayState>,
    _caller: Caller,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Response {
    let mut forwarded = credentials(&headers);
    if let Some(key) = headers.get(&IDEMPOTENCY_KEY) {
        forwarded.insert(IDEMPOTENCY_KEY, key.clone());
    }
    forward(state.orders.post_raw("/api/orders", forwarded, body).await)
}

/// The caller's `Authorization` header, for orders to verify again.
fn credentials(headers: &HeaderMap) -> HeaderMap {
    let mut forwarded = HeaderMap::new();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        forwarded.insert(header::AUTHORIZATION, value.clone());
    }
    forwarded
}

/// One order.
///
/// A customer sees only their own orders: another customer's order is a 404,
/// like one that does not exist, so that order ids cannot be enumerated.
#[utoipa::path(
    get, path = "/api/orders/{id}", tag = "shop",
    security(("bearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, description = "No such order, or it belongs to another customer (404, not 403, so that ids cannot be enumerated)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = openapi::TooManyRequests),
        (status = 503, response = openapi::ServiceUnavailable),
    )
)]
#[tracing::instrument(level = "debug", skip(state))]
async fn get_order(
    State(state): State<GatewayState>,
    _caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Response {
    forward(
        state
            .orders
            .get(&format!("/api/orders/{id}"), credentials(&headers))
            .await,
    )
}
