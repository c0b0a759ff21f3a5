//! Identity for a test stack: a key directory of its own, tokens minted from
//! it, and (for the rotation test) its JWKS served over HTTP so that the
//! gateway and orders pick up a rotated key while they run.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use faultline_auth::{KeyDir, Minter, Role};

/// How long a test token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A stack's signing keys (a temporary key directory).
#[derive(Debug)]
pub struct StackKeys {
    dir: tempfile::TempDir,
    keys: KeyDir,
}

impl StackKeys {
    /// A fresh directory with one key.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create the key directory")?;
        let keys = KeyDir::new(dir.path());
        keys.ensure()?;
        Ok(Self { dir, keys })
    }

    /// The key directory (the chaos engine's `[target] keys`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn dir(&self) -> &KeyDir {
        &self.keys
    }

    /// The public keys, as the services' FAULTLINE_AUTH_JWKS takes them inline.
    pub fn jwks_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&self.keys.jwks()?)?)
    }

    /// A minter of the current key.
    pub fn minter(&self) -> anyhow::Result<Minter> {
        Ok(Minter::new(self.keys.signing_key(None)?))
    }

    /// A token for `subject` signed with the current key.
    pub fn token(&self, subject: &str, role: Role) -> anyhow::Result<String> {
        Ok(self.minter()?.token(subject, role, TOKEN_TTL)?)
    }

    /// `Bearer <token>` for a customer.
    pub fn bearer(&self, subject: &str) -> anyhow::Result<String> {
        Ok(format!("Bearer {}", self.token(subject, Role::Customer)?))
    }

    /// An HTTP client (as [`crate::http_client`]) that sends `role`
    /// `subject`'s token with every request.
    pub fn client_as(&self, subject: &str, role: Role) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value: reqwest::header::HeaderValue =
            format!("Bearer {}", self.token(subject, role)?).parse()?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Ok(crate::http_client_builder()
            .default_headers(headers)
            .build()?)
    }

    /// `count` load-generator customers (`<prefix>-1`, ...) with tokens of
    /// the current key.
    pub fn customers(
        &self,
        count: u32,
        prefix: &str,
    ) -> anyhow::Result<faultline_loadgen::Customers> {
        Ok(faultline_loadgen::Customers::new(
            self.minter()?,
            count,
            prefix,
        ))
    }
}

/// Serves a key directory's `jwks.json`, read anew on every request, on every
/// interface (containers reach it as `host.docker.internal:<port>`).
#[derive(Debug)]
pub struct JwksServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: &KeyDir) -> anyhow::Result<Self> {
        let path = keys.jwks_path();
        let app = Router::new().route(
            "/jwks.json",
            get(move || {
                let path = path.clone();
                async move {
                    match tokio::fs::read_to_string(&path).await {
                        Ok(text) => (axum::http::StatusCode::OK, text),
                        Err(err) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("the JWKS server stopped: {err}");
            }
        });
        Ok(Self { port, task })
    }

    /// The URL containers fetch.
    pub fn url_in_network(&self) -> String {
        format!("http://host.docker.internal:{}/jwks.json", self.port)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
