//! The HTTP server and client spans, made with the OpenTelemetry API rather
//! than through `tracing`: the cheapest correct path for the spans every
//! request has.
//!
//! A request's server span is decided, made and ended here:
//!
//! - sampled: an SDK span of kind server, its attributes built only then,
//!   with the caller's span as its parent;
//! - not sampled: no span at all, only its ids (the caller's trace id or a
//!   new one, a new span id, the sampled flag off), so that log lines and the
//!   next hop still carry the trace id and the decision.
//!
//! Either way its context is made current (OpenTelemetry's, not `tracing`'s)
//! while the request's future is polled ([`ServerSpan::with_current`]). The
//! handler's `tracing` spans (queries, client calls) find it there:
//! `tracing-opentelemetry` parents a span made in no `tracing` span to the
//! current OpenTelemetry context, [`crate::head`] follows its decision (and
//! makes no span inside an unsampled one), the JSON log lines take their ids
//! from it and [`crate::propagation`] sends it on.
//!
//! A client span ([`ClientSpan`]) is a child of the current context (a
//! `tracing` span's or the server span's), made only when that is sampled,
//! and is what the call's `traceparent` names.
//!
//! What they save over `tracing` spans (see BENCHMARKS.md): the registry's
//! slot and its bookkeeping on every poll, and, when sampled, the bridge's
//! span builder and the conversion of every field.

use std::future::Future;
use std::sync::OnceLock;

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

use crate::head::Head;

/// The head sampler and the tracer, from [`crate::Telemetry::init`].
static INSTALLED: OnceLock<(Head, SdkTracer)> = OnceLock::new();

/// Makes `head` decide and `tracer` record the HTTP spans of this process
/// (the first call wins: the subscriber is process-wide too).
pub(crate) fn install(head: Head, tracer: SdkTracer) {
    // A second `Telemetry::init` fails at the subscriber; nothing to replace.
    let _ = INSTALLED.set((head, tracer));
}

/// What a server span says about the request, read only when it is sampled.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The span's name: `GET /api/products/{id}`.
    pub name: &'a str,
    pub method: &'a str,
    /// The route template (`/api/products/{id}`).
    pub route: &'a str,
    pub path: &'a str,
}

/// What a client span says about the call, read only when it is sampled.
#[derive(Debug, Clone, Copy)]
pub struct HttpCall<'a> {
    pub method: &'a str,
    pub server_address: &'a str,
    pub server_port: u16,
    pub url: &'a str,
    /// The peer's logical name (`catalog`).
    pub peer_service: &'a str,
}

/// One outbound call's client span: made when the current trace is
/// sampled, else the current context as it is. Ended when dropped.
#[derive(Debug)]
pub struct ClientSpan {
    cx: Context,
}

impl ClientSpan {
    /// No span and no ids: telemetry is off for the caller.
    pub fn none() -> Self {
        Self { cx: Context::new() }
    }

    /// A client span for `call`, child of the current context
    /// ([`crate::propagation::current_context`]); in none, the first span of
    /// a new trace, decided by the head sampler.
    pub fn start(call: HttpCall<'_>) -> Self {
        let Some((head, tracer)) = INSTALLED.get() else {
            return Self::none();
        };
        let parent = crate::propagation::current_context();
        let parent_span = parent.span().span_context().clone();
        if parent_span.is_valid() && !parent_span.is_sampled() {
            return Self { cx: parent };
        }
        if !parent_span.is_valid()
            && let Some(unsampled) = head.decide(call.method, None)
        {
            return Self {
                cx: Context::new().with_remote_span_context(unsampled),
            };
        }
        let span = tracer
            .span_builder(call.method.to_owned())
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", call.method.to_owned()),
                KeyValue::new("server.address", call.server_address.to_owned()),
                KeyValue::new("server.port", i64::from(call.server_port)),
                KeyValue::new("url.full", call.url.to_owned()),
                KeyValue::new("peer.service", call.peer_service.to_owned()),
            ])
            .start_with_context(tracer, &parent);
        Self {
            cx: parent.with_span(span),
        }
    }

    /// Writes this span's context (`traceparent`, `tracestate`) into `headers`.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        crate::propagation::inject(&self.cx, headers);
    }

    /// Records the answer's status; a 5xx marks the span as an error.
    pub fn record_status(&self, status: u16) {
        record_status(&self.cx, status);
    }

    /// Records a call that got no answer (`timeout`, `transport`).
    pub fn record_error(&self, kind: &'static str) {
        let span = self.cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(kind));
        }
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        // A no-op when no span was made: `cx` then holds an unsampled
        // parent's ids, or nothing.
        self.cx.span().end();
    }
}

/// One request's server span (or its ids, when not sampled); ended when
/// dropped, so a cancelled request's span ends too.
#[derive(Debug)]
pub struct ServerSpan {
    cx: Context,
}

impl ServerSpan {
    /// No span and no ids: telemetry is off for the caller.
    pub fn none() -> Self {
        Self { cx: Context::new() }
    }

    /// The server span of a request whose caller sent `parent` (an empty
    /// context when none): sampled as the caller decided, or as the head
    /// sampler decides for a new trace. Without [`crate::Telemetry::init`],
    /// [`ServerSpan::none`].
    pub fn start(parent: &Context, request: HttpRequest<'_>) -> Self {
        let Some((head, tracer)) = INSTALLED.get() else {
            return Self::none();
        };
        let remote = parent.span().span_context().clone();
        let remote = remote.is_valid().then_some(remote);
        if let Some(unsampled) = head.decide(request.name, remote.as_ref()) {
            return Self {
                cx: Context::new().with_remote_span_context(unsampled),
            };
        }
        let span = tracer
            .span_builder(request.name.to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", request.method.to_owned()),
                KeyValue::new("http.route", request.route.to_owned()),
                KeyValue::new("url.path", request.path.to_owned()),
                KeyValue::new("url.scheme", "http"),
            ])
            .start_with_context(tracer, parent);
        Self {
            cx: parent.with_span(span),
        }
    }

    /// Polls `future` with this span's context current.
    pub fn with_current<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        future.with_context(self.cx.clone())
    }

    /// Runs `f` with this span's context current (for a log line).
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _current = self.cx.clone().attach();
        f()
    }

    /// Records the response's status; a 5xx marks the span as an error.
    pub fn record_status(&self, status: u16) {
        record_status(&self.cx, status);
    }
}

/// `http.response.status_code` on the span in `cx`, if it records; a 5xx
/// also sets `error.type` and the error status.
fn record_status(cx: &Context, status: u16) {
    let span = cx.span();
    if !span.is_recording() {
        return;
    }
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_attribute(KeyValue::new("error.type", status.to_string()));
        span.set_status(Status::error(format!("HTTP {status}")));
    }
}

impl Drop for ServerSpan {
    fn drop(&mut self) {
        // A no-op for the unsampled and the empty context.
        self.cx.span().end();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    #[test]
    fn without_telemetry_there_is_no_span_and_no_ids() {
        // No `Telemetry::init` in this test binary: nothing is installed.
        let request = HttpRequest {
            name: "GET /",
            method: "GET",
            route: "/",
            path: "/",
        };
        let remote = SpanContext::new(
            TraceId::from(7_u128),
            SpanId::from(9_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let parent = Context::new().with_remote_span_context(remote);
        let span = ServerSpan::start(&parent, request);
        span.record_status(500);
        assert!(span.in_scope(|| crate::head::otel_current().is_none()));
        let mut headers = http::HeaderMap::new();
        ClientSpan::none().inject(&mut headers);
        assert!(headers.is_empty());
    }
}
