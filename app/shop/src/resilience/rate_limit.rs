//! The gateway's per-client rate limit (GCRA): a client over its quota gets
//! 429 problem+json with `Retry-After`, and other clients are not affected.
//! A client is the subject of its verified bearer token when it sends one
//! (`auth::identify` runs first and leaves the [`Identity`] in the request),
//! else its IP address: the peer's, or behind a trusted proxy (the compose
//! demo's edge), the last address of the header it writes
//! (`FAULTLINE_CLIENT_IP_HEADER=x-forwarded-for`). A refused token counts
//! against the address, so a flood of bad tokens is limited like any other.
//!
//! With Redis (`FAULTLINE_REDIS_URL`), the limit holds across every gateway
//! replica: each decision is one atomic script in Redis (`gcra.lua`), on
//! Redis's clock. When Redis fails (an error, its timeout, or its breaker
//! open), the replica decides alone, against its share of the quota (the rate
//! and burst divided by `FAULTLINE_GATEWAY_REPLICAS`), and counts the request
//! in `degraded_responses_total{reason="local_rate_limit"}`. Without Redis,
//! the replica holds the whole quota (governor's GCRA).
//!
//! Every answer carries the draft IETF rate-limit fields:
//! `RateLimit-Policy: "per-client";q=<rate>;w=1` and
//! `RateLimit: "per-client";r=<requests left now>;t=<seconds until the quota is full>`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;

use crate::auth::Identity;
use crate::problem::Problem;
use crate::redis_client::RedisClient;

/// The policy's name in the RateLimit fields.
const POLICY: &str = "per-client";
/// The draft IETF fields.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A client's quota: a sustained rate, and what it may send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Quota {
    /// This replica's share when `replicas` share the quota (at least one
    /// request per second and one at once).
    pub fn share(self, replicas: NonZeroU32) -> Self {
        let part =
            |n: NonZeroU32| NonZeroU32::new(n.get() / replicas.get()).unwrap_or(NonZeroU32::MIN);
        Self {
            per_second: part(self.per_second),
            burst: part(self.burst),
        }
    }
}

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests the client may still send at once.
    pub remaining: u64,
    /// When refused: how long until one more request is allowed.
    pub retry_after: Duration,
    /// How long until the client's whole burst is available again.
    pub reset_after: Duration,
}

type LocalLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The limit in Redis.
#[derive(Debug, Clone)]
struct SharedLimit {
    redis: RedisClient,
    script: Arc<redis::Script>,
}

/// A shared keyed limiter.
#[derive(Debug, Clone)]
pub struct RateLimit {
    quota: Quota,
    /// The whole quota without Redis; this replica's share with it.
    local: Arc<LocalLimiter>,
    local_quota: Quota,
    shared: Option<SharedLimit>,
    /// Where a trusted proxy in front writes the client's address.
    client_ip_header: Option<HeaderName>,
}

impl RateLimit {
    /// `quota` per client; across the replicas through `shared` (Redis and
    /// the number of gateway replicas) when given.
    pub fn new(quota: Quota, shared: Option<(RedisClient, NonZeroU32)>) -> Self {
        let local_quota = match &shared {
            Some((_, replicas)) => quota.share(*replicas),
            None => quota,
        };
        let limiter = RateLimiter::keyed(
            governor::Quota::per_second(local_quota.per_second).allow_burst(local_quota.burst),
        )
        .with_middleware::<StateInformationMiddleware>();
        if shared.is_some() {
            metrics::counter!("degraded_responses_total", "reason" => "local_rate_limit")
                .absolute(0);
        }
        Self {
            quota,
            local: Arc::new(limiter),
            local_quota,
            shared: shared.map(|(redis, _)| SharedLimit {
                redis,
                script: Arc::new(redis::Script::new(include_str!("gcra.lua"))),
            }),
            client_ip_header: None,
        }
    }

    /// Takes a client's address from `header` (the last of its
    /// comma-separated addresses: the one the proxy in front saw), when a
    /// request has it. Only behind a proxy that writes it: a client can send
    /// the header itself.
    pub fn with_client_ip_header(mut self, header: Option<HeaderName>) -> Self {
        self.client_ip_header = header;
        self
    }

    /// Decides on one request of `client`: in Redis when it answers, else
    /// locally.
    pub async fn check(&self, client: &str) -> Decision {
        if let Some(shared) = &self.shared {
            match self.check_shared(shared, client).await {
                Ok(decision) => return decision,
                Err(err) => {
                    tracing::debug!(error = %err, "shared rate limit unavailable: deciding locally");
                    metrics::counter!("degraded_responses_total", "reason" => "local_rate_limit")
                        .increment(1);
                }
            }
        }
        self.check_local(client)
    }

    async fn check_shared(
        &self,
        shared: &SharedLimit,
        client: &str,
    ) -> Result<Decision, crate::redis_client::RedisCallError> {
        let emission_us = 1_000_000 / u64::from(self.quota.per_second.get());
        let key = format!("faultline:ratelimit:v1:{client}");
        let reply: Vec<i64> = shared
            .redis
            .eval(
                &shared.script,
                &[&key],
                &[emission_us.max(1), u64::from(self.quota.burst.get())],
            )
            .await?;
        let at = |i: usize| u64::try_from(reply.get(i).copied().unwrap_or(0)).unwrap_or(0);
        Ok(Decision {
            allowed: at(0) == 1,
            remaining: at(1),
            retry_after: Duration::from_micros(at(2)),
            reset_after: Duration::from_micros(at(3)),
        })
    }

