//! faultline's benchmarks: what the instrumentation, the stacks and the fault
//! proxy cost, as ratios measured side by side in one run, and the memory the
//! core stack needs. `BENCHMARKS.md` at the repository root has the method,
//! the latest results and the command that reproduces them.
//!
//! - [`run`]: the orchestration (processes, rounds, figures);
//! - [`measure`]: one load-generator run and the CPU time it cost;
//! - [`procs`]: child processes, pinning, `/proc`;
//! - [`container`], [`postgres`], [`redis`], [`rabbitmq`], [`exporter`]: the
//!   containers (PostgreSQL and its standby, Redis, RabbitMQ, the PostgreSQL
//!   exporters);
//! - [`servers`]: the bare axum server, the pass-through proxy, the OTLP sink;
//! - [`report`]: the JSON document and its Markdown rendering;
//! - [`stats`], [`plan`]: medians and spreads; durations and variants.

pub mod cli;
pub mod container;
pub mod error;
pub mod exporter;
pub mod identity;
pub mod measure;
pub mod plan;
pub mod postgres;
pub mod procs;
pub mod rabbitmq;
pub mod redis;
pub mod report;
pub mod run;
pub mod servers;
pub mod stats;

pub use error::BenchError;
