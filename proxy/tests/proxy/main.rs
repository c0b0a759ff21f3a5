//! Integration tests of the fault proxy, against in-process upstreams on
//! 127.0.0.1:0. One test binary, one module per area.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod auth;
mod cli;
mod http_toxics;
mod leases;
mod metrics;
mod pass_through;
mod stats;
mod support;
mod toxics;
