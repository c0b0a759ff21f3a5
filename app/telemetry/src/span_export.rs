//! Self-observability of span export: `otel_sdk_exporter_span_exported_total`,
//! the Prometheus rendering of the OpenTelemetry SDK metric
//! `otel.sdk.exporter.span.exported`.
//!
//! [`CountingSpanExporter`] wraps the OTLP exporter. Every export adds the
//! number of spans in its batch: without labels when the export succeeded,
//! with `error_type` when it failed. The OTLP exporter has already retried
//! within `OTEL_EXPORTER_OTLP_TIMEOUT` when it reports a failure, and nothing
//! keeps the spans after that, so the failed series also counts dropped spans.
//!
//! `error_type` takes one of [`ERROR_TYPES`]: the gRPC status code in
//! snake_case (`unavailable` when the collector cannot be reached,
//! `deadline_exceeded`, `unauthenticated`, ...), `timeout` (the SDK stopped
//! waiting), `already_shutdown`, or `other` for anything else.
//!
//! Not counted: spans the batch processor drops because its queue is full.
//! opentelemetry_sdk 0.33 counts those only through its own metrics API
//! (`otel.sdk.processor.span.processed`, behind the experimental
//! `experimental_metrics_bound_instruments` feature and an OTel meter
//! provider), which this crate does not use.

use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// The counter's name.
pub const SPAN_EXPORTED: &str = "otel_sdk_exporter_span_exported_total";

/// The label set on failed exports.
pub const ERROR_TYPE: &str = "error_type";

/// gRPC status codes as the OTLP exporter's error text spells them, and the
/// `error_type` value each becomes.
const GRPC_CODES: &[(&str, &str)] = &[
    ("Cancelled", "cancelled"),
    ("Unknown", "unknown"),
    ("InvalidArgument", "invalid_argument"),
    ("DeadlineExceeded", "deadline_exceeded"),
    ("NotFound", "not_found"),
    ("AlreadyExists", "already_exists"),
    ("PermissionDenied", "permission_denied"),
    ("ResourceExhausted", "resource_exhausted"),
    ("FailedPrecondition", "failed_precondition"),
    ("Aborted", "aborted"),
    ("OutOfRange", "out_of_range"),
    ("Unimplemented", "unimplemented"),
    ("Internal", "internal"),
    ("Unavailable", "unavailable"),
    ("DataLoss", "data_loss"),
    ("Unauthenticated", "unauthenticated"),
];

/// Every value `error_type` can take.
pub const ERROR_TYPES: &[&str] = &[
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
    "timeout",
    "already_shutdown",
    "other",
];

/// Starts the counter's success series at zero, so that it is rendered (and
/// alert rules can use it) before the first export.
pub fn start_at_zero() {
    metrics::counter!(SPAN_EXPORTED).increment(0);
}

/// The bounded `error_type` of a failed export.
///
/// The OTLP exporter reports gRPC failures as `InternalFailure` with the text
/// `... export failed with gRPC code: Unavailable: ...`; the code is read from
/// there, and any text without a known code is `other`.
pub fn error_type(err: &OTelSdkError) -> &'static str {
    match err {
        OTelSdkError::Timeout(_) => "timeout",
        OTelSdkError::AlreadyShutdown => "already_shutdown",
        OTelSdkError::InternalFailure(message) => grpc_code(message).unwrap_or("other"),
    }
}

fn grpc_code(message: &str) -> Option<&'static str> {
    let (_, rest) = message.split_once("gRPC code: ")?;
    let code = rest
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    GRPC_CODES
        .iter()
        .find(|(spelled, _)| *spelled == code)
        .map(|(_, value)| *value)
}

/// Counts one export of `spans` spans.
fn record_export(spans: usize, error: Option<&OTelSdkError>) {
    let spans = u64::try_from(spans).unwrap_or(u64::MAX);
    match error {
        None => metrics::counter!(SPAN_EXPORTED).increment(spans),
        Some(err) => {
            metrics::counter!(SPAN_EXPORTED, ERROR_TYPE => error_type(err)).increment(spans);
        }
    }
}

/// A span exporter that counts what the exporter it wraps exported or dropped;
/// everything else is passed through unchanged.
#[derive(Debug)]
pub struct CountingSpanExporter<E> {
    inner: E,
}

impl<E> CountingSpanExporter<E> {
    pub fn new(inner: E) -> Self {
        Self { inner }
    }
}

impl<E: SpanExporter> SpanExporter for CountingSpanExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        record_export(spans, result.as_ref().err());
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

    use super::*;
    use crate::Metrics;

    /// The sum of the failed series of the counter in a rendered page.
    fn failed_spans(page: &str) -> f64 {
        page.lines()
            .filter(|line| line.starts_with(&format!("{SPAN_EXPORTED}{{{ERROR_TYPE}=")))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    #[test]
    fn grpc_failures_are_classified_by_their_code() {
        let unavailable = OTelSdkError::InternalFailure(
            "TonicTracesClient export failed with gRPC code: Unavailable: tcp connect error: \
             Connection refused (os error 111)"
                .into(),
        );
        assert_eq!(error_type(&unavailable), "unavailable");
        let deadline = OTelSdkError::InternalFailure(
            "TonicTracesClient export failed with gRPC code: DeadlineExceeded".into(),
        );
        assert_eq!(error_type(&deadline), "deadline_exceeded");
    }

    #[test]
    fn other_failures_have_a_bounded_type() {
        assert_eq!(
            error_type(&OTelSdkError::Timeout(Duration::from_secs(1))),
            "timeout"
        );
        assert_eq!(
            error_type(&OTelSdkError::AlreadyShutdown),
            "already_shutdown"
        );
        for message in [
            "Mutex poison error",
            "export failed with gRPC code: Bogus",
            "gRPC code: ",
        ] {
            let err = OTelSdkError::InternalFailure(message.into());
            assert_eq!(error_type(&err), "other", "{message}");
        }
    }

    #[test]
    fn every_type_is_listed() {
        for (_, value) in GRPC_CODES {
            assert!(ERROR_TYPES.contains(value), "{value}");
        }
        assert_eq!(ERROR_TYPES.len(), GRPC_CODES.len() + 3);
    }

    #[test]
    fn the_catalog_lists_the_counter_with_its_label() {
        let catalog = crate::Catalog::embedded().unwrap();
        let spec = catalog.get(SPAN_EXPORTED).unwrap();
        assert_eq!(spec.kind, crate::MetricType::Counter);
        assert_eq!(spec.labels, [ERROR_TYPE]);
    }

    #[test]
    fn the_success_series_is_rendered_before_any_export() {
        let metrics = Metrics::install().unwrap();
        let page = metrics.render();
        assert!(
            page.lines()
                .any(|line| line.starts_with(&format!("{SPAN_EXPORTED} "))),
            "{page}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_collector_makes_the_failure_count_grow() {
        let metrics = Metrics::install().unwrap();
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .with_timeout(Duration::from_millis(1000))
            .build()
            .unwrap();
        let processor = BatchSpanProcessor::builder(CountingSpanExporter::new(exporter))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(200))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("span-export-test");
        let before = failed_spans(&metrics.render());
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        let page = loop {
            tracer.start("doomed").end();
            let page = metrics.render();
            if failed_spans(&page) > before {
                break page;
            }
            assert!(
                Instant::now() < deadline,
                "no failed export counted within 5 s:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            page.contains(&format!(r#"{SPAN_EXPORTED}{{{ERROR_TYPE}="unavailable"}}"#)),
            "{page}"
        );
        eprintln!("failure counted after {:?}", start.elapsed());
        let _ = provider.shutdown();
    }
}
