//! W3C trace context across hops: HTTP headers and stored carriers (the outbox).

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Writes the current span's context (`traceparent`, `tracestate`) into `headers`.
pub fn inject_current(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Reads the caller's context from `headers` (an empty context when absent).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The current span's context as a map (`traceparent`, ...), to store with an event.
pub fn current_carrier() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier
}

/// A context back from a stored carrier.
pub fn from_carrier(carrier: &HashMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(carrier)
}

/// Makes `span` a child of `parent` when `parent` carries a valid remote span;
/// returns whether it did.
pub fn set_remote_parent(span: &tracing::Span, parent: Context) -> bool {
    if !parent.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(parent).is_ok()
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
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
