//! The catalog's queries. Stock moves only inside transactions that check it:
//! it never goes negative, however many reservations race.

use sqlx::{PgPool, Postgres, Transaction};

use crate::db::timed;
use crate::domain::{OrderId, OrderItem, Product, ProductId, Reservation, ReservationRequest};

/// How many products a listing returns at most.
pub const LIST_LIMIT: i64 = 100;

/// Why stock could not be reserved.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("no product {0}")]
    UnknownProduct(ProductId),
    #[error("not enough stock of product {product_id}: {available} left, {requested} requested")]
    InsufficientStock {
        product_id: ProductId,
        available: i32,
        requested: i32,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

type ProductRow = (i64, String, String, i64, i32);

fn product((id, sku, name, price_cents, stock): ProductRow) -> Product {
    Product {
        id: ProductId::from_db(id),
        sku,
        name,
        price_cents,
        stock,
    }
}

/// The first [`LIST_LIMIT`] products by id.
#[tracing::instrument(name = "SELECT products", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "products"))]
pub async fn list_products(pool: &PgPool) -> Result<Vec<Product>, sqlx::Error> {
    let rows: Vec<ProductRow> = timed(
        "SELECT",
        "products",
        sqlx::query_as(
            "SELECT id, sku, name, price_cents, stock FROM products ORDER BY id LIMIT $1",
        )
        .bind(LIST_LIMIT)
        .fetch_all(pool),
    )
    .await?;
    Ok(rows.into_iter().map(product).collect())
}

/// One product.
#[tracing::instrument(name = "SELECT products", skip(pool), fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "products"))]
pub async fn get_product(pool: &PgPool, id: ProductId) -> Result<Option<Product>, sqlx::Error> {
    let row: Option<ProductRow> = timed(
        "SELECT",
        "products",
        sqlx::query_as("SELECT id, sku, name, price_cents, stock FROM products WHERE id = $1")
            .bind(id.get())
            .fetch_optional(pool),
    )
    .await?;
    Ok(row.map(product))
}

/// Holds stock for every line of an order, all or nothing. Idempotent per
/// order: a second call returns the first reservation.
#[tracing::instrument(name = "UPDATE products", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "products", order_id = %request.order_id))]
pub async fn reserve(
    pool: &PgPool,
    request: &ReservationRequest,
) -> Result<Reservation, ReserveError> {
    let mut tx = pool.begin().await?;
    if let Some(existing) = existing_reservation(&mut tx, request.order_id).await? {
        tx.commit().await?;
        return Ok(existing);
    }
    let mut lines = request.items.clone();
    // The same lock order in every transaction: no deadlocks.
    lines.sort_by_key(|line| line.product_id);
    let mut items = Vec::with_capacity(lines.len());
    for line in &lines {
        let price: Option<i64> = timed(
            "UPDATE",
            "products",
            sqlx::query_scalar(
                "UPDATE products SET stock = stock - $2, updated_at = now() \
                 WHERE id = $1 AND stock >= $2 RETURNING price_cents",
            )
            .bind(line.product_id.get())
            .bind(line.quantity.get())
            .fetch_optional(&mut *tx),
        )
        .await?;
        let Some(unit_price_cents) = price else {
            let available: Option<i32> =
                sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
                    .bind(line.product_id.get())
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return Err(match available {
                None => ReserveError::UnknownProduct(line.product_id),
                Some(available) => ReserveError::InsufficientStock {
                    product_id: line.product_id,
                    available,
                    requested: line.quantity.get(),
                },
            });
        };
        let inserted = timed(
            "INSERT",
            "reservations",
            sqlx::query(
                "INSERT INTO reservations (order_id, product_id, quantity, status) \
                 VALUES ($1, $2, $3, 'reserved')",
            )
            .bind(request.order_id.0)
            .bind(line.product_id.get())
            .bind(line.quantity.get())
            .execute(&mut *tx),
        )
        .await;
        if let Err(err) = inserted {
            // Another call for the same order won the race: return its reservation.
            if crate::db::is_unique_violation(&err) {
                drop(tx);
                let mut tx = pool.begin().await?;
                let existing = existing_reservation(&mut tx, request.order_id).await?;
                tx.commit().await?;
                if let Some(existing) = existing {
                    return Ok(existing);
                }
            }
            return Err(err.into());
        }
        items.push(OrderItem {
            product_id: line.product_id,
            quantity: line.quantity.get(),
            unit_price_cents,
        });
    }
    tx.commit().await?;
    Ok(Reservation {
        order_id: request.order_id,
        items,
    })
}

async fn existing_reservation(
    tx: &mut Transaction<'_, Postgres>,
    order_id: OrderId,
) -> Result<Option<Reservation>, sqlx::Error> {
    let rows: Vec<(i64, i32, i64)> = timed(
        "SELECT",
        "reservations",
        sqlx::query_as(
            "SELECT r.product_id, r.quantity, p.price_cents FROM reservations r \
             JOIN products p ON p.id = r.product_id WHERE r.order_id = $1 ORDER BY r.product_id",
        )
        .bind(order_id.0)
        .fetch_all(&mut **tx),
    )
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let items = rows
        .into_iter()
        .map(|(product_id, quantity, unit_price_cents)| OrderItem {
            product_id: ProductId::from_db(product_id),
            quantity,
            unit_price_cents,
        })
        .collect();
    Ok(Some(Reservation { order_id, items }))
}

/// Gives an order's reserved stock back; the products whose stock changed.
/// Idempotent: releasing twice, or an order with no reservation, changes
/// nothing.
#[tracing::instrument(name = "UPDATE reservations", skip(pool), fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "reservations"))]
pub async fn release(pool: &PgPool, order_id: OrderId) -> Result<Vec<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let released: Vec<(i64, i32)> = timed(
        "UPDATE",
        "reservations",
        sqlx::query_as(
            "UPDATE reservations SET status = 'released', released_at = now() \
             WHERE order_id = $1 AND status = 'reserved' RETURNING product_id, quantity",
        )
        .bind(order_id.0)
        .fetch_all(&mut *tx),
    )
    .await?;
    for (product_id, quantity) in &released {
        timed(
            "UPDATE",
            "products",
            sqlx::query("UPDATE products SET stock = stock + $2, updated_at = now() WHERE id = $1")
                .bind(product_id)
                .bind(quantity)
                .execute(&mut *tx),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(released
        .into_iter()
        .map(|(product_id, _)| product_id)
        .collect())
}
