//! The outbound client: one per upstream service, round-robin over its
//! endpoints, with a timeout, a client span and RED metrics per call, and the
//! W3C trace context injected into every request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, header};
use faultline_telemetry::http_spans::{ClientSpan, HttpCall};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resilience::breaker::{Breaker, BreakerConfig, State};
use crate::resilience::endpoints::{EjectionConfig, Endpoint, Endpoints, Outcome, Replicas};
use crate::resilience::retry::{self, RetryBudget};
use crate::resilience::{self, deadline};

/// Reports a permitted call's outcome to the breaker, and a failure if the
/// call was abandoned (cancelled) before it finished, so a half-open trial
/// never stays in flight forever.
struct TrialGuard<'a> {
    breaker: &'a Breaker,
    done: bool,
}

impl<'a> TrialGuard<'a> {
    fn new(breaker: &'a Breaker) -> Self {
        Self {
            breaker,
            done: false,
        }
    }

    fn finish(&mut self, success: bool) {
        self.done = true;
        if success {
            self.breaker.on_success();
        } else {
            self.breaker.on_failure();
        }
    }
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.on_failure();
        }
    }
}

/// Why a call to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{upstream} at {url}: no answer within {timeout:?}")]
    Timeout {
        upstream: &'static str,
        url: String,
        timeout: Duration,
    },
    #[error("{upstream} at {url}: {source}")]
    Transport {
        upstream: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{upstream} at {url}: answered {status} with a body that is not the expected JSON: {detail}"
    )]
    Decode {
        upstream: &'static str,
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{upstream}: no endpoint is configured")]
    NoEndpoints { upstream: &'static str },
    #[error("{upstream}: the circuit is open after repeated failures; not calling")]
    CircuitOpen { upstream: &'static str },
    #[error("{upstream}: no time left in the request's deadline")]
    DeadlineExceeded { upstream: &'static str },
    #[error("{upstream}: invalid path {path:?}: {source}")]
    BadPath {
        upstream: &'static str,
        path: String,
        #[source]
        source: url::ParseError,
    },
}

/// An upstream's raw answer.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl UpstreamResponse {
    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(
        &self,
        upstream: &'static str,
        url: &str,
    ) -> Result<T, UpstreamError> {
        serde_json::from_slice(&self.body).map_err(|err| UpstreamError::Decode {
            upstream,
            url: url.to_owned(),
            status: self.status,
            detail: err.to_string(),
        })
    }
}

/// How an upstream is called.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamPolicy {
    /// The timeout of one attempt (capped by the caller's remaining budget).
    pub timeout: Duration,
    pub breaker: BreakerConfig,
    pub ejection: EjectionConfig,
    /// Retry idempotent calls once, on another endpoint, within the budget.
    pub retries: bool,
}

impl UpstreamPolicy {
    /// The defaults, with this per-attempt timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            breaker: BreakerConfig::default(),
            ejection: EjectionConfig::default(),
            retries: true,
        }
    }
}

/// Spare time kept back from a forwarded budget, for the answer's way back.
const BUDGET_MARGIN: Duration = Duration::from_millis(10);

/// A named upstream service: its endpoints, breaker and retry budget.
#[derive(Debug, Clone)]
pub struct Upstream {
    name: &'static str,
    endpoints: Arc<Endpoints>,
    breaker: Arc<Breaker>,
    budget: Arc<RetryBudget>,
    http: reqwest::Client,
    policy: UpstreamPolicy,
}

impl Upstream {
    /// The upstream `name` at `replicas` (a list of URLs will do).
    pub fn new(
        name: &'static str,
        replicas: impl Into<Replicas>,
        policy: UpstreamPolicy,
        http: reqwest::Client,
    ) -> Self {
        metrics::counter!("resilience_retries_total", "peer_service" => name).absolute(0);
        Self {
            name,
            endpoints: Arc::new(Endpoints::new(name, replicas.into(), policy.ejection)),
            breaker: Arc::new(Breaker::new(name, policy.breaker)),
            budget: Arc::new(RetryBudget::default()),
            http,
            policy,
        }
    }

