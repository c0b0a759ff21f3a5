//! Why a benchmark could not run.

use std::path::PathBuf;

/// Everything that stops a benchmark run. Each message says what was being
/// done; the run cleans up its processes and container either way.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Docker, or the local PostgreSQL image, is missing or failed.
    #[error("{0}")]
    Docker(String),
    /// A child process (a shop role, the bare server, the proxy, the sink) failed.
    #[error("{0}")]
    Child(String),
    /// A service did not become ready in time.
    #[error("{what} was not ready within {waited:?}: {last}")]
    NotReady {
        what: String,
        waited: std::time::Duration,
        last: String,
    },
    /// The load generator could not start.
    #[error("load generator: {0}")]
    Loadgen(#[from] faultline_loadgen::LoadgenError),
    /// An HTTP call of the harness itself failed.
    #[error("{context}: {source}")]
    Http {
        context: String,
        #[source]
        source: reqwest::Error,
    },
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A result file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The results could not be serialised.
    #[error("cannot serialise the results: {0}")]
    Json(#[from] serde_json::Error),
    /// A measurement produced nothing to compare.
    #[error("{0}")]
    Measurement(String),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

impl BenchError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// An HTTP error with what was being done.
    pub fn http(context: impl Into<String>, source: reqwest::Error) -> Self {
        Self::Http {
            context: context.into(),
            source,
        }
    }
}
