//! The process's TLS provider.

use std::sync::Once;

/// Installs rustls' ring provider as the process default, once.
///
/// reqwest is built without a default TLS provider in this workspace, so
/// every binary or test that makes HTTP(S) calls needs one. ring is the one
/// sqlx and bollard use. If another provider is installed already, that one
/// stays, which is just as good.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_provider_is_installed_and_calling_again_is_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
