//! Test servers and helpers: a fault proxy on port 0, echo and blob upstreams.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faultline_proxy::{NewProxy, ProxyServer, ProxyServerConfig, ToxiproxyClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest any single wait in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A fault proxy on a free port, with a client for it.
pub struct Harness {
    pub server: ProxyServer,
    pub client: ToxiproxyClient,
}

impl Harness {
    pub async fn start() -> Self {
        let server = ProxyServer::start(ProxyServerConfig::ephemeral())
            .await
            .unwrap();
        let client = server.client().unwrap();
        Self { server, client }
    }

    /// Creates an enabled proxy to `upstream` on a free port; returns its address.
    pub async fn proxy(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let proxy = self
            .client
            .create_proxy(&NewProxy::new(name, "127.0.0.1:0", upstream.to_string()))
            .await
            .unwrap();
        proxy.listen.parse().unwrap()
    }

    pub async fn stop(self) {
        self.server.shutdown().await.unwrap();
    }
}

/// An upstream that echoes everything back, and half-closes when the client does.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    addr
}

/// An upstream that sends `data` to every client, then closes.
pub async fn blob_server(data: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let _ = socket.write_all(&data).await;
                let _ = socket.shutdown().await;
                // Wait for the client's close so ours is a clean FIN.
                let mut sink = [0u8; 1024];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Runs `future`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: still waiting after {DEADLINE:?}"),
    }
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not true after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `message` and reads the same number of bytes back.
pub async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    within("round trip", async {
        stream.write_all(message).await.unwrap();
        let mut reply = vec![0u8; message.len()];
        stream.read_exact(&mut reply).await.unwrap();
        reply
    })
    .await
}

/// A deterministic byte pattern that makes a lost or swapped chunk visible.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8) ^ (i >> 16)) as u8)
        .collect()
}

/// The value of one series (`name{labels}` as rendered) at `GET /metrics`.
pub async fn metric_value(harness: &Harness, series: &str) -> Option<f64> {
    let url = format!("{}/metrics", harness.server.api_url());
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
