//! The `faultline proxy` subcommand of the `faultline` binary. The fault
//! proxy itself is tested in its own crate, faultline-proxy.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
