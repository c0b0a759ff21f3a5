//! catalog: products, stock and reservations. Fails fast, never hangs: every
//! query waits at most the pool's acquire timeout for a connection.

mod config;
mod read_after;

pub use config::CatalogConfig;
pub use read_after::ReadAfter;

pub mod store;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tracing::Instrument;

use crate::domain::{OrderId, ProductId, ProductList, ReservationRequest};
use crate::headers::WRITE_LSN;
use crate::http::{ApiJson, ApiPath};
use crate::problem::Problem;
use crate::read_replica::{Lsn, ReadPools};
use crate::redis_client::RedisClient;
use crate::roles::{Database, Role, TaskContext};
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
    let reads = ReadPools::new(
        database.pool.clone(),
        &config.database,
        &config.replica,
        NAME,
    )?;
    let state = CatalogState {
        reads: reads.clone(),
        redis,
    };
    let mut role = Role::new(router(state), &config.serve);
    role.database = Some(database);
    // Readiness never waits for the standby: reads go to the primary until
    // its checks find it healthy.
    role.background.push(Box::new(move |task: TaskContext| {
        tokio::spawn(async move {
            if let Some(checker) = reads.checker(task.stop) {
                checker.await;
            }
        })
    }));
    Ok(role)
}

/// What the catalog handlers share.
#[derive(Debug, Clone)]
pub struct CatalogState {
    /// The primary for writes, and a standby for the product reads.
    pub reads: ReadPools,
    /// The gateways' shared cache, to drop what a stock change makes wrong.
    pub redis: Option<RedisClient>,
}

impl CatalogState {
    /// Drops the shared answers of `products` in the background: a stock
    /// change never waits for Redis, nor fails because of it.
    ///
    /// With a read replica, twice: at once, and again once the standby has
    /// replayed the write (or its staleness bound has passed), so that a
    /// gateway that missed in between and read the product from a standby
    /// that had not seen the write yet does not keep that stale answer for a
    /// whole TTL.
    fn invalidate(&self, products: Vec<i64>, written: Option<Lsn>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let reads = self.reads.clone();
        tokio::spawn(
            async move {
                shared_cache::invalidate(&redis, products.clone()).await;
                if let Some(lsn) = written {
                    reads.replayed(lsn).await;
                    shared_cache::invalidate(&redis, products).await;
                }
            }
            .in_current_span(),
        );
    }

    /// The answer to a write, with the write's WAL position when a standby
    /// serves reads, for a reader that must see the write.
    async fn written(&self, mut response: Response) -> (Option<Lsn>, Response) {
        let lsn = self.reads.write_position().await;
        if let Some(value) = lsn.and_then(|lsn| HeaderValue::from_str(&lsn.to_string()).ok()) {
            response.headers_mut().insert(WRITE_LSN, value);
        }
        (lsn, response)
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
async fn list_products(
    State(state): State<CatalogState>,
    ReadAfter(after): ReadAfter,
) -> Result<Response, Problem> {
    let products = state
        .reads
        .read(
            after,
            |pool| async move { store::list_products(&pool).await },
        )
        .await
        .map_err(|err| unavailable(&err))?;
    Ok(axum::Json(ProductList { products }).into_response())
}

#[tracing::instrument(level = "debug", skip(state))]
async fn get_product(
    State(state): State<CatalogState>,
    ApiPath(id): ApiPath<i64>,
    ReadAfter(after): ReadAfter,
) -> Result<Response, Problem> {
    let not_found = || Problem::new(StatusCode::NOT_FOUND).with_detail(format!("no product {id}"));
    let id = ProductId::parse(id).map_err(|_| not_found())?;
    let read = state.reads.read(
        after,
        |pool| async move { store::get_product(&pool, id).await },
    );
    match read.await {
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
    match store::reserve(state.reads.primary(), &request).await {
        Ok(reservation) => {
            let created = (StatusCode::CREATED, axum::Json(reservation));
            let (lsn, response) = state.written(created.into_response()).await;
            let products = request.items.iter().map(|line| line.product_id.get());
            state.invalidate(products.collect(), lsn);
            Ok(response)
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
) -> Result<Response, Problem> {
    let released = store::release(state.reads.primary(), OrderId(order_id))
        .await
        .map_err(|err| unavailable(&err))?;
    let (lsn, response) = state.written(StatusCode::NO_CONTENT.into_response()).await;
    state.invalidate(released, lsn);
    Ok(response)
}
