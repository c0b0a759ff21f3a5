//! faultline's chaos engine.
//!
//! - [`experiment`]: experiments as typed TOML, with errors that name the
//!   file, line, column and field.
//! - [`environment`]: the endpoints of the stack under test (`[target]`),
//!   overridable from the CLI, the environment and code.
//! - [`identity`]: the bearer tokens the engine mints (the load's customers,
//!   an http probe's or action's `bearer`) with the target's key directory.
//! - [`runner`]: the run loop ([`run_experiment`], [`runner::run_plan`]),
//!   which always rolls back.
//! - [`actions`] and [`probes`]: what an experiment does and looks at.
//! - [`platform`]: container actions behind a [`platform::Platform`] trait
//!   (Docker, and Kubernetes with a `[target.kubernetes]`).
//! - [`journal`] and [`report`]: the JSON journal, and its Markdown and plot.
//! - [`coverage`]: the detection coverage table of a set of journals.
//! - [`evidence`]: the raw series behind the alerts that fired, and the
//!   promtool test that replays them offline.
//! - [`ledger`]: active faults on disk, for `faultline cleanup`, as
//!   [`undo`] records; [`cleanup`] carries out what a ledger file lists,
//!   and the [`guardian`] process does so when its run dies.
//! - [`testing`]: fakes of the run loop's traits, for tests and demos.
//! - [`gameday`]: experiments in a seeded order, with cool-downs, within a
//!   time budget, and their combined report.
//!
//! The fault proxy is its own crate, `faultline_proxy`; the engine drives it
//! through `faultline_proxy::ToxiproxyClient`, and `faultline proxy` runs it.
//!
//! Layering, without circles: each group uses only the groups before it.
//!
//! 1. `environment`, then `identity`
//! 2. `platform`, `journal`
//! 3. `experiment`, `undo`
//! 4. `ledger`, `probes`, `report`, `coverage`
//! 5. `actions`, `evidence`
//! 6. `runner`, `cleanup`, `testing`
//! 7. `gameday`, `guardian`

pub mod actions;
pub mod cleanup;
pub mod coverage;
pub mod environment;
pub mod evidence;
pub mod experiment;
pub mod gameday;
pub mod guardian;
pub mod identity;
pub mod journal;
pub mod ledger;
pub mod platform;
pub mod probes;
pub mod report;
pub mod runner;
pub mod testing;
pub mod undo;

pub use environment::Environment;
pub use experiment::Experiment;
pub use journal::{Journal, Status, Verdict};
pub use runner::{
    Bindings, ExperimentSource, LedgerDir, Plan, RunError, RunEvent, run_experiment, run_plan,
};
