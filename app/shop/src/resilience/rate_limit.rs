//! The gateway's per-client rate limit (governor's GCRA): a client over its
//! quota gets 429 problem+json with `Retry-After`, and other clients are not
//! affected. A client is its `X-Client-Id` header when it sends one (an API
//! key in a real shop), else its IP address.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::problem::Problem;

/// The header naming the client.
pub const CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
/// The longest client id used as a key; longer ones are cut.
const MAX_CLIENT_ID: usize = 64;

/// A shared keyed limiter.
#[derive(Debug, Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl RateLimit {
    /// `per_second` sustained, with bursts of up to `burst`.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
        }
    }

    /// Forgets clients that are back under their quota; call it now and then
    /// so the key set stays bounded.
    pub fn forget_idle_clients(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

fn client_key(request: &Request) -> String {
    if let Some(id) = request
        .headers()
        .get(&CLIENT_ID)
        .and_then(|v| v.to_str().ok())
    {
        let id: String = id.chars().take(MAX_CLIENT_ID).collect();
        return format!("id:{id}");
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "unknown".to_owned(),
            |ConnectInfo(addr)| format!("ip:{}", addr.ip()),
        )
}

/// The middleware: lets the request through, or answers 429.
pub async fn limit(State(rate_limit): State<RateLimit>, request: Request, next: Next) -> Response {
    let key = client_key(&request);
    match rate_limit.limiter.check_key(&key) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            super::reject("rate_limited");
            too_many_requests(wait)
        }
    }
}

fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS)
        .with_detail(format!("rate limit exceeded; retry in {seconds} s"))
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app(per_second: u32, burst: u32) -> Router {
        let rl = RateLimit::new(
            NonZeroU32::new(per_second).unwrap(),
            NonZeroU32::new(burst).unwrap(),
        );
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(rl, limit))
    }

    async fn status(app: &Router, client: &str) -> (StatusCode, Option<String>) {
        let request = axum::http::Request::get("/")
            .header(CLIENT_ID, client)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), retry_after)
    }

    #[tokio::test]
    async fn a_flood_gets_429_with_retry_after_and_others_are_unaffected() {
        let app = app(1, 3);
        for _ in 0..3 {
            assert_eq!(status(&app, "flood").await.0, StatusCode::OK);
        }
        let (code, retry_after) = status(&app, "flood").await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(status(&app, "calm").await.0, StatusCode::OK);
    }
}
