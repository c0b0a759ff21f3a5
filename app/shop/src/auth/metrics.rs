//! The authentication metrics (names in the catalog, app/telemetry/metrics.toml).

use faultline_auth::AuthError;

/// Starts every series at zero, so that rate() and alerts see zeros, not gaps.
pub fn register() {
    for reason in AuthError::REASONS {
        metrics::counter!("auth_failures_total", "reason" => reason).absolute(0);
    }
    for outcome in ["success", "failure"] {
        metrics::counter!("auth_jwks_refreshes_total", "outcome" => outcome).absolute(0);
    }
}

/// A refused credential.
pub fn failed(err: &AuthError) {
    metrics::counter!("auth_failures_total", "reason" => err.reason()).increment(1);
}

/// How many keys are trusted now.
pub fn keys_loaded(keys: usize) {
    metrics::gauge!("auth_jwks_keys").set(keys as f64);
}

/// A JWKS refresh's outcome.
pub fn refreshed(outcome: &'static str) {
    metrics::counter!("auth_jwks_refreshes_total", "outcome" => outcome).increment(1);
}
