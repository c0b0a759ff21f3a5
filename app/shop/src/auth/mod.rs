//! Bearer-token authentication, where the public API meets callers.
//!
//! The gateway and orders both verify the token (EdDSA or ES256, keys from
//! a JWKS chosen by `kid`; see `faultline_auth::verify` for the checks):
//! the gateway because it is the edge, orders because it must not trust a
//! claim it cannot check. The gateway forwards the caller's `Authorization`
//! header unchanged; no internal header carries identity, so nothing behind
//! the gateway can be fooled by one (README.md, "Identity and the trust
//! boundary").
//!
//! In the inbound stack (`http::server`):
//! - [`identify`], outside the rate limit, verifies a presented token and
//!   puts the [`Identity`] in the request's extensions, so the rate limit
//!   keys by subject; a bad token is counted in `auth_failures_total` and
//!   keyed by the client's address;
//! - [`reject_invalid`], inside the rate limit, answers 401 to a request
//!   whose token failed, on every route (the product list included: a
//!   client that presents a bad credential is told so);
//! - a handler that needs a caller takes the [`Caller`] extractor, which
//!   answers 401 when no token was sent.

mod config;
pub mod jwks;
pub mod metrics;

pub use config::AuthConfig;
pub use faultline_auth::{AuthError, Identity, Role};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use faultline_auth::{Policy, Verifier};

use crate::problem::Problem;
use crate::roles::{Background, TaskContext};
use jwks::{JwksSource, LoadError};

/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "faultline";

/// The outcome of looking at a request's credential.
#[derive(Debug, Clone)]
enum Credential {
    Verified(Identity),
    Refused(AuthError),
}

/// Verifies tokens with keys that stay fresh.
#[derive(Debug, Clone)]
pub struct Authenticator {
    verifier: Verifier,
}

/// Why authentication cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot build the JWKS client: {0}")]
    Client(#[source] reqwest::Error),
}

impl Authenticator {
    /// Loads an inline or file JWKS (an error stops the start: a gateway
    /// that trusts no key refuses every order), and returns the task that
    /// keeps the keys fresh. A URL is fetched by that task at once; until
    /// it answers, every token is refused.
    pub fn start(config: &AuthConfig) -> Result<(Self, Option<Background>), AuthConfigError> {
        metrics::register();
        let source = JwksSource::parse(&config.jwks);
        // Only a URL needs a client (which needs the process's TLS provider).
        let http = match source {
            JwksSource::Url(_) => Some(
                reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(5))
                    .build()
                    .map_err(AuthConfigError::Client)?,
            ),
            _ => None,
        };
        let keys = match source.load_now() {
            Some(keys) => keys?,
            None => faultline_auth::KeySet::default(),
        };
        metrics::keys_loaded(keys.len());
        tracing::info!(location = %source.location(), kids = ?keys.kids(), "trusted keys loaded");
        let verifier = Verifier::new(
            keys,
            Policy {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                leeway: config.leeway,
            },
        );
        let refresh: Option<Background> = source.refreshes().then(|| {
            let verifier = verifier.clone();
            let interval = config.refresh;
            Box::new(move |task: TaskContext| {
                tokio::spawn(jwks::refresh(source, verifier, http, interval, task.stop))
            }) as Background
        });
        Ok((Self { verifier }, refresh))
    }

    /// An authenticator over fixed keys (tests, benchmarks).
    pub fn with_verifier(verifier: Verifier) -> Self {
        metrics::register();
        Self { verifier }
    }
}

/// The 401 answer of `err`, with its `WWW-Authenticate` challenge.
pub fn unauthorized(err: &AuthError) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED)
        .with_detail(err.to_string())
        .into_response();
    if let Ok(challenge) = HeaderValue::from_str(&err.www_authenticate(REALM)) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// The middleware that verifies a presented token (see the module's
/// documentation).
pub async fn identify(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let values = request.headers().get_all(header::AUTHORIZATION);
    let mut values = values.iter();
    let credential = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => Some(Err(AuthError::Scheme)),
        (Some(value), None) => Some(auth.verifier.verify_header(Some(value.as_bytes()))),
    };
    match credential {
        None => {}
        Some(Ok(identity)) => {
            request.extensions_mut().insert(identity.clone());
            request
                .extensions_mut()
                .insert(Credential::Verified(identity));
        }
        Some(Err(err)) => {
            metrics::failed(&err);
            tracing::info!(reason = err.reason(), "bearer token refused");
            request.extensions_mut().insert(Credential::Refused(err));
        }
    }
    next.run(request).await
}

/// The middleware that answers 401 to a request whose token was refused.
pub async fn reject_invalid(request: Request, next: Next) -> Response {
    if let Some(Credential::Refused(err)) = request.extensions().get::<Credential>() {
        return unauthorized(err);
    }
    next.run(request).await
}

/// The verified caller; 401 when the request carries no token.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Credential>() {
            Some(Credential::Verified(identity)) => Ok(Self(identity.clone())),
            Some(Credential::Refused(err)) => Err(unauthorized(err)),
            None => {
                metrics::failed(&AuthError::Missing);
                Err(unauthorized(&AuthError::Missing))
            }
        }
    }
}

impl Caller {
    /// Whether the caller may see what `owner` owns.
    pub fn may_read(&self, owner: &str) -> bool {
        self.0.role == Role::Admin || self.0.subject == owner
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use faultline_auth::{KeySet, Minter, SigningKey, forge};
    use tower::ServiceExt;

    use super::*;

    fn minter() -> Minter {
        Minter::new(SigningKey::from_seed("k1", [7; 32]).unwrap())
    }

    fn app() -> Router {
        let jwks = serde_json::json!({"keys": [minter().key().public_jwk().unwrap()]});
        let keys = KeySet::from_jwks(&jwks.to_string()).unwrap().0;
        let auth = Authenticator::with_verifier(Verifier::new(keys, Policy::default()));
        Router::new()
            .route("/public", get(|| async { "anyone" }))
            .route(
                "/mine",
                get(|Caller(identity): Caller| async move { identity.subject }),
            )
            .layer(axum::middleware::from_fn(reject_invalid))
            .layer(axum::middleware::from_fn_with_state(auth, identify))
    }

    async fn call(path: &str, authorization: Option<&str>) -> (StatusCode, String, String) {
        let mut request = axum::http::Request::get(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            challenge,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn a_protected_route_needs_a_token_and_names_the_caller() {
        let (status, challenge, body) = call("/mine", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge, "Bearer realm=\"faultline\"");
        assert!(body.contains("\"status\":401"), "{body}");
        let token = minter()
            .token("alice", Role::Customer, Duration::from_secs(60))
            .unwrap();
        let (status, _, body) = call("/mine", Some(&format!("Bearer {token}"))).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
    }

    #[tokio::test]
    async fn the_public_route_is_open_but_a_bad_token_is_refused_there_too() {
        assert_eq!(call("/public", None).await.0, StatusCode::OK);
        for (reason, token) in forge::all(&minter(), "mallory") {
            let (status, challenge, body) = call("/public", Some(&format!("Bearer {token}"))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}");
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{reason}: {challenge}"
            );
            assert!(!body.contains(&token), "the token is never echoed");
        }
        let (status, challenge, _) = call("/public", Some("Basic YWxpY2U6cHc=")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.contains("invalid_request"), "{challenge}");
    }
}
