//! The HTTP control API, shaped like Toxiproxy's v2 API.
//!
//! Every answer is JSON except `/metrics`. Errors are
//! `{"error": "...", "status": N}` with a 4xx status for any client mistake.
//! Updates accept `PATCH` as well as `POST`, as newer Toxiproxy versions do.
//!
//! With a token ([`crate::auth`]), every call but `GET /version` and
//! `GET /metrics` needs `Authorization: Bearer <token>`; without it the
//! answer is 401, `application/problem+json` with an `error` member as well,
//! so Toxiproxy clients show the reason too.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use faultline_telemetry::Metrics;
use serde::Serialize;

use crate::auth::{ApiToken, REALM, bearer_token};
use crate::error::ProxyError;
use crate::model::{self, ErrorBody, Populated, VersionInfo};
use crate::registry::Registry;

/// The version `/version` reports: this crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    pub(crate) registry: Registry,
    pub(crate) metrics: Metrics,
    /// The token every call must carry (but the open ones), if any.
    pub(crate) token: Option<Arc<ApiToken>>,
}

/// An error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<ProxyError> for ApiError {
    fn from(err: ProxyError) -> Self {
        let status =
            StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, err.to_string())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "control API error");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "control API request refused");
        }
        let body = ErrorBody {
            error: self.message,
            status: self.status.as_u16(),
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router of the control API.
pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/proxies", get(list_proxies).post(create_proxy))
        .route(
            "/proxies/{proxy}",
            get(show_proxy)
                .post(update_proxy)
                .patch(update_proxy)
                .delete(delete_proxy),
        )
        .route(
            "/proxies/{proxy}/toxics",
            get(list_toxics).post(create_toxic),
        )
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(show_toxic)
                .post(update_toxic)
                .patch(update_toxic)
                .delete(delete_toxic),
        )
        .route("/populate", axum::routing::post(populate))
        .route("/reset", axum::routing::post(reset))
        .route("/version", get(version))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(refuse_browser_writes))
        .layer(middleware::from_fn_with_state(
            state.token.clone(),
            require_token,
        ))
        .with_state(state)
}

/// Calls that need no token, token or not: reading the version (what
/// clients and health checks ask first) and the metrics (what Prometheus
/// scrapes). Neither changes anything.
fn is_open(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && matches!(path, "/version" | "/metrics")
}

/// Lets a call through when the API has no token, when it is open, or when
/// it carries the token; answers 401 otherwise.
async fn require_token(
    State(token): State<Option<Arc<ApiToken>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if is_open(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| bearer_token(value.as_bytes()));
    match presented {
        Some(candidate) if token.matches(candidate) => next.run(request).await,
        _ => {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                token_presented = presented.is_some(),
                "control API call refused: missing or wrong token"
            );
            unauthorized(presented.is_some())
        }
    }
}

/// A 401 problem (RFC 9457) with Toxiproxy's `error` member beside.
#[derive(Debug, Serialize)]
struct Unauthorized {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'static str,
    error: &'static str,
}

fn unauthorized(token_presented: bool) -> Response {
    let (detail, challenge) = if token_presented {
        (
            "the bearer token is not this proxy's API token",
            format!(r#"Bearer realm="{REALM}", error="invalid_token""#),
        )
    } else {
        (
            "this control API needs Authorization: Bearer <token>, the proxy's \
             --api-token (FAULTLINE_PROXY_API_TOKEN)",
            format!(r#"Bearer realm="{REALM}""#),
        )
    };
    let body = Unauthorized {
        kind: "about:blank",
        title: "Unauthorized",
        status: StatusCode::UNAUTHORIZED.as_u16(),
        detail,
        error: detail,
    };
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// Refuses changes from web browsers: a page open in a browser must not be
/// able to reconfigure a proxy on localhost with a cross-site form post.
/// Reads (`GET`, `HEAD`) stay allowed so the API can be browsed.
async fn refuse_browser_writes(request: Request, next: Next) -> Response {
    let from_browser = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .is_some_and(|agent| agent.starts_with("Mozilla/"));
    if from_browser && !matches!(*request.method(), Method::GET | Method::HEAD) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "changes are refused from web browsers; use a Toxiproxy client, curl or faultline",
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

async fn list_proxies(State(state): State<ApiState>) -> impl IntoResponse {
    Json(state.registry.proxies().await)
}

async fn create_proxy(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let new = model::parse_new_proxy(&body?)?;
    let proxy = state.registry.create_proxy(&new).await?;
    Ok((StatusCode::CREATED, Json(proxy)))
}

async fn show_proxy(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path(proxy) = path?;
    Ok(Json(state.registry.proxy(&proxy).await?))
}

async fn update_proxy(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path(proxy) = path?;
    let update = model::parse_proxy_update(&proxy, &body?)?;
    Ok(Json(state.registry.update_proxy(&proxy, &update).await?))
}

async fn delete_proxy(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path(proxy) = path?;
    state.registry.delete_proxy(&proxy).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_toxics(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path(proxy) = path?;
    Ok(Json(state.registry.toxics(&proxy).await?))
}

async fn create_toxic(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path(proxy) = path?;
    let new = model::parse_new_toxic(&body?)?;
    Ok(Json(state.registry.add_toxic(&proxy, &new).await?))
}

async fn show_toxic(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path((proxy, toxic)) = path?;
    Ok(Json(state.registry.toxic(&proxy, &toxic).await?))
}

async fn update_toxic(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path((proxy, toxic)) = path?;
    let body = body?;
    let current = state.registry.toxic(&proxy, &toxic).await?;
    let update = model::parse_toxic_update(&current, &body)?;
    Ok(Json(
        state.registry.update_toxic(&proxy, &toxic, &update).await?,
    ))
}

async fn delete_toxic(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path((proxy, toxic)) = path?;
    state.registry.remove_toxic(&proxy, &toxic).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn populate(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let proxies = model::parse_populate(&body?)?;
    let proxies = state.registry.populate(&proxies).await?;
    Ok((StatusCode::CREATED, Json(Populated { proxies })))
}

async fn reset(State(state): State<ApiState>) -> ApiResult<StatusCode> {
    state.registry.reset().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: VERSION.to_owned(),
    })
}

async fn render_metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}
