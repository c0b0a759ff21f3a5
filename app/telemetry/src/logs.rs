//! JSON logs on stdout, one object per line, filtered by `RUST_LOG`, with the
//! `trace_id` and `span_id` of the current span on every line inside a span.

use std::fmt;

use opentelemetry::trace::{SpanContext, TraceContextExt};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error(transparent)]
    Switch(#[from] crate::switches::InvalidSwitch),
}

/// Builds the filter from `RUST_LOG`, falling back to [`DEFAULT_FILTER`].
pub fn env_filter() -> Result<EnvFilter, LogsError> {
    match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => Ok(EnvFilter::try_new(value)?),
        _ => Ok(EnvFilter::try_new(DEFAULT_FILTER)?),
    }
}

/// One JSON object per event: `timestamp`, `level`, `target`, the event's
/// fields (`message` among them), the current `span` name, and the
/// OpenTelemetry `trace_id`, `span_id` and `trace_sampled` (whether the
/// trace is exported) when inside a span.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonWithTraceIds;

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut object = Map::new();
        object.insert(
            "timestamp".into(),
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        object.insert("level".into(), event.metadata().level().as_str().into());
        object.insert("target".into(), event.metadata().target().into());
        event.record(&mut JsonVisitor(&mut object));
        if let Some(span) = ctx.lookup_current() {
            object.insert("span".into(), span.name().into());
            let ids = tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
            });
            let span_context = ids
                .map(|context| context.span().span_context().clone())
                .filter(SpanContext::is_valid)
                .or_else(|| crate::head::unsampled_context_of(&span));
            if let Some(span_context) = span_context {
                object.insert(
                    "trace_id".into(),
                    span_context.trace_id().to_string().into(),
                );
                object.insert("span_id".into(), span_context.span_id().to_string().into());
                // Whether the trace was kept: a line of an unsampled
                // request is the only record of it.
                object.insert("trace_sampled".into(), span_context.is_sampled().into());
            }
        }
        let line = serde_json::to_string(&Value::Object(object)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Formats no span fields. [`JsonWithTraceIds`] reads only the event's own
/// fields and the span's name and ids, so rendering every span's fields into
/// a string when it opens (the fmt layer's default) would be wasted work on
/// every request.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'writer>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