    fn check_local(&self, client: &str) -> Decision {
        let per_second = f64::from(self.local_quota.per_second.get());
        let burst = u64::from(self.local_quota.burst.get());
        match self.local.check_key(&client.to_owned()) {
            Ok(snapshot) => {
                let remaining = u64::from(snapshot.remaining_burst_capacity());
                Decision {
                    allowed: true,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset_after: Duration::from_secs_f64(
                        burst.saturating_sub(remaining) as f64 / per_second,
                    ),
                }
            }
            Err(not_until) => Decision {
                allowed: false,
                remaining: 0,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                reset_after: Duration::from_secs_f64(burst as f64 / per_second),
            },
        }
    }

    /// Forgets clients that are back under their quota; call it now and then
    /// so the key set stays bounded (Redis forgets them by itself: each
    /// client's key expires when its quota is full).
    pub fn forget_idle_clients(&self) {
        self.local.retain_recent();
        self.local.shrink_to_fit();
    }

    /// Writes the RateLimit fields of `decision`.
    fn describe(&self, decision: &Decision, headers: &mut HeaderMap) {
        let policy = format!("\"{POLICY}\";q={};w=1", self.quota.per_second);
        let state = format!(
            "\"{POLICY}\";r={};t={}",
            decision.remaining,
            whole_seconds(decision.reset_after)
        );
        for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
}

/// Seconds, rounded up.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn client_key(request: &Request, client_ip_header: Option<&HeaderName>) -> String {
    if let Some(identity) = request.extensions().get::<Identity>() {
        return format!("sub:{}", identity.subject);
    }
    let forwarded = client_ip_header
        .and_then(|name| request.headers().get(name))
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<std::net::IpAddr>().ok());
    if let Some(ip) = forwarded {
        return format!("ip:{ip}");
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
    let key = client_key(&request, rate_limit.client_ip_header.as_ref());
    let decision = rate_limit.check(&key).await;
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        super::reject("rate_limited");
        too_many_requests(decision.retry_after)
    };
    rate_limit.describe(&decision, response.headers_mut());
    response
}

fn too_many_requests(wait: Duration) -> Response {
    let seconds = whole_seconds(wait).max(1);
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

    fn quota(per_second: u32, burst: u32) -> Quota {
        Quota {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    fn app(rl: RateLimit) -> Router {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(rl, limit))
    }

    async fn call(app: &Router, client: &str) -> (StatusCode, HeaderMap) {
        let mut request = axum::http::Request::get("/").body(Body::empty()).unwrap();
        request.extensions_mut().insert(Identity {
            subject: client.to_owned(),
            role: crate::auth::Role::Customer,
        });
        let response = app.clone().oneshot(request).await.unwrap();
        (response.status(), response.headers().clone())
    }

    fn field(headers: &HeaderMap, name: &HeaderName) -> String {
        headers.get(name).unwrap().to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_flood_gets_429_with_retry_after_and_others_are_unaffected() {
        let app = app(RateLimit::new(quota(1, 3), None));
        for left in (0..3).rev() {
            let (code, headers) = call(&app, "flood").await;
            assert_eq!(code, StatusCode::OK);
            assert_eq!(field(&headers, &RATELIMIT_POLICY), "\"per-client\";q=1;w=1");
            assert!(
                field(&headers, &RATELIMIT).starts_with(&format!("\"per-client\";r={left};t=")),
                "{headers:?}"
            );
        }
        let (code, headers) = call(&app, "flood").await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(field(&headers, &header::RETRY_AFTER), "1");
        assert_eq!(field(&headers, &RATELIMIT), "\"per-client\";r=0;t=3");
        assert_eq!(call(&app, "calm").await.0, StatusCode::OK);
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_last_forwarded_address() {
        let forwarded = HeaderName::from_static("x-forwarded-for");
        let request = |value: Option<&str>| {
            let mut builder = axum::http::Request::get("/");
            if let Some(value) = value {
                builder = builder.header(&forwarded, value);
            }
            let mut request = builder.body(Body::empty()).unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 4000))));
            request
        };
        let spoofed_then_seen = request(Some("6.6.6.6, 192.0.2.7"));
        assert_eq!(
            client_key(&spoofed_then_seen, Some(&forwarded)),
            "ip:192.0.2.7"
        );
        assert_eq!(
            client_key(&spoofed_then_seen, None),
            "ip:10.0.0.9",
            "not trusted"
        );
        assert_eq!(
            client_key(&request(Some("junk")), Some(&forwarded)),
            "ip:10.0.0.9"
        );
        assert_eq!(client_key(&request(None), Some(&forwarded)), "ip:10.0.0.9");
    }

    #[test]
    fn a_replica_share_is_the_quota_divided_but_never_zero() {
        let two = NonZeroU32::new(2).unwrap();
        assert_eq!(quota(100, 50).share(two), quota(50, 25));
        assert_eq!(quota(1, 1).share(two), quota(1, 1));
        assert_eq!(quota(7, 3).share(NonZeroU32::MIN), quota(7, 3));
    }

    #[tokio::test]
    async fn with_redis_unreachable_the_replica_enforces_its_share() {
        let redis = RedisClient::from_config(&crate::redis_client::RedisConfig {
            // Nothing listens on port 1.
            redis_url: Some("redis://127.0.0.1:1".parse().unwrap()),
            redis_timeout: Duration::from_millis(50),
        })
        .unwrap()
        .unwrap();
        let rl = RateLimit::new(quota(1, 4), Some((redis, NonZeroU32::new(2).unwrap())));
        let app = app(rl);
        for _ in 0..2 {
            assert_eq!(call(&app, "flood").await.0, StatusCode::OK);
        }
        assert_eq!(call(&app, "flood").await.0, StatusCode::TOO_MANY_REQUESTS);
    }
}
