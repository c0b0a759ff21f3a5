//! The catalog role's face: hold stock for an order, and give it back.

use axum::http::{HeaderMap, StatusCode};

use super::problem_detail;
use crate::domain::{OrderId, OrderLine, Reservation, ReservationRequest};
use crate::http::{Upstream, UpstreamError};

/// Where the catalog holds stock.
const RESERVATIONS: &str = "/api/reservations";

/// What the catalog said to a reservation.
#[derive(Debug, Clone)]
pub enum Reserved {
    /// The stock is held, at these prices.
    Yes(Reservation),
    /// A product does not exist (404), with the catalog's detail.
    UnknownProduct(String),
    /// Not enough stock (409), with the catalog's detail.
    OutOfStock(String),
}

/// Why the catalog gave no answer to act on.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No answer, a circuit open, or an answer that is not a reservation.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An answer the operation does not expect.
    #[error("catalog answered {status} to a {operation}")]
    Status {
        operation: &'static str,
        status: StatusCode,
    },
}

/// Calls the catalog through the client stack.
#[derive(Debug, Clone)]
pub struct CatalogClient {
    upstream: Upstream,
}

impl CatalogClient {
    /// A client over `upstream` (the catalog replicas).
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }

    /// Asks the catalog to hold `items` for `order_id`.
    pub async fn reserve(
        &self,
        order_id: OrderId,
        items: &[OrderLine],
    ) -> Result<Reserved, CatalogError> {
        let request = ReservationRequest {
            order_id,
            items: items.to_vec(),
        };
        let response = self
            .upstream
            .post_json(RESERVATIONS, HeaderMap::new(), &request)
            .await?;
        match response.status {
            status if status.is_success() => Ok(Reserved::Yes(
                response.json(self.upstream.name(), RESERVATIONS)?,
            )),
            StatusCode::NOT_FOUND => Ok(Reserved::UnknownProduct(problem_detail(
                &response.body,
                "a product in the order does not exist",
            ))),
            StatusCode::CONFLICT => Ok(Reserved::OutOfStock(problem_detail(
                &response.body,
                "not enough stock",
            ))),
            status => Err(CatalogError::Status {
                operation: "reservation",
                status,
            }),
        }
    }

    /// Gives back the stock held for `order_id`; releasing twice is harmless.
    pub async fn release(&self, order_id: OrderId) -> Result<(), CatalogError> {
        let response = self
            .upstream
            .delete(&format!("{RESERVATIONS}/{order_id}"))
            .await?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(CatalogError::Status {
                operation: "release",
                status: response.status,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::Path;
    use axum::response::IntoResponse;
    use axum::routing::{delete, post};

    use super::*;
    use crate::clients::fake;
    use crate::domain::{OrderItem, ProductId, Quantity};
    use crate::problem::Problem;

    fn line(product: i64, quantity: i64) -> OrderLine {
        OrderLine {
            product_id: ProductId::parse(product).unwrap(),
            quantity: Quantity::parse(quantity).unwrap(),
        }
    }

    /// A fake catalog answering reservations with `answer`.
    async fn fake_catalog(
        answer: fn(&ReservationRequest) -> axum::response::Response,
    ) -> CatalogClient {
        let router = Router::new().route(
            RESERVATIONS,
            post(
                move |axum::Json(request): axum::Json<ReservationRequest>| async move {
                    answer(&request)
                },
            ),
        );
        CatalogClient::new(fake::upstream("catalog", &[fake::serve(router).await]))
    }

    #[tokio::test]
    async fn a_reservation_comes_back_with_its_prices() {
        let client = fake_catalog(|request| {
            let items = request
                .items
                .iter()
                .map(|line| OrderItem {
                    product_id: line.product_id,
                    quantity: line.quantity.get(),
                    unit_price_cents: 250,
                })
                .collect();
            let reservation = Reservation {
                order_id: request.order_id,
                items,
            };
            (StatusCode::CREATED, axum::Json(reservation)).into_response()
        })
        .await;
        let order = OrderId::new();
        let Reserved::Yes(reservation) = client.reserve(order, &[line(1, 2)]).await.unwrap() else {
            panic!("not reserved");
        };
        assert_eq!(reservation.order_id, order);
        assert_eq!(reservation.items.len(), 1);
        assert_eq!(reservation.items[0].quantity, 2);
        assert_eq!(reservation.items[0].unit_price_cents, 250);
    }

    #[tokio::test]
    async fn rejections_carry_the_catalogs_detail_or_a_default() {
        let client = fake_catalog(|_| {
            Problem::new(StatusCode::CONFLICT)
                .with_detail("not enough stock of product 1: 0 left, 2 requested")
                .into_response()
        })
        .await;
        let outcome = client.reserve(OrderId::new(), &[line(1, 2)]).await.unwrap();
        assert!(
            matches!(outcome, Reserved::OutOfStock(ref d) if d.starts_with("not enough stock of product 1")),
            "{outcome:?}"
        );
        let client = fake_catalog(|_| StatusCode::NOT_FOUND.into_response()).await;
        let outcome = client.reserve(OrderId::new(), &[line(9, 1)]).await.unwrap();
        assert!(
            matches!(outcome, Reserved::UnknownProduct(ref d) if d == "a product in the order does not exist"),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn an_unexpected_status_is_an_error() {
        let client = fake_catalog(|_| StatusCode::BAD_REQUEST.into_response()).await;
        let err = client
            .reserve(OrderId::new(), &[line(1, 1)])
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::Status {
                    status: StatusCode::BAD_REQUEST,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn release_deletes_the_orders_reservation() {
        let released: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = released.clone();
        let router = Router::new().route(
            "/api/reservations/{order_id}",
            delete(move |Path(order_id): Path<String>| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(order_id);
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let client = CatalogClient::new(fake::upstream("catalog", &[fake::serve(router).await]));
        let order = OrderId::new();
        client.release(order).await.unwrap();
        assert_eq!(*released.lock().unwrap(), [order.to_string()]);
    }

    #[tokio::test]
    async fn a_failed_release_says_what_the_catalog_answered() {
        let router = Router::new().route(
            "/api/reservations/{order_id}",
            delete(|| async { StatusCode::CONFLICT }),
        );
        let client = CatalogClient::new(fake::upstream("catalog", &[fake::serve(router).await]));
        let err = client.release(OrderId::new()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "catalog answered 409 Conflict to a release"
        );
    }
}
