//! One HTTP exchange with the gateway: trace context out, a classified
//! answer and its latency back.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use reqwest::Method;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::Config;
use crate::mix::Route;

/// The response header that marks a degraded answer.
pub const DEGRADED_HEADER: &str = "x-degraded";

/// A W3C trace context the load generator makes up for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 random bytes, never all zero.
    pub trace_id: [u8; 16],
    /// 8 random bytes, never all zero.
    pub span_id: [u8; 8],
}

impl TraceContext {
    /// A fresh random context (not from the mix's seed: trace ids must be
    /// unique across runs).
    pub fn random() -> Self {
        let mut rng = rand::rng();
        let mut trace_id: [u8; 16] = rng.random();
        let mut span_id: [u8; 8] = rng.random();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        Self { trace_id, span_id }
    }

    /// The trace id as 32 lowercase hex digits, as tracing backends show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The `traceparent` header value: `00-<trace id>-<span id>-01` (sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A request, resolved to a concrete path.
#[derive(Debug, Clone)]
pub(crate) struct HttpRequest {
    pub(crate) route: Route,
    pub(crate) method: Method,
    /// Path below the target, starting with `/`.
    pub(crate) path: String,
    pub(crate) body: Option<serde_json::Value>,
    pub(crate) idempotency_key: Option<Uuid>,
    /// Sent as `Authorization: Bearer <token>`.
    pub(crate) bearer: Option<Arc<str>>,
}

/// A transport-level failure: no HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The per-request timeout fired (head or body).
    Timeout,
    /// The connection could not be established.
    Connect,
    /// Anything else: reset mid-request, malformed HTTP, ...
    Other,
}

/// What came back.
#[derive(Debug)]
pub(crate) enum Answer {
    Response {
        status: u16,
        degraded: bool,
        body: Vec<u8>,
    },
    Failed {
        failure: Failure,
        message: String,
    },
}

/// One finished exchange.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The context sent in `traceparent`; `None` when the load sends none.
    pub(crate) trace: Option<TraceContext>,
    /// From the intended send time to the end of the body (or the failure).
    pub(crate) latency: Duration,
    pub(crate) answer: Answer,
}

/// The HTTP client, bound to one target.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: String,
    traceparent: bool,
}

impl Http {
    pub(crate) fn new(config: &Config) -> Result<Self, reqwest::Error> {
        // So that https targets work too.
        faultline_signal::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(config.concurrency)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("faultline-loadgen/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = config.target.as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            client,
            base,
            traceparent: config.traceparent,
        })
    }

    /// Sends `request` and reads the whole answer. Latency counts from
    /// `intended`, which is earlier than now when the client is late.
    pub(crate) async fn send(&self, request: &HttpRequest, intended: Instant) -> Exchange {
        let trace = self.traceparent.then(TraceContext::random);
        let mut builder = self
            .client
            .request(
                request.method.clone(),
                format!("{}{}", self.base, request.path),
            )
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(trace) = &trace {
            builder = builder.header("traceparent", trace.traceparent());
        }
        if let Some(token) = &request.bearer {
            builder = builder.bearer_auth(token);
        }
        if let Some(key) = request.idempotency_key {
            builder = builder.header("idempotency-key", key.to_string());
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let answer = match builder.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let degraded = response.headers().contains_key(DEGRADED_HEADER);
                match response.bytes().await {
                    Ok(body) => Answer::Response {
                        status,
                        degraded,
                        body: Vec::from(body),
                    },
                    Err(err) => failed(&err),
                }
            }
            Err(err) => failed(&err),
        };
        Exchange {
            trace,
            latency: intended.elapsed(),
            answer,
        }
    }
}

fn failed(err: &reqwest::Error) -> Answer {
    let failure = if err.is_timeout() {
        Failure::Timeout
    } else if err.is_connect() {
        Failure::Connect
    } else {
        Failure::Other
    };
    // reqwest's own message is generic; the cause is in the source chain.
    let message = faultline_signal::error_chain(err);
    Answer::Failed { failure, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_has_the_w3c_shape() {
        let t = TraceContext {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
        };
        assert_eq!(
            t.traceparent(),
            "00-abababababababababababababababab-0101010101010101-01"
        );
        assert_eq!(t.trace_id_hex().len(), 32);
        let a = TraceContext::random();
        let b = TraceContext::random();
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.trace_id, [0; 16]);
    }
}
