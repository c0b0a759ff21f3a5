//! The fault admin API: in-process faults for chaos experiments, served on its
//! own port and only when `FAULTLINE_FAULT_ADMIN_ADDR` is set. Never on the
//! public port.
//!
//! Every call must carry `Authorization: Bearer <token>`, the token of
//! `FAULTLINE_FAULT_ADMIN_TOKEN` (compared in constant time); without it, or
//! with another, the answer is 401 (problem+json, with
//! `WWW-Authenticate: Bearer realm="faultline-fault-admin"`) and nothing
//! changes, whatever the path.
//!
//! - `POST /faults` with one fault (below) starts it, replacing one of the same kind;
//! - `GET /faults` lists the active ones;
//! - `DELETE /faults` clears all, `DELETE /faults/{kind}` one.
//!
//! ```json
//! {"kind": "latency", "latency_ms": 800, "jitter_ms": 0, "duration": "30s"}
//! {"kind": "error_ratio", "ratio": 0.2, "duration": "30s"}
//! {"kind": "memory_leak", "bytes_per_second": 1048576, "duration": "60s"}
//! {"kind": "cpu_burn", "threads": 1, "duration": "10s"}
//! {"kind": "hold_db_connections", "connections": 5, "duration": "30s"}
//! ```
//!
//! `duration` is optional: without it the fault lasts until cleared.
//! `fault_active{fault}` is 1 while a fault of that kind is active.

mod effects;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::http::{ApiJson, ApiPath};
use crate::problem::Problem;

/// The realm the fault admin API names in `WWW-Authenticate`.
pub const REALM: &str = "faultline-fault-admin";

/// Every fault kind, as `fault_active` labels them.
pub const KINDS: [&str; 5] = [
    "latency",
    "error_ratio",
    "memory_leak",
    "cpu_burn",
    "hold_db_connections",
];

/// One fault, as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Added latency on every public request (the worker, which has no
    /// public API, adds it to every event it handles from the broker).
    Latency {
        latency_ms: u64,
        #[serde(default)]
        jitter_ms: u64,
        #[serde(default, with = "humantime_serde_opt")]
        duration: Option<Duration>,
    },
    /// A share of public requests answered 503.
    ErrorRatio {
        ratio: f64,
        #[serde(default, with = "humantime_serde_opt")]
        duration: Option<Duration>,
    },
    /// Memory allocated and kept, at a steady rate.
    MemoryLeak {
        bytes_per_second: u64,
        #[serde(default, with = "humantime_serde_opt")]
        duration: Option<Duration>,
    },
    /// Busy threads.
    CpuBurn {
        threads: u32,
        #[serde(default, with = "humantime_serde_opt")]
        duration: Option<Duration>,
    },
    /// Database connections taken from the pool and held.
    HoldDbConnections {
        connections: u32,
        #[serde(default, with = "humantime_serde_opt")]
        duration: Option<Duration>,
    },
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::ErrorRatio { .. } => "error_ratio",
            Self::MemoryLeak { .. } => "memory_leak",
            Self::CpuBurn { .. } => "cpu_burn",
            Self::HoldDbConnections { .. } => "hold_db_connections",
        }
    }

    fn duration(&self) -> Option<Duration> {
        match self {
            Self::Latency { duration, .. }
            | Self::ErrorRatio { duration, .. }
            | Self::MemoryLeak { duration, .. }
            | Self::CpuBurn { duration, .. }
            | Self::HoldDbConnections { duration, .. } => *duration,
        }
    }

    /// Checks the values; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Latency {
                latency_ms,
                jitter_ms,
                ..
            } if latency_ms + jitter_ms > 60_000 => {
                Err("latency_ms + jitter_ms must be at most 60000".into())
            }
            Self::ErrorRatio { ratio, .. } if !(0.0..=1.0).contains(ratio) => {
                Err(format!("ratio must be within 0 and 1, got {ratio}"))
            }
            Self::MemoryLeak {
                bytes_per_second, ..
            } if *bytes_per_second > 1 << 30 => {
                Err("bytes_per_second must be at most 1 GiB".into())
            }
            Self::CpuBurn { threads, .. } if *threads == 0 || *threads > 16 => {
                Err(format!("threads must be 1 to 16, got {threads}"))
            }
            Self::HoldDbConnections { connections, .. }
                if *connections == 0 || *connections > 1000 =>
            {
                Err(format!("connections must be 1 to 1000, got {connections}"))
            }
            _ => Ok(()),
        }
    }
}