    /// The breaker's state now.
    pub fn circuit(&self) -> State {
        self.breaker.state()
    }

    /// Refreshes the endpoint gauges (ejections end with time).
    pub fn refresh_metrics(&self) {
        self.endpoints.refresh_metrics();
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether any of its URLs names a host, to be resolved again and again.
    pub fn has_names(&self) -> bool {
        self.endpoints.has_names()
    }

    /// Resolves its names again: replicas that came join, gone ones leave.
    pub async fn rediscover(&self) {
        self.endpoints.rediscover().await;
    }

    /// Waits until a connection to a replica found by name failed.
    pub async fn went_stale(&self) {
        self.endpoints.went_stale().await;
    }

    /// GETs `path` from the next endpoint.
    pub async fn get(
        &self,
        path: &str,
        headers: HeaderMap,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.call(Method::GET, path, headers, None).await
    }

    /// POSTs `body` as JSON to `path` on the next endpoint.
    pub async fn post_json<B: Serialize>(
        &self,
        path: &str,
        headers: HeaderMap,
        body: &B,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let body = serde_json::to_vec(body).map_err(|err| UpstreamError::Decode {
            upstream: self.name,
            url: path.to_owned(),
            status: StatusCode::OK,
            detail: format!("cannot encode the request: {err}"),
        })?;
        self.call(Method::POST, path, headers, Some(body.into()))
            .await
    }

    /// POSTs raw bytes (already JSON) to `path` on the next endpoint.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: HeaderMap,
        body: bytes::Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.call(Method::POST, path, headers, Some(body)).await
    }

    /// DELETEs `path` on the next endpoint.
    pub async fn delete(&self, path: &str) -> Result<UpstreamResponse, UpstreamError> {
        self.call(Method::DELETE, path, HeaderMap::new(), None)
            .await
    }

