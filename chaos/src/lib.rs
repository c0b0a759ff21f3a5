//! faultline's chaos engine.
//!
//! - [`proxy`]: the fault proxy, a TCP proxy with a Toxiproxy-compatible
//!   control API (`faultline proxy`), and a typed client for that API that
//!   also drives a real Toxiproxy.
//! - [`signal`]: shutdown signals for the `faultline` binary.
//!
//! Experiments, container actions, the journal and the report land in later
//! steps.

pub mod proxy;
pub mod signal;