/// `Option<Duration>` as a humantime string (`"30s"`).
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Numbers each started fault, so that an old expiry timer cannot end a newer one.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One active fault.
#[derive(Debug)]
struct Active {
    id: u64,
    fault: Fault,
    started: Instant,
    stop: CancellationToken,
}

/// What `GET /faults` shows of a fault.
#[derive(Debug, Serialize)]
struct ActiveView {
    #[serde(flatten)]
    fault: Fault,
    active_for_ms: u128,
    remaining_ms: Option<u128>,
}

/// The faults of one service.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    active: Arc<Mutex<BTreeMap<&'static str, Active>>>,
    pool: Option<PgPool>,
}

impl Faults {
    pub fn new(pool: Option<PgPool>) -> Self {
        register_metrics();
        Self {
            active: Arc::default(),
            pool,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Active>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts `fault`, replacing an active one of the same kind.
    pub fn start(&self, fault: Fault) -> Result<(), String> {
        fault.validate()?;
        if matches!(fault, Fault::HoldDbConnections { .. }) && self.pool.is_none() {
            return Err("this role has no database connections to hold".into());
        }
        let kind = fault.kind();
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stop = CancellationToken::new();
        effects::spawn(&fault, self.pool.clone(), stop.clone());
        if let Some(duration) = fault.duration() {
            let faults = self.clone();
            let token = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(duration) => faults.expire(kind, id),
                    () = token.cancelled() => {}
                }
            });
        }
        tracing::warn!(?fault, "fault injected");
        let previous = self.lock().insert(
            kind,
            Active {
                id,
                fault,
                started: Instant::now(),
                stop,
            },
        );
        if let Some(previous) = previous {
            previous.stop.cancel();
        }
        metrics::gauge!("fault_active", "fault" => kind).set(1.0);
        Ok(())
    }

    fn expire(&self, kind: &'static str, id: u64) {
        let mut active = self.lock();
        if active.get(kind).is_some_and(|a| a.id == id)
            && let Some(removed) = active.remove(kind)
        {
            removed.stop.cancel();
            metrics::gauge!("fault_active", "fault" => kind).set(0.0);
            tracing::info!(kind, "fault expired");
        }
    }

    /// Clears one kind, or every fault with `None`; returns how many ended.
    pub fn clear(&self, kind: Option<&str>) -> usize {
        let mut active = self.lock();
        let kinds: Vec<&'static str> = active
            .keys()
            .copied()
            .filter(|k| kind.is_none_or(|wanted| wanted == *k))
            .collect();
        for k in &kinds {
            if let Some(removed) = active.remove(k) {
                removed.stop.cancel();
                metrics::gauge!("fault_active", "fault" => *k).set(0.0);
            }
        }
        if !kinds.is_empty() {
            tracing::info!(?kinds, "faults cleared");
        }
        kinds.len()
    }

    /// The latency to add now, when a latency fault is active.
    pub fn latency(&self) -> Option<Duration> {
        let active = self.lock();
        let Some(Active {
            fault:
                Fault::Latency {
                    latency_ms,
                    jitter_ms,
                    ..
                },
            ..
        }) = active.get("latency")
        else {
            return None;
        };
        let jitter = if *jitter_ms > 0 {
            rand::rng().random_range(0..=*jitter_ms)
        } else {
            0
        };
        Some(Duration::from_millis(latency_ms + jitter))
    }

    fn should_fail(&self) -> bool {
        let ratio = match self.lock().get("error_ratio") {
            Some(Active {
                fault: Fault::ErrorRatio { ratio, .. },
                ..
            }) => *ratio,
            _ => return false,
        };
        rand::rng().random_bool(ratio.clamp(0.0, 1.0))
    }

    fn views(&self) -> Vec<ActiveView> {
        let now = Instant::now();
        self.lock()
            .values()
            .map(|a| {
                let elapsed = now - a.started;
                ActiveView {
                    fault: a.fault.clone(),
                    active_for_ms: elapsed.as_millis(),
                    remaining_ms: a
                        .fault
                        .duration()
                        .map(|d| d.saturating_sub(elapsed).as_millis()),
                }
            })
            .collect()
    }
}

