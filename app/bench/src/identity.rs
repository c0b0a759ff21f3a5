//! The benchmark's identity: one signing key made in memory per run, its
//! JWKS passed inline to the gateway and orders, and the load's customers
//! minting their tokens from it.

use std::sync::OnceLock;

use faultline_auth::{Minter, SigningKey};

/// The key and its JWKS, made on first use.
fn identity() -> Option<&'static (Minter, String)> {
    static IDENTITY: OnceLock<Option<(Minter, String)>> = OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            let key = SigningKey::generate("bench").ok()?;
            let jwks = serde_json::json!({ "keys": [key.public_jwk().ok()?] }).to_string();
            Some((Minter::new(key), jwks))
        })
        .as_ref()
}

/// `FAULTLINE_AUTH_JWKS` for the roles that verify tokens.
pub fn jwks_env() -> (&'static str, String) {
    (
        "FAULTLINE_AUTH_JWKS",
        identity().map(|(_, jwks)| jwks.clone()).unwrap_or_default(),
    )
}

/// The load's customers (50 of them).
pub fn customers() -> Option<faultline_loadgen::Customers> {
    identity().map(|(minter, _)| faultline_loadgen::Customers::new(minter.clone(), 50, "bench"))
}
