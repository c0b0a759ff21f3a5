//! catalog: products, stock and reservations. Fails fast, never hangs: every
//! query waits at most the pool's acquire timeout for a connection.

mod config;

pub use config::CatalogConfig;

pub mod store;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use sqlx::PgPool;
use tracing::Instrument;

use crate::domain::{OrderId, ProductId, ProductList, ReservationRequest};
use crate::http::{ApiJson, ApiPath};
use crate::problem::Problem;
use crate::redis_client::RedisClient;
use crate::roles::{Database, Role};
use crate::shared_cache;
use crate::startup::StartupError;
use store::ReserveError;

/// The role's name.
pub const NAME: &str = "catalog";

/// Builds the catalog: its API over its database.
pub fn build(config: &CatalogConfig) -> Result<Role, StartupError> {
    let database = Database::connect_lazy(&config.database, NAME)?;
    let redis = RedisClient::from_config(&config.redis)?;
    if redis.is_some() {
        shared_cache::register_metrics();
    }
    let state = CatalogState {
        pool: database.pool.clone(),
        redis,
    };
    let mut role = Role::new(router(state), &config.serve);
    role.database = Some(database);
    Ok(role)
}

/// What the catalog handlers share.
#[derive(Debug, Clone)]
pub struct CatalogState {
    pub pool: PgPool,
    /// The gateways' shared cache, to drop what a stock change makes wrong.
    pub redis: Option<RedisClient>,
}

impl CatalogState {
    /// Drops the shared answers of `products` in the background: a stock
    /// change never waits for Redis, nor fails because of it.
    fn invalidate(&self, products: Vec<i64>) {
        if let Some(redis) = self.redis.clone() {
            tokio::spawn(
                async move { shared_cache::invalidate(&redis, products).await }.in_current_span(),
            );
        }
    }
}

/// The catalog's API.
pub fn router(state: CatalogState) -> Router {
    Router::new()
        .route("/api/products", get(list_products))
        .route("/api/products/{id}", get(get_product))
        .route("/api/reservations", post(reserve))
        .route("/api/reservations/{order_id}", delete(release))
        .with_state(state)
}

/// A database failure, answered as a fast 503.
pub(crate) fn unavailable(err: &sqlx::Error) -> Problem {
    tracing::warn!(error = %err, "database operation failed");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail("the database is unavailable; retry later")
}

#[tracing::instrument(level = "debug", skip(state))]
async fn list_products(State(state): State<CatalogState>) -> Result<Response, Problem> {
    let products = store::list_products(&state.pool)
        .await
        .map_err(|err| unavailable(&err))?;
    Ok(axum::Json(ProductList { products }).into_response())
}

#[tracing::instrument(level = "debug", skip(state))]
async fn get_product(
    State(state): State<CatalogState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, Problem> {
    let not_found = || Problem::new(StatusCode::NOT_FOUND).with_detail(format!("no product {id}"));
    let id = ProductId::parse(id).map_err(|_| not_found())?;
    match store::get_product(&state.pool, id).await {
        Ok(Some(product)) => Ok(axum::Json(product).into_response()),
        Ok(None) => Err(not_found()),
        Err(err) => Err(unavailable(&err)),
    }
}

#[tracing::instrument(skip(state, request), fields(order_id = %request.order_id))]
async fn reserve(
    State(state): State<CatalogState>,
    ApiJson(request): ApiJson<ReservationRequest>,
) -> Result<Response, Problem> {
    match store::reserve(&state.pool, &request).await {
        Ok(reservation) => {
            state.invalidate(
                request
                    .items
                    .iter()
                    .map(|line| line.product_id.get())
                    .collect(),
            );
            Ok((StatusCode::CREATED, axum::Json(reservation)).into_response())
        }
        Err(ReserveError::UnknownProduct(id)) => {
            Err(Problem::new(StatusCode::NOT_FOUND).with_detail(format!("no product {id}")))
        }
        Err(ReserveError::InsufficientStock {
            product_id,
            available,
            requested,
        }) => Err(Problem::new(StatusCode::CONFLICT).with_detail(format!(
            "not enough stock of product {product_id}: {available} left, {requested} requested"
        ))),
        Err(ReserveError::Database(err)) => Err(unavailable(&err)),
    }
}

#[tracing::instrument(skip(state))]
async fn release(
    State(state): State<CatalogState>,
    ApiPath(order_id): ApiPath<uuid::Uuid>,
) -> Result<StatusCode, Problem> {
    let released = store::release(&state.pool, OrderId(order_id))
        .await
        .map_err(|err| unavailable(&err))?;
    state.invalidate(released);
    Ok(StatusCode::NO_CONTENT)
}
