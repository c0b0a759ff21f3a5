//! W3C trace context across hops: HTTP headers and stored carriers (the outbox).

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's context: its OpenTelemetry span's when its trace is
/// sampled, else the unsampled trace's (same trace id, sampled flag off; see
/// [`crate::head`]); outside any `tracing` span, the server span's
/// ([`crate::http_spans`]), else an empty context.
pub fn current_context() -> Context {
    let span = tracing::Span::current();
    if span.is_none() {
        return Context::current();
    }
    let context = span.context();
    if context.span().span_context().is_valid() {
        return context;
    }
    span.with_subscriber(|(id, dispatch)| crate::head::unsampled_context(dispatch, id))
        .flatten()
        .map_or_else(Context::current, |unsampled| {
            Context::new().with_remote_span_context(unsampled)
        })
}

/// Writes the current span's context (`traceparent`, `tracestate`) into `headers`.
pub fn inject_current(headers: &mut http::HeaderMap) {
    inject(&current_context(), headers);
}

/// Writes `context` (`traceparent`, `tracestate`) into `headers`.
pub fn inject(context: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(context, &mut HeaderInjector(headers));
}

/// Reads the caller's context from `headers` (an empty context when absent).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The current span's context as a map (`traceparent`, ...), to store with an event.
pub fn current_carrier() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&current_context(), &mut carrier);
    carrier
}

/// A context back from a stored carrier.
pub fn from_carrier(carrier: &HashMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(carrier)
}

/// Makes a span with `make` as a child of the caller's span in `parent`,
/// when `parent` carries a valid one: the span's trace is sampled as the
/// caller decided (see [`crate::head`]) and, if sampled, continues the
/// caller's trace. Without a valid parent, the span is made as any other.
pub fn child_of_remote(parent: Context, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let remote = parent.span().span_context().clone();
    if !remote.is_valid() {
        return make();
    }
    let span = crate::head::with_remote_parent(remote, make);
    // Nothing to do for an unsampled span: it has no OpenTelemetry span.
    let _ = span.set_parent(parent);
    span
}

/// Links `span` to the span in `context`, for work caused by it (a queued event).
pub fn add_link(span: &tracing::Span, context: &Context) {
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.add_link(span_context);
    }
}

/// The trace id of the current span, as 32 hex digits, if it has one.
pub fn current_trace_id() -> Option<String> {
    let context = current_context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
