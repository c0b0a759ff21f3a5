//! The payments role's face: authorise an amount for an order.

use axum::http::{HeaderMap, HeaderValue, StatusCode};

use super::problem_detail;
use crate::domain::{Authorization, AuthorizationRequest, OrderId};
use crate::headers::IDEMPOTENCY_KEY;
use crate::http::{Upstream, UpstreamError};

/// Where payments authorises.
const AUTHORIZATIONS: &str = "/api/payments/authorizations";

/// What payments decided.
#[derive(Debug, Clone)]
pub enum Authorized {
    /// The amount is authorised.
    Yes(Authorization),
    /// Declined (402), with payments' detail.
    Declined(String),
}

/// Why payments gave no decision.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    /// No answer, a circuit open, or an answer that is not an authorisation.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An answer that is neither an authorisation nor a decline.
    #[error("payments answered {0}")]
    Status(StatusCode),
}

/// Calls payments through the client stack.
#[derive(Debug, Clone)]
pub struct PaymentsClient {
    upstream: Upstream,
}

impl PaymentsClient {
    /// A client over `upstream` (the payments replicas).
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }

    /// Asks payments to authorise `amount_cents` for `order_id`. The order id
    /// is the idempotency key, so a retry (here or by the worker later) gets
    /// the same decision.
    pub async fn authorize(
        &self,
        order_id: OrderId,
        amount_cents: i64,
    ) -> Result<Authorized, PaymentsError> {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&order_id.to_string()) {
            headers.insert(IDEMPOTENCY_KEY, value);
        }
        let request = AuthorizationRequest {
            order_id,
            amount_cents,
        };
        let response = self
            .upstream
            .post_json(AUTHORIZATIONS, headers, &request)
            .await?;
        if response.status == StatusCode::PAYMENT_REQUIRED {
            return Ok(Authorized::Declined(problem_detail(
                &response.body,
                "the payment was declined",
            )));
        }
        if !response.status.is_success() {
            return Err(PaymentsError::Status(response.status));
        }
        Ok(Authorized::Yes(
            response.json(self.upstream.name(), AUTHORIZATIONS)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use axum::routing::post;

    use super::*;
    use crate::clients::fake;
    use crate::problem::Problem;

    /// What the fake payments saw: the idempotency key and the body.
    type Seen = Arc<Mutex<Vec<(Option<String>, AuthorizationRequest)>>>;

    /// A fake payments answering every authorisation with `answer`.
    async fn fake_payments(
        answer: fn(&AuthorizationRequest) -> axum::response::Response,
    ) -> (PaymentsClient, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let router = Router::new().route(
            AUTHORIZATIONS,
            post(
                move |headers: HeaderMap, axum::Json(request): axum::Json<AuthorizationRequest>| {
                    let log = log.clone();
                    async move {
                        let key = headers
                            .get(&IDEMPOTENCY_KEY)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let response = answer(&request);
                        log.lock().unwrap().push((key, request));
                        response
                    }
                },
            ),
        );
        let addr = fake::serve(router).await;
        let client = PaymentsClient::new(fake::upstream("payments", &[addr]));
        (client, seen)
    }

    #[tokio::test]
    async fn an_authorisation_is_decoded_and_keyed_by_the_order() {
        let (client, seen) = fake_payments(|request| {
            (
                StatusCode::CREATED,
                axum::Json(Authorization {
                    id: "auth-1".into(),
                    order_id: request.order_id,
                    amount_cents: request.amount_cents,
                }),
            )
                .into_response()
        })
        .await;
        let order = OrderId::new();
        let Authorized::Yes(authorization) = client.authorize(order, 1250).await.unwrap() else {
            panic!("not authorised");
        };
        assert_eq!(authorization.id, "auth-1");
        assert_eq!(authorization.amount_cents, 1250);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.as_deref(), Some(order.to_string().as_str()));
        assert_eq!(seen[0].1.order_id, order);
        assert_eq!(seen[0].1.amount_cents, 1250);
    }

    #[tokio::test]
    async fn a_decline_carries_the_providers_detail_or_a_default() {
        let (client, _) = fake_payments(|_| {
            Problem::new(StatusCode::PAYMENT_REQUIRED)
                .with_detail("card expired")
                .into_response()
        })
        .await;
        let outcome = client.authorize(OrderId::new(), 1).await.unwrap();
        assert!(
            matches!(outcome, Authorized::Declined(ref d) if d == "card expired"),
            "{outcome:?}"
        );

        let (client, _) = fake_payments(|_| StatusCode::PAYMENT_REQUIRED.into_response()).await;
        let outcome = client.authorize(OrderId::new(), 1).await.unwrap();
        assert!(
            matches!(outcome, Authorized::Declined(ref d) if d == "the payment was declined"),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn another_status_is_no_decision() {
        let (client, _) = fake_payments(|_| StatusCode::CONFLICT.into_response()).await;
        let err = client.authorize(OrderId::new(), 1).await.unwrap_err();
        assert!(
            matches!(err, PaymentsError::Status(StatusCode::CONFLICT)),
            "{err}"
        );
        assert_eq!(err.to_string(), "payments answered 409 Conflict");
    }

    #[tokio::test]
    async fn an_answer_that_is_not_an_authorisation_is_an_error() {
        let (client, _) = fake_payments(|_| (StatusCode::CREATED, "{}").into_response()).await;
        let err = client.authorize(OrderId::new(), 1).await.unwrap_err();
        assert!(
            matches!(err, PaymentsError::Upstream(UpstreamError::Decode { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn no_answer_is_an_upstream_error() {
        // Nothing listens here once the listener is dropped.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = PaymentsClient::new(fake::upstream("payments", &[addr]));
        let err = client.authorize(OrderId::new(), 1).await.unwrap_err();
        assert!(matches!(err, PaymentsError::Upstream(_)), "{err}");
    }
}
