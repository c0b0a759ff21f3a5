//! JSON logs on stdout, one object per line, filtered by `RUST_LOG`.

use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

/// The filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Builds the filter from `RUST_LOG`, falling back to [`DEFAULT_FILTER`].
pub fn env_filter() -> Result<EnvFilter, LogsError> {
    match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => Ok(EnvFilter::try_new(value)?),
        _ => Ok(EnvFilter::try_new(DEFAULT_FILTER)?),
    }
}

/// Installs the global subscriber: JSON lines on stdout with the current span's fields.
pub fn init() -> Result<(), LogsError> {
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true);
    tracing_subscriber::registry()
        .with(env_filter()?)
        .with(json)
        .try_init()?;
    Ok(())
}