/// Sets `fault_active` to 0 for every kind: dashboards and alerts see "no
/// fault" rather than no data, whether the API is on or not.
pub fn register_metrics() {
    for kind in KINDS {
        metrics::gauge!("fault_active", "fault" => kind).set(0.0);
    }
}

/// The fault admin router: every route, the fallback included, behind
/// `token` (see the module's documentation).
pub fn router(faults: Faults, token: Secret) -> Router {
    Router::new()
        .route("/faults", get(list).post(inject).delete(clear_all))
        .route("/faults/{kind}", delete(clear_one))
        .fallback(crate::problem::not_found)
        .with_state(faults)
        .layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in
/// any case, RFC 9110), or `None` for any other header.
fn bearer_token(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

/// Lets a request through only with the configured bearer token.
async fn require_token(State(token): State<Arc<Secret>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(bearer_token);
    match presented {
        Some(candidate) if token.matches(candidate) => next.run(request).await,
        _ => {
            let (detail, challenge) = if presented.is_some() {
                (
                    "the bearer token is not this service's fault admin token",
                    format!(r#"Bearer realm="{REALM}", error="invalid_token""#),
                )
            } else {
                (
                    "the fault admin API needs Authorization: Bearer <token>, \
                     the service's FAULTLINE_FAULT_ADMIN_TOKEN",
                    format!(r#"Bearer realm="{REALM}""#),
                )
            };
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                token_presented = presented.is_some(),
                "fault admin call refused: missing or wrong token"
            );
            let mut response = Problem::new(StatusCode::UNAUTHORIZED)
                .with_detail(detail)
                .into_response();
            if let Ok(challenge) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
            }
            response
        }
    }
}

async fn list(State(faults): State<Faults>) -> Response {
    axum::Json(faults.views()).into_response()
}

async fn inject(State(faults): State<Faults>, ApiJson(fault): ApiJson<Fault>) -> Response {
    match faults.start(fault.clone()) {
        Ok(()) => (StatusCode::CREATED, axum::Json(fault)).into_response(),
        Err(detail) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_detail(detail)
            .into_response(),
    }
}

async fn clear_all(State(faults): State<Faults>) -> StatusCode {
    faults.clear(None);
    StatusCode::NO_CONTENT
}

async fn clear_one(State(faults): State<Faults>, ApiPath(kind): ApiPath<String>) -> Response {
    if !KINDS.contains(&kind.as_str()) {
        return Problem::new(StatusCode::NOT_FOUND)
            .with_detail(format!(
                "no fault kind {kind:?}; kinds: {}",
                KINDS.join(", ")
            ))
            .into_response();
    }
    faults.clear(Some(&kind));
    StatusCode::NO_CONTENT.into_response()
}

/// The middleware on the public router: applies latency and error faults.
pub async fn apply(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    if let Some(latency) = faults.latency() {
        tokio::time::sleep(latency).await;
    }
    if faults.should_fail() {
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("injected fault: error_ratio")
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;

    const TOKEN: &str = "test-fault-admin-token";

    fn admin(faults: &Faults) -> Router {
        router(faults.clone(), Secret::parse(TOKEN).unwrap())
    }

    async fn call(
        router: Router,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_owned())
            }
            None => Body::empty(),
        };
        router.oneshot(request.body(body).unwrap()).await.unwrap()
    }

    async fn problem(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn calls_without_the_token_are_refused_and_change_nothing() {
        let faults = Faults::new(None);
        let fault = r#"{"kind":"error_ratio","ratio":1.0}"#;
        for authorization in [
            None,
            Some("Bearer wrong-token"),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic dGVzdDp0ZXN0"),
            Some(TOKEN),
            Some("Bearer test-fault-admin-token-and-more"),
            Some("Bearer test-fault-admin-toke"),
        ] {
            for (method, path, body) in [
                ("POST", "/faults", Some(fault)),
                ("GET", "/faults", None),
                ("DELETE", "/faults", None),
                ("DELETE", "/faults/latency", None),
                ("GET", "/nowhere", None),
            ] {
                let response = call(admin(&faults), method, path, authorization, body).await;
                let what = format!("{method} {path} with {authorization:?}");
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
                assert_eq!(
                    response.headers()[header::CONTENT_TYPE],
                    crate::problem::PROBLEM_JSON,
                    "{what}"
                );
                let challenge = response.headers()[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .to_owned();
                assert!(
                    challenge.starts_with(r#"Bearer realm="faultline-fault-admin""#),
                    "{what}: {challenge}"
                );
                let body = problem(response).await;
                assert_eq!(body["status"], 401, "{what}");
                assert!(!body.to_string().contains(TOKEN), "{what}: {body}");
            }
        }
        assert!(faults.views().is_empty(), "a refused call injected a fault");
        assert!(!faults.should_fail());
    }

    #[tokio::test]
    async fn a_wrong_token_is_told_apart_from_a_missing_one() {
        let faults = Faults::new(None);
        let missing = call(admin(&faults), "GET", "/faults", None, None).await;
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="faultline-fault-admin""#
        );
        let wrong = call(admin(&faults), "GET", "/faults", Some("Bearer nope"), None).await;
        assert_eq!(
            wrong.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="faultline-fault-admin", error="invalid_token""#
        );
    }

    #[tokio::test]
    async fn the_token_opens_every_route() {
        let faults = Faults::new(None);
        let bearer = format!("Bearer {TOKEN}");
        let fault = r#"{"kind":"error_ratio","ratio":1.0}"#;
        let created = call(
            admin(&faults),
            "POST",
            "/faults",
            Some(&bearer),
            Some(fault),
        )
        .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        assert!(faults.should_fail());
        let listed = call(admin(&faults), "GET", "/faults", Some(&bearer), None).await;
        assert_eq!(listed.status(), StatusCode::OK);
        // The scheme is case-insensitive; extra spaces before the token are fine.
        let lower = format!("bearer   {TOKEN}");
        let cleared = call(
            admin(&faults),
            "DELETE",
            "/faults/error_ratio",
            Some(&lower),
            None,
        )
        .await;
        assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
        assert!(faults.views().is_empty());
        let unknown = call(admin(&faults), "GET", "/nowhere", Some(&bearer), None).await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn faults_parse_from_json_with_humantime_durations() {
        let fault: Fault =
            serde_json::from_str(r#"{"kind":"latency","latency_ms":800,"duration":"30s"}"#)
                .unwrap();
        assert_eq!(
            fault,
            Fault::Latency {
                latency_ms: 800,
                jitter_ms: 0,
                duration: Some(Duration::from_secs(30))
            }
        );
        assert!(
            serde_json::from_str::<Fault>(r#"{"kind":"latency","latency_ms":1,"colour":"red"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"meteor"}"#).is_err());
    }

    #[test]
    fn nonsense_values_are_refused() {
        let bad = Fault::ErrorRatio {
            ratio: 1.5,
            duration: None,
        };
        assert!(bad.validate().unwrap_err().contains("ratio"));
        let bad = Fault::CpuBurn {
            threads: 0,
            duration: None,
        };
        assert!(bad.validate().is_err());
    }

    #[tokio::test]
    async fn a_fault_with_a_duration_ends_by_itself() {
        let faults = Faults::new(None);
        faults
            .start(Fault::ErrorRatio {
                ratio: 1.0,
                duration: Some(Duration::from_millis(50)),
            })
            .unwrap();
        assert!(faults.should_fail());
        let deadline = Instant::now() + Duration::from_secs(5);
        while faults.should_fail() {
            assert!(Instant::now() < deadline, "the fault never expired");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(faults.views().is_empty());
    }

    #[tokio::test]
    async fn clearing_ends_faults() {
        let faults = Faults::new(None);
        faults
            .start(Fault::Latency {
                latency_ms: 5,
                jitter_ms: 0,
                duration: None,
            })
            .unwrap();
        faults
            .start(Fault::ErrorRatio {
                ratio: 0.5,
                duration: None,
            })
            .unwrap();
        assert_eq!(faults.clear(Some("latency")), 1);
        assert_eq!(faults.latency(), None);
        assert_eq!(faults.clear(None), 1);
        assert!(faults.views().is_empty());
    }

    #[tokio::test]
    async fn holding_connections_needs_a_database() {
        let faults = Faults::new(None);
        let err = faults
            .start(Fault::HoldDbConnections {
                connections: 2,
                duration: None,
            })
            .unwrap_err();
        assert!(err.contains("no database"));
    }
}
