//! JSON logs on stdout, one object per line, filtered by `RUST_LOG` (see
//! [`level_filter`]), with the
//! `trace_id` and `span_id` of the current span on every line inside a span.

use std::fmt;

use opentelemetry::trace::{SpanContext, TraceContextExt};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
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

/// The level filter `RUST_LOG` asks for ([`DEFAULT_FILTER`] when unset or
/// empty), as one of two layers: exactly one is `Some`.
///
/// `EnvFilter` takes a lock and looks the span up in a map on every span
/// creation, enter, exit and close, for the directives that match spans by
/// name or field (`[span{field=value}]=debug`): across a request's many
/// polls that cost is measurable (BENCHMARKS.md). Directives without `[`
/// are static, and `Targets` applies them with no per-span work; only
/// `RUST_LOG` values that name spans get an `EnvFilter`.
pub fn level_filter() -> Result<(Option<Targets>, Option<EnvFilter>), LogsError> {
    let value = std::env::var("RUST_LOG").ok();
    parse_filter(value.as_deref())
}

/// [`level_filter`] for a `RUST_LOG` value.
pub fn parse_filter(
    value: Option<&str>,
) -> Result<(Option<Targets>, Option<EnvFilter>), LogsError> {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_FILTER);
    if value.contains('[') {
        Ok((None, Some(EnvFilter::try_new(value)?)))
    } else {
        Ok((Some(value.parse::<Targets>()?), None))
    }
}

/// One JSON object per event: `timestamp`, `level`, `target`, the event's
/// fields (`message` among them), the current `span` name, and the
/// OpenTelemetry `trace_id`, `span_id` and `trace_sampled` (whether the
/// trace is exported) when inside a span (a `tracing` span, or the HTTP
/// server span whose context is current: `crate::http_spans`).
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
        let span_context = match ctx.lookup_current() {
            Some(span) => {
                object.insert("span".into(), span.name().into());
                let ids = tracing::dispatcher::get_default(|dispatch| {
                    tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
                });
                ids.map(|context| context.span().span_context().clone())
                    .filter(SpanContext::is_valid)
                    .or_else(|| crate::head::unsampled_context_of(&span))
            }
            // In no `tracing` span: the server span's, if any.
            None => crate::head::otel_current(),
        };
        if let Some(span_context) = span_context {
            object.insert(
                "trace_id".into(),
                span_context.trace_id().to_string().into(),
            );
            object.insert("span_id".into(), span_context.span_id().to_string().into());
            // Whether the trace was kept: a line of an unsampled request is
            // the only record of it.
            object.insert("trace_sampled".into(), span_context.is_sampled().into());
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

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn static_directives_get_targets_and_span_directives_an_env_filter() {
        let (targets, env) = parse_filter(None).unwrap();
        let targets = targets.unwrap();
        assert!(env.is_none());
        assert!(targets.would_enable("faultline_shop", &Level::INFO));
        assert!(!targets.would_enable("faultline_shop", &Level::DEBUG));
        let (targets, _) = parse_filter(Some("warn,faultline_shop::http=debug")).unwrap();
        let targets = targets.unwrap();
        assert!(targets.would_enable("faultline_shop::http::server", &Level::DEBUG));
        assert!(!targets.would_enable("sqlx::query", &Level::INFO));
        let (targets, env) =
            parse_filter(Some("info,[http.server{http.route=/api/orders}]=debug")).unwrap();
        assert!(targets.is_none() && env.is_some());
    }

    #[test]
    fn a_bad_filter_is_an_error_naming_the_variable() {
        for bad in ["info,faultline=loud", "[unclosed=debug"] {
            let err = parse_filter(Some(bad)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("RUST_LOG is not a valid filter"),
                "{bad}: {err}"
            );
        }
    }
}
