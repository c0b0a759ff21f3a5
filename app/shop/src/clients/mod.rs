//! The typed faces of the roles that other roles call: what a caller may ask
//! and what it gets back, on top of the one client stack ([`Upstream`]).
//!
//! - [`PaymentsClient`]: `authorize`, used by orders and by the worker;
//! - [`CatalogClient`]: `reserve` (orders) and `release` (the worker).
//!
//! [`Upstream`]: crate::http::Upstream

pub mod catalog;
pub mod payments;

pub use catalog::{CatalogClient, CatalogError, Reserved};
pub use payments::{Authorized, PaymentsClient, PaymentsError};

/// The `detail` of a problem+json body, or `fallback` when there is none.
fn problem_detail(body: &[u8], fallback: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("detail")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| fallback.to_owned())
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-process fake of another role: an axum router served on
    //! 127.0.0.1 port 0, reached through a real [`Upstream`].

    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::Router;

    use crate::http::Upstream;
    use crate::http::client::UpstreamPolicy;

    /// Serves `router` on a free local port until the test's runtime ends.
    pub async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// An upstream named `name` over the given endpoints, with the default policy.
    pub fn upstream(name: &'static str, addrs: &[SocketAddr]) -> Upstream {
        upstream_with(
            name,
            addrs,
            UpstreamPolicy::with_timeout(Duration::from_secs(2)),
        )
    }

    /// An upstream named `name` over the given endpoints, with `policy`.
    pub fn upstream_with(
        name: &'static str,
        addrs: &[SocketAddr],
        policy: UpstreamPolicy,
    ) -> Upstream {
        let urls: Vec<url::Url> = addrs
            .iter()
            .map(|addr| format!("http://{addr}").parse().unwrap())
            .collect();
        let http = crate::http::outbound::http_client(true).unwrap();
        Upstream::new(name, urls, policy, http)
    }

    #[test]
    fn problem_details_fall_back_when_absent() {
        use super::problem_detail;
        assert_eq!(problem_detail(br#"{"detail":"no"}"#, "x"), "no");
        assert_eq!(problem_detail(b"{}", "x"), "x");
        assert_eq!(problem_detail(b"not json", "x"), "x");
    }
}
