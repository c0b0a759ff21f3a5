//! The settings of the roles that verify bearer tokens (gateway, orders).

use std::time::Duration;

/// Where the trusted public keys come from, and what a token must say.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// The trusted public keys (a JWKS): a file path (re-read every refresh
    /// interval, so a rotated key is picked up without a restart), an
    /// http(s) URL (fetched in the background), or the JWKS itself inline
    /// (a value starting with `{`).
    #[arg(long = "auth-jwks", id = "auth_jwks", env = "FAULTLINE_AUTH_JWKS")]
    pub jwks: String,
    /// The `iss` a token must carry.
    #[arg(
        long = "auth-issuer",
        env = "FAULTLINE_AUTH_ISSUER",
        default_value = faultline_auth::DEFAULT_ISSUER
    )]
    pub issuer: String,
    /// The `aud` a token must carry.
    #[arg(
        long = "auth-audience",
        env = "FAULTLINE_AUTH_AUDIENCE",
        default_value = faultline_auth::DEFAULT_AUDIENCE
    )]
    pub audience: String,
    /// Clock skew forgiven on `exp` and `nbf`.
    #[arg(long = "auth-leeway", env = "FAULTLINE_AUTH_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub leeway: Duration,
    /// How often a JWKS file or URL is read again.
    #[arg(long = "auth-jwks-refresh", env = "FAULTLINE_AUTH_JWKS_REFRESH", default_value = "10s", value_parser = humantime::parse_duration)]
    pub refresh: Duration,
}

impl AuthConfig {
    /// Settings for tests: an inline JWKS, the default issuer and audience.
    pub fn inline(jwks: &str) -> Self {
        Self {
            jwks: jwks.to_owned(),
            issuer: faultline_auth::DEFAULT_ISSUER.to_owned(),
            audience: faultline_auth::DEFAULT_AUDIENCE.to_owned(),
            leeway: Duration::from_secs(30),
            refresh: Duration::from_secs(10),
        }
    }
}
