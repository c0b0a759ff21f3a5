//! The process's one outbound HTTP client, and the upstreams a role builds on
//! it: every outbound call of every role goes through them.

use std::time::Duration;

use super::Upstream;
use super::client::UpstreamPolicy;
use crate::config::ClientConfig;
use crate::resilience::endpoints::Replicas;

/// The longest wait for a TCP connection to another service.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// The one client every outbound call goes through. Without `keepalive`
/// (`FAULTLINE_UPSTREAM_KEEPALIVE=off`) no idle connection is kept, so every
/// call opens its own.
pub fn http_client(keepalive: bool) -> reqwest::Result<reqwest::Client> {
    faultline_signal::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(30))
        // Replicas are on the same network: a connection that takes longer
        // than this is to a replica that is gone, which gets ejected.
        .connect_timeout(CONNECT_TIMEOUT);
    if !keepalive {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build()
}

/// The upstreams of a role, on one shared client: the role calls them, and
/// the generic lifecycle refreshes their endpoint gauges and resolves their
/// names again every `dns_refresh`.
#[derive(Debug, Clone)]
pub struct Upstreams {
    http: reqwest::Client,
    all: Vec<Upstream>,
    dns_refresh: Duration,
}

impl Upstreams {
    /// The client for `config`, with no upstream yet.
    pub fn new(config: &ClientConfig) -> reqwest::Result<Self> {
        Ok(Self {
            http: http_client(config.upstream_keepalive)?,
            all: Vec::new(),
            dns_refresh: config.dns_refresh,
        })
    }

    /// Adds the upstream `name` at `replicas`, each call timing out after `timeout`.
    pub fn add(&mut self, name: &'static str, replicas: Replicas, timeout: Duration) -> Upstream {
        let policy = UpstreamPolicy::with_timeout(timeout);
        let upstream = Upstream::new(name, replicas, policy, self.http.clone());
        self.all.push(upstream.clone());
        upstream
    }

    /// Every upstream added, and how often to resolve their names again.
    pub fn into_parts(self) -> (Vec<Upstream>, Duration) {
        (self.all, self.dns_refresh)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An HTTP/1.1 server that answers every request with an empty 200 and
    /// counts the connections it accepted.
    async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0_u8; 1024];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        request.extend_from_slice(&buffer[..read]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            request.clear();
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn connections_for_three_calls(keepalive: bool) -> usize {
        let (addr, accepted) = counting_server().await;
        let client = http_client(keepalive).unwrap();
        for _ in 0..3 {
            let response = client.get(format!("http://{addr}/")).send().await.unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap();
        }
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn with_keepalive_calls_share_a_connection() {
        assert_eq!(connections_for_three_calls(true).await, 1);
    }

    #[tokio::test]
    async fn without_keepalive_every_call_opens_a_connection() {
        assert_eq!(connections_for_three_calls(false).await, 3);
    }
}