    /// One call with the whole policy: breaker, deadline, endpoint choice and
    /// at most one retry on another endpoint.
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<bytes::Bytes>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        if self.endpoints.is_empty() {
            return Err(UpstreamError::NoEndpoints {
                upstream: self.name,
            });
        }
        let retryable = self.policy.retries && retry::is_retryable(&method, &headers);
        self.budget.deposit();
        let mut avoid = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let timeout = match deadline::remaining() {
                Some(left) if left <= BUDGET_MARGIN => {
                    resilience::reject("deadline_exceeded");
                    return Err(UpstreamError::DeadlineExceeded {
                        upstream: self.name,
                    });
                }
                Some(left) => self.policy.timeout.min(left - BUDGET_MARGIN),
                None => self.policy.timeout,
            };
            if !self.breaker.try_acquire() {
                resilience::reject("circuit_open");
                return Err(UpstreamError::CircuitOpen {
                    upstream: self.name,
                });
            }
            let mut trial = TrialGuard::new(&self.breaker);
            let Some(endpoint) = self.endpoints.pick(avoid.as_ref()) else {
                return Err(UpstreamError::NoEndpoints {
                    upstream: self.name,
                });
            };
            let result = self
                .attempt(
                    &method,
                    &endpoint,
                    path,
                    headers.clone(),
                    body.clone(),
                    timeout,
                )
                .await;
            let outcome = match &result {
                Ok(response) if response.status.is_server_error() => Outcome::Failed,
                Ok(_) => Outcome::Success,
                Err(UpstreamError::Transport { source, .. }) if source.is_connect() => {
                    Outcome::ConnectFailed
                }
                Err(_) => Outcome::Failed,
            };
            self.endpoints.record(&endpoint, outcome);
            trial.finish(outcome == Outcome::Success);
            if outcome == Outcome::Success || !retryable || attempt >= 2 {
                return result;
            }
            if !self.budget.withdraw() {
                resilience::reject("retry_budget_exhausted");
                return result;
            }
            metrics::counter!("resilience_retries_total", "peer_service" => self.name).increment(1);
            tracing::debug!(upstream = self.name, endpoint = %endpoint.url, "retrying on another endpoint");
            avoid = Some(endpoint);
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        endpoint: &Endpoint,
        path: &str,
        mut headers: HeaderMap,
        body: Option<bytes::Bytes>,
        timeout: Duration,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let method = method.clone();
        let url = endpoint
            .url
            .join(path)
            .map_err(|source| UpstreamError::BadPath {
                upstream: self.name,
                path: path.to_owned(),
                source,
            })?;
        let (server, port) = (endpoint.host.as_str(), endpoint.port);
        // The client span, made with the OpenTelemetry API when `RUST_LOG`
        // enables `info` here (`faultline_telemetry::http_spans`).
        let span = if tracing::enabled!(tracing::Level::INFO) {
            ClientSpan::start(HttpCall {
                method: method.as_str(),
                server_address: server,
                server_port: port,
                url: url.as_str(),
                peer_service: self.name,
            })
        } else {
            ClientSpan::none()
        };
        let started = Instant::now();
        span.inject(&mut headers);
        deadline::propagate(&mut headers, timeout);
        let result = async {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers)
                .timeout(timeout);
            if let Some(body) = body {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body);
            }
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(UpstreamResponse {
                status,
                headers,
                body,
            })
        }
        .await;
        let status_label = match &result {
            Ok(response) => {
                span.record_status(response.status.as_u16());
                response.status.as_str().to_owned()
            }
            Err(err) => {
                let kind = if err.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                };
                span.record_error(kind);
                kind.to_owned()
            }
        };
        metrics::histogram!(
            "http_client_request_duration_seconds",
            "peer_service" => self.name,
            "server_address" => format!("{server}:{port}"),
            "http_request_method" => method.as_str().to_owned(),
            "http_response_status_code" => status_label,
        )
        .record(started.elapsed().as_secs_f64());
        result.map_err(|source| {
            // A connect timeout is a connection failure: the endpoint is likely gone.
            if source.is_timeout() && !source.is_connect() {
                UpstreamError::Timeout {
                    upstream: self.name,
                    url: url.to_string(),
                    timeout,
                }
            } else {
                UpstreamError::Transport {
                    upstream: self.name,
                    url: url.to_string(),
                    source,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    //! `Upstream::call` against in-process fakes: retries, the retry budget,
    //! ejection and the breaker, each through real HTTP on 127.0.0.1.

    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

    use axum::Router;

    use super::*;
    use crate::clients::fake;
    use crate::headers::IDEMPOTENCY_KEY;

    /// A fake replica: answers every request with its current status and
    /// counts the requests it got.
    #[derive(Clone)]
    struct Replica {
        addr: SocketAddr,
        status: Arc<AtomicU16>,
        hits: Arc<AtomicUsize>,
    }

    impl Replica {
        async fn answering(status: StatusCode) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            Self::answering_on(listener, status)
        }

        /// Replicas on 127.0.0.1, 127.0.0.2, ... and one port, as the
        /// addresses of one name are.
        async fn at_addresses(n: u8) -> (u16, Vec<Self>) {
            let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = first.local_addr().unwrap().port();
            let mut replicas = vec![Self::answering_on(first, StatusCode::OK)];
            for i in 2..=n {
                let listener =
                    tokio::net::TcpListener::bind(("127.0.0.".to_owned() + &i.to_string(), port))
                        .await
                        .unwrap();
                replicas.push(Self::answering_on(listener, StatusCode::OK));
            }
            (port, replicas)
        }

        fn answering_on(listener: tokio::net::TcpListener, status: StatusCode) -> Self {
            let addr = listener.local_addr().unwrap();
            let status = Arc::new(AtomicU16::new(status.as_u16()));
            let hits = Arc::new(AtomicUsize::new(0));
            let (answer, count) = (status.clone(), hits.clone());
            let router = Router::new().fallback(move || {
                let (answer, count) = (answer.clone(), count.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap()
                }
            });
            tokio::spawn(async move { axum::serve(listener, router).await });
            Self { addr, status, hits }
        }

        fn answer(&self, status: StatusCode) {
            self.status.store(status.as_u16(), Ordering::SeqCst);
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// An address nothing listens on: connections are refused.
    fn dead_address() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    /// A policy whose breaker and ejection stay out of the way.
    fn lenient() -> UpstreamPolicy {
        let mut policy = UpstreamPolicy::with_timeout(Duration::from_secs(2));
        policy.breaker.failure_threshold = 1000;
        policy.ejection.eject_after = 1000;
        policy
    }

    fn keyed() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, "k".parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn a_failed_idempotent_call_is_retried_once_on_another_endpoint() {
        let failing = Replica::answering(StatusCode::SERVICE_UNAVAILABLE).await;
        let healthy = Replica::answering(StatusCode::OK).await;
        let upstream = fake::upstream_with("test", &[failing.addr, healthy.addr], lenient());
        let response = upstream.get("/", HeaderMap::new()).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!((failing.hits(), healthy.hits()), (1, 1));

        // A keyed POST is retried too.
        let response = upstream.post_raw("/", keyed(), "{}".into()).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!((failing.hits(), healthy.hits()), (2, 2));
    }

    #[tokio::test]
    async fn a_post_without_an_idempotency_key_is_never_retried() {
        let failing = Replica::answering(StatusCode::SERVICE_UNAVAILABLE).await;
        let healthy = Replica::answering(StatusCode::OK).await;
        let upstream = fake::upstream_with("test", &[failing.addr, healthy.addr], lenient());
        let response = upstream
            .post_raw("/", HeaderMap::new(), "{}".into())
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!((failing.hits(), healthy.hits()), (1, 0));
    }

    #[tokio::test]
    async fn retries_stop_when_the_budget_is_spent() {
        let a = Replica::answering(StatusCode::INTERNAL_SERVER_ERROR).await;
        let b = Replica::answering(StatusCode::INTERNAL_SERVER_ERROR).await;
        let upstream = fake::upstream_with("test", &[a.addr, b.addr], lenient());
        let calls = 150;
        for _ in 0..calls {
            let response = upstream.get("/", HeaderMap::new()).await.unwrap();
            assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        }
        let retries = a.hits() + b.hits() - calls;
        // The budget: a reserve of 50, plus 20% of the calls.
        assert!(
            (50..=calls / 5 + 51).contains(&retries),
            "{retries} retries"
        );
        let before = a.hits() + b.hits();
        upstream.get("/", HeaderMap::new()).await.unwrap();
        assert_eq!(
            a.hits() + b.hits(),
            before + 1,
            "retried with no budget left"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_ejects_the_endpoint_and_the_call_goes_elsewhere() {
        let live = Replica::answering(StatusCode::OK).await;
        let mut policy = lenient();
        policy.ejection = EjectionConfig::default();
        let upstream = fake::upstream_with("test", &[dead_address(), live.addr], policy);
        // The first pick is the dead one: refused, ejected, retried on the live one.
        let response = upstream.get("/", HeaderMap::new()).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(upstream.endpoints.counts(), (1, 1));
        // Even a call that cannot be retried now goes to the live one.
        for _ in 0..4 {
            let response = upstream
                .post_raw("/", HeaderMap::new(), "{}".into())
                .await
                .unwrap();
            assert_eq!(response.status, StatusCode::OK);
        }
        assert_eq!(live.hits(), 5);
    }

    #[tokio::test]
    async fn consecutive_5xx_eject_an_endpoint() {
        let failing = Replica::answering(StatusCode::BAD_GATEWAY).await;
        let healthy = Replica::answering(StatusCode::OK).await;
        let mut policy = lenient();
        policy.retries = false;
        policy.ejection.eject_after = 2;
        let upstream = fake::upstream_with("test", &[failing.addr, healthy.addr], policy);
        for _ in 0..4 {
            upstream.get("/", HeaderMap::new()).await.unwrap();
        }
        assert_eq!(failing.hits(), 2);
        assert_eq!(upstream.endpoints.counts(), (1, 1));
        for _ in 0..4 {
            upstream.get("/", HeaderMap::new()).await.unwrap();
        }
        assert_eq!(failing.hits(), 2, "an ejected endpoint got calls");
        assert_eq!(healthy.hits(), 6);
    }

    #[tokio::test]
    async fn the_breaker_opens_after_consecutive_failures_then_a_trial_closes_it() {
        let replica = Replica::answering(StatusCode::INTERNAL_SERVER_ERROR).await;
        let mut policy = lenient();
        policy.retries = false;
        policy.breaker = BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(200),
            success_threshold: 1,
        };
        let upstream = fake::upstream_with("test", &[replica.addr], policy);
        for _ in 0..3 {
            upstream.get("/", HeaderMap::new()).await.unwrap();
        }
        assert!(matches!(upstream.circuit(), State::Open { .. }));
        let err = upstream.get("/", HeaderMap::new()).await.unwrap_err();
        assert!(matches!(err, UpstreamError::CircuitOpen { .. }), "{err}");
        assert_eq!(replica.hits(), 3, "an open circuit still called");

        replica.answer(StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let response = upstream.get("/", HeaderMap::new()).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert!(matches!(upstream.circuit(), State::Closed { .. }));
        assert_eq!(replica.hits(), 4);
    }

    #[tokio::test]
    async fn a_failed_trial_opens_the_circuit_again() {
        let replica = Replica::answering(StatusCode::INTERNAL_SERVER_ERROR).await;
        let mut policy = lenient();
        policy.retries = false;
        policy.breaker = BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_millis(100),
            success_threshold: 1,
        };
        let upstream = fake::upstream_with("test", &[replica.addr], policy);
        upstream.get("/", HeaderMap::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let trial = upstream.get("/", HeaderMap::new()).await.unwrap();
        assert_eq!(trial.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(matches!(upstream.circuit(), State::Open { .. }));
        assert_eq!(replica.hits(), 2);
    }

    #[tokio::test]
    async fn no_time_left_in_the_deadline_means_no_call() {
        let replica = Replica::answering(StatusCode::OK).await;
        let upstream = fake::upstream_with("test", &[replica.addr], lenient());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
        let err = deadline::scope(deadline, upstream.get("/", HeaderMap::new()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, UpstreamError::DeadlineExceeded { .. }),
            "{err}"
        );
        assert_eq!(replica.hits(), 0);
    }

    #[tokio::test]
    async fn no_endpoint_is_an_error_not_a_hang() {
        let upstream = fake::upstream_with("test", &[], lenient());
        let err = upstream.get("/", HeaderMap::new()).await.unwrap_err();
        assert!(matches!(err, UpstreamError::NoEndpoints { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_name_is_called_at_every_address_it_resolves_to_now() {
        use crate::resilience::endpoints::{Replicas, Resolver};
        let (port, replicas) = Replica::at_addresses(3).await;
        let table = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let resolve_to = |last: &[u8]| {
            let ips = last
                .iter()
                .map(|i| std::net::IpAddr::from([127, 0, 0, *i]))
                .collect();
            table.lock().unwrap().insert("orders".to_owned(), ips);
        };
        resolve_to(&[1, 2]);
        let upstream = Upstream::new(
            "orders",
            Replicas {
                urls: vec![format!("http://orders:{port}").parse().unwrap()],
                desired: Some(3),
                resolver: Resolver::Table(table.clone()),
            },
            lenient(),
            crate::http::outbound::http_client(true).unwrap(),
        );
        upstream.rediscover().await;
        for _ in 0..4 {
            upstream.get("/", HeaderMap::new()).await.unwrap();
        }
        let hits: Vec<usize> = replicas.iter().map(Replica::hits).collect();
        assert_eq!(hits, [2, 2, 0]);

        // Replica 1 leaves, replica 3 comes.
        resolve_to(&[2, 3]);
        upstream.rediscover().await;
        for _ in 0..4 {
            upstream.get("/", HeaderMap::new()).await.unwrap();
        }
        let hits: Vec<usize> = replicas.iter().map(Replica::hits).collect();
        assert_eq!(hits, [2, 4, 2]);
    }
}
