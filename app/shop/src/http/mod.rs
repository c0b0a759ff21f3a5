//! HTTP plumbing shared by every role: the inbound observation middleware,
//! request extractors that answer with problem+json, and the upstream client.

pub mod client;
pub mod extract;
pub mod outbound;
pub mod route_metrics;
pub mod server;

pub use client::{Upstream, UpstreamError};
pub use extract::{ApiBytes, ApiJson, ApiPath};
