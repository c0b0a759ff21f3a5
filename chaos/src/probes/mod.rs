//! What an experiment looks at: probes, each giving an [`Observation`].
//!
//! - [`http`]: an HTTP status, headers and body;
//! - [`promql`]: a PromQL instant query against a tolerance;
//! - [`alert`]: an alert's state in Prometheus;
//! - [`sli`]: the SLI of the harness's own load, from loadgen windows;
//! - [`sql`]: a SQL scalar against a tolerance, and built-in invariants.

pub mod alert;
pub mod http;
pub mod prometheus;
pub mod promql;
pub mod sli;
pub mod sql;
pub mod tolerance;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use faultline_loadgen::{Report, Window};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The tolerance was met.
    pub ok: bool,
    /// What was seen (a status, a number, samples...).
    pub value: Value,
    /// One line for humans.
    pub detail: String,
}

impl Observation {
    pub fn new(ok: bool, value: Value, detail: impl Into<String>) -> Self {
        Self {
            ok,
            value,
            detail: detail.into(),
        }
    }
}

/// Why a probe could not observe anything (which fails it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Http(String),
    #[error("prometheus: {0}")]
    Prometheus(String),
    #[error("sql: {0}")]
    Sql(String),
    #[error("no data: {0}")]
    NoData(String),
    #[error("{0}")]
    Config(String),
    #[error("did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("panicked: {0}")]
    Panicked(String),
}

/// The load generator's windows so far, shared between the load task, the
/// probes and the journal.
#[derive(Debug, Clone, Default)]
pub struct Timeline(Arc<Mutex<Vec<Window>>>);

impl Timeline {
    pub fn push(&self, window: Window) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(window);
    }

    /// Every window so far.
    pub fn snapshot(&self) -> Vec<Window> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Windows that started at or after `unix_ms`.
    pub fn since(&self, unix_ms: u64) -> Vec<Window> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|w| w.start_unix_ms >= unix_ms)
            .cloned()
            .collect()
    }
}

/// What a probe can see besides the system: the load so far.
#[derive(Debug, Clone, Default)]
pub struct ProbeContext {
    pub timeline: Timeline,
    /// When the current phase (steady state, method, recovery) began.
    pub phase_start_unix_ms: u64,
    /// The load generator's final report, once the load has stopped.
    pub report: Option<Arc<Report>>,
    /// When the first fault was injected, once it was.
    pub fault_start_unix_ms: Option<u64>,
}

impl ProbeContext {
    /// Whole seconds since the first fault (at least 1), as a PromQL range:
    /// what `$__fault_range` stands for in a query.
    pub fn fault_range(&self, now_unix_ms: u64) -> Option<String> {
        let start = self.fault_start_unix_ms?;
        let seconds = now_unix_ms.saturating_sub(start).div_ceil(1000).max(1);
        Some(format!("{seconds}s"))
    }
}

/// A probe.
#[async_trait::async_trait]
pub trait Probe: Send + Sync + fmt::Debug {
    /// The `type` of the probe, for the journal.
    fn kind(&self) -> &'static str;
    async fn check(&self, cx: &ProbeContext) -> Result<Observation, ProbeError>;
    /// Whether it measures from the first fault (a query that names
    /// `$__fault_range`): during the method, such a probe is due from the
    /// first injection, whether it must pass always or eventually.
    fn counts_from_the_fault(&self) -> bool {
        false
    }
}
