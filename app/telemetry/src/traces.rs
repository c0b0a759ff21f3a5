//! Traces over OTLP, configured by the standard `OTEL_*` environment variables.
//!
//! - `OTEL_SERVICE_NAME` (else the role's name), `OTEL_RESOURCE_ATTRIBUTES`;
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//!   (default `http://localhost:4317`), `OTEL_EXPORTER_OTLP_TIMEOUT`, `..._HEADERS`;
//!   the transport is gRPC, so `OTEL_EXPORTER_OTLP_PROTOCOL` must be `grpc` if set;
//! - `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (unset: 10% of new
//!   traces, the caller's decision otherwise; see [`crate::sampling`]),
//!   `OTEL_BSP_*`;
//! - `OTEL_TRACES_EXPORTER=none` exports nothing (traces are still sampled
//!   and their spans made); `OTEL_SDK_DISABLED=true` makes no OpenTelemetry
//!   span at all. Either way requests keep trace ids, so logs and propagation
//!   keep working (see [`crate::head`]).
//!
//! Every export is counted in `otel_sdk_exporter_span_exported_total` (see
//! [`crate::span_export`]).

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::span_export::CountingSpanExporter;

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error(transparent)]
    Sampler(#[from] crate::sampling::SamplerError),
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: faultline exports OTLP over gRPC (use \"grpc\")"
    )]
    Protocol(String),
}

/// True unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
pub fn export_enabled() -> bool {
    let disabled = sdk_disabled();
    let exporter_none = std::env::var("OTEL_TRACES_EXPORTER")
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("none"));
    !disabled && !exporter_none
}

/// The resource: `service.name` from `OTEL_SERVICE_NAME` or `default_service`,
/// plus `service.version`, `service.namespace` and `service.instance.id`.
pub fn resource(default_service: &str, version: &'static str) -> Resource {
    let mut builder = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |name| name.trim().is_empty()) {
        builder = builder.with_service_name(default_service.to_owned());
    }
    let instance = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    builder
        .with_attributes([
            KeyValue::new("service.version", version),
            KeyValue::new("service.namespace", "faultline"),
            KeyValue::new("service.instance.id", instance),
        ])
        .build()
}

/// Builds the tracer provider; must run inside a Tokio runtime (gRPC export).
pub fn provider(
    default_service: &str,
    version: &'static str,
) -> Result<SdkTracerProvider, TracesError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Traces are sampled before their spans are made (`head_sampler`): what
    // reaches the SDK is to be recorded.
    let builder = SdkTracerProvider::builder()
        .with_resource(resource(default_service, version))
        .with_sampler(Sampler::AlwaysOn);
    if !export_enabled() {
        return Ok(builder.build());
    }
    if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
        && !protocol.trim().is_empty()
        && protocol.trim() != "grpc"
    {
        return Err(TracesError::Protocol(protocol));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    // Counted, so that spans lost to an unreachable collector show in /metrics.
    let exporter = CountingSpanExporter::new(exporter);
    Ok(builder.with_batch_exporter(exporter).build())
}

/// The head sampler: the one `OTEL_TRACES_SAMPLER` names, or none sampled
/// with `OTEL_SDK_DISABLED=true` (the setting is still checked).
pub fn head_sampler() -> Result<Sampler, TracesError> {
    let sampler = crate::sampling::from_env()?;
    Ok(if sdk_disabled() {
        Sampler::AlwaysOff
    } else {
        sampler
    })
}

fn sdk_disabled() -> bool {
    std::env::var("OTEL_SDK_DISABLED").is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// The tracer the tracing layer records into.
pub fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer("faultline")
}
