//! One call that sets up logs and traces for a service, and the guard that
//! flushes them at shutdown.

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::head::{Head, SampledOnly, UnsampledIds};
use crate::logs::{self, JsonWithTraceIds, LogsError};
use crate::traces::{self, TracesError};

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Logs(#[from] LogsError),
    #[error(transparent)]
    Traces(#[from] TracesError),
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Installs the global subscriber: `RUST_LOG` filter, JSON logs with trace
    /// ids on stdout (none with `FAULTLINE_LOGS=off`), and spans exported over
    /// OTLP. Call it inside a Tokio runtime.
    pub fn init(service: &str, version: &'static str) -> Result<Self, InitError> {
        let provider = traces::provider(service, version)?;
        // Sampling is decided before spans are made (`head`): the spans of
        // unsampled traces never reach the OpenTelemetry layer.
        let head = Head::new(traces::head_sampler()?);
        let tracer = traces::tracer(&provider);
        // The HTTP server and client spans are made with the OpenTelemetry
        // API, decided by the same head (`http_spans`).
        crate::http_spans::install(head.clone(), tracer.clone());
        let sampled_only = SampledOnly::new(head);
        // Parents come from the tracing span tree and propagation reads
        // `Span::context()`, so the OTel context need not be made current on
        // every poll (the layer's largest cost: see BENCHMARKS.md), and spans
        // carry their duration, not busy/idle time.
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_error_records_to_exceptions(true)
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            // No `code.*` and `thread.*` attributes: four more attributes,
            // one of them a `String` allocated per span, that no query uses.
            .with_location(false)
            .with_threads(false)
            .with_filter(sampled_only);
        let json = crate::switches::enabled(crate::switches::LOGS)
            .map_err(LogsError::from)?
            .then(|| {
                tracing_subscriber::fmt::layer()
                    .fmt_fields(logs::NoSpanFields)
                    .event_format(JsonWithTraceIds)
                    .with_writer(std::io::stdout)
            });
        let (targets, env_filter) = logs::level_filter()?;
        tracing_subscriber::registry()
            .with(targets)
            .with(env_filter)
            .with(otel)
            .with(UnsampledIds)
            .with(json)
            .try_init()
            .map_err(LogsError::from)?;
        opentelemetry::global::set_tracer_provider(provider.clone());
        Ok(Self { provider })
    }

    /// Exports the spans still buffered, then stops the exporter.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.force_flush() {
            tracing::warn!(error = %err, "could not flush spans at shutdown");
        }
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "could not stop the span exporter cleanly");
        }
    }
}
