//! The servers the benchmark runs besides the shop, each in its own process
//! (`faultline-bench serve ...`, hidden from `--help`):
//!
//! - `bare`: axum with no middleware, answering every GET with the bytes of a
//!   real product listing: the ceiling the gateway's read path is compared to;
//! - `proxy`: the fault proxy with one proxy and no toxics, in front of an upstream;
//! - `otlp-sink`: an OTLP/gRPC trace receiver that counts spans and drops
//!   them, so that exporting costs the services what it costs in production
//!   without a collector's work landing on their core.
//!
//! Each prints a [`ReadyLine`] on stdout once it listens, and exits when its
//! standard input closes.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;
use faultline_proxy::{NewProxy, ProxyServer, ProxyServerConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;

use crate::error::BenchError;
use crate::procs::{ReadyLine, exit_when_stdin_closes};

/// The name of the one proxy the `proxy` server creates.
pub const PROXY_NAME: &str = "bench";

/// A `serve` subcommand.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServeCommand {
    /// Bare axum answering every request with the bytes of BODY_FILE.
    Bare {
        #[arg(long)]
        body_file: PathBuf,
    },
    /// The fault proxy with one pass-through proxy (no toxics) to UPSTREAM.
    Proxy {
        #[arg(long)]
        upstream: String,
    },
    /// An OTLP/gRPC trace receiver that counts spans (GET /spans on its http address).
    OtlpSink,
}

/// Runs a `serve` child until its standard input closes.
pub async fn serve(command: ServeCommand) -> Result<(), BenchError> {
    exit_when_stdin_closes();
    match command {
        ServeCommand::Bare { body_file } => bare(body_file).await,
        ServeCommand::Proxy { upstream } => proxy(upstream).await,
        ServeCommand::OtlpSink => otlp_sink().await,
    }
}

async fn listen() -> Result<(TcpListener, SocketAddr), BenchError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|err| BenchError::io("cannot listen", err))?;
    let addr = listener
        .local_addr()
        .map_err(|err| BenchError::io("cannot read the bound address", err))?;
    Ok((listener, addr))
}

fn announce(addrs: &[(&str, SocketAddr)]) -> Result<(), BenchError> {
    let ready = ReadyLine {
        addrs: addrs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
    };
    let line = serde_json::to_string(&ready)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|err| BenchError::io("cannot print the ready line", err))
}

/// The bare server's router: every path answers `body` as JSON.
pub fn bare_router(body: Bytes) -> Router {
    Router::new().fallback(get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    }))
}

async fn bare(body_file: PathBuf) -> Result<(), BenchError> {
    let body = std::fs::read(&body_file)
        .map_err(|err| BenchError::io(format!("cannot read {}", body_file.display()), err))?;
    let (listener, addr) = listen().await?;
    announce(&[("http", addr)])?;
    axum::serve(listener, bare_router(Bytes::from(body)))
        .await
        .map_err(|err| BenchError::io("the bare server failed", err))
}

async fn proxy(upstream: String) -> Result<(), BenchError> {
    let server = ProxyServer::start(ProxyServerConfig::ephemeral())
        .await
        .map_err(|err| BenchError::Child(format!("cannot start the fault proxy: {err}")))?;
    let client = server
        .client()
        .map_err(|err| BenchError::Child(format!("fault proxy client: {err}")))?;
    let created = client
        .create_proxy(&NewProxy::new(PROXY_NAME, "127.0.0.1:0", upstream))
        .await
        .map_err(|err| BenchError::Child(format!("cannot create the proxy: {err}")))?;
    let toxics = client
        .toxics(PROXY_NAME)
        .await
        .map_err(|err| BenchError::Child(format!("cannot list the toxics: {err}")))?;
    if !toxics.is_empty() {
        return Err(BenchError::Child(format!(
            "the pass-through proxy has toxics: {toxics:?}"
        )));
    }
    let listen: SocketAddr = created.listen.parse().map_err(|err| {
        BenchError::Child(format!("the proxy listens on {:?}: {err}", created.listen))
    })?;
    announce(&[("proxy", listen), ("api", server.api_addr())])?;
    server
        .run_until(std::future::pending())
        .await
        .map_err(|err| BenchError::Child(format!("the fault proxy failed: {err}")))
}

/// Counts the spans it receives and drops them.
#[derive(Debug, Clone, Default)]
pub struct SpanCounter {
    spans: Arc<AtomicU64>,
}

impl SpanCounter {
    /// Spans received so far.
    pub fn count(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }
}

#[tonic::async_trait]
impl TraceService for SpanCounter {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans
            .fetch_add(u64::try_from(spans).unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn otlp_sink() -> Result<(), BenchError> {
    let counter = SpanCounter::default();
    let (grpc, grpc_addr) = listen().await?;
    let (http, http_addr) = listen().await?;
    let count = counter.clone();
    let router = Router::new().route(
        "/spans",
        get(move || {
            let count = count.clone();
            async move { count.count().to_string() }
        }),
    );
    announce(&[("grpc", grpc_addr), ("http", http_addr)])?;
    let grpc_server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(counter))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc));
    tokio::select! {
        result = grpc_server => result.map_err(|err| BenchError::Child(format!("the OTLP sink failed: {err}"))),
        result = axum::serve(http, router).into_future() => result.map_err(|err| BenchError::io("the OTLP sink's http server failed", err)),
    }
}
