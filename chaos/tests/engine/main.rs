//! The chaos engine without containers: experiment parsing, the run loop
//! with fake actions and probes, journals and reports.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod abort;
mod actions;
mod chaostoolkit;
mod cli;
mod credentials;
mod gameday;
mod guardian;
mod journal;
mod lease;
mod parse;
mod plan;
mod report;
mod runner;
mod sli;
mod sql;
mod support;
mod tokens;
