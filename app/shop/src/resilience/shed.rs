//! A concurrency limit that sheds load: past `max_in_flight` requests (across
//! every route of the router), new ones get an immediate 503 problem+json with
//! `Retry-After` instead of queueing until everyone times out.

use axum::BoxError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;

use crate::problem::Problem;

/// Wraps `router` in load shedding over a concurrency limit shared by all routes.
pub fn apply(router: Router, max_in_flight: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(max_in_flight.max(1))),
    )
}

async fn overloaded(err: BoxError) -> Response {
    if err.is::<Overloaded>() {
        super::reject("load_shed");
        let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("too many requests in flight; retry shortly")
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    } else {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail(format!("request failed: {err}"))
            .into_response()
    }
}
