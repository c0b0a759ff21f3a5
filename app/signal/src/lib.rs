//! What every faultline binary shares at run time. A leaf crate: it depends
//! on tokio, tracing and rustls only, and nothing of faultline.
//!
//! - [`shutdown()`]: resolves on SIGTERM or Ctrl-C, whichever comes first.
//! - [`install_crypto_provider`]: rustls' ring provider, once per process
//!   (reqwest is built without a default TLS provider in this workspace).
//! - [`error_chain`]: an error and its causes on one line.
//! - [`runtime`] and [`run_main`]: the multi-threaded runtime of a `main`,
//!   and a `main` whose error is logged, printed to stderr and turned into an
//!   exit code.
//!
//! The crate is named after its first item, the shutdown signal.

mod chain;
mod entry;
mod shutdown;
mod tls;

pub use chain::error_chain;
pub use entry::{run_main, runtime};
pub use shutdown::shutdown;
pub use tls::install_crypto_provider;
